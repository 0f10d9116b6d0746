#!/bin/bash
# The fault harness (issue 15): tests/faults/faults.sh short|long QAT BUILD
#   QAT    the qat binary under test (./qat, or an ASan build of it)
#   BUILD  where mutate, killer and mkdata were built (make builds them in $(BUILD)/faults)
# Runs qat the way a user meets faults: every file parser's input mutated (.q8, checkpoint, IDX,
# PNG, CIFAR-10, spec) through the CLI, every numeric option given bad values, kill -9 during
# training and during checkpoint writes (then a resume), a full disk and a read-only directory
# (tmpfs mounts, root only), two runs into one directory. Prints a table of cases, crashes
# (signals, sanitizer reports), hangs (timeouts), clean errors (one 'qat CMD: ' line, exit 1 or
# 2), successes, other (an exit without that line) and good files lost; and the checks:
# unloadable checkpoints, temp files left after a resume, duplicate epoch lines. Exits 1 when
# any of crashes, hangs, other, lost or the checks is not 0.
#   short (make test): 12 mutants per parser, one bad value per option, 4 kills: about a minute
#   long (make faults): FAULTS_N mutants per parser (1000), FAULTS_KILLS kills (40, half in writes)
set -u
MODE=${1:-short}
QAT=$(realpath "${2:-./qat}")
B=$(realpath "${3:-build}/faults")
if [ "$MODE" = long ]; then N=${FAULTS_N:-1000}; KILLS=${FAULTS_KILLS:-40}; TWO=${FAULTS_TWO:-5}
else N=${FAULTS_N:-12}; KILLS=${FAULTS_KILLS:-4}; TWO=1; fi
TIMEOUT=${FAULTS_TIMEOUT:-60}
W=$(mktemp -d /tmp/qat_faults.XXXXXX)
MOUNTS=()
cleanup() {
    for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done
    [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1

declare -A CASES CRASH HANG CLEAN OK OTHER LOST
CATS=()
cat_init() { CATS+=("$1"); CASES[$1]=0; CRASH[$1]=0; HANG[$1]=0; CLEAN[$1]=0; OK[$1]=0; OTHER[$1]=0; LOST[$1]=0; }
EXAMPLES="$W/examples.txt"
: > "$EXAMPLES"

# run_case CAT CMD...: runs one qat command under a timeout and counts what it did.
run_case() {
    local cat=$1; shift
    local err="$W/err.txt" code
    CASES[$cat]=$((CASES[$cat] + 1))
    timeout -s KILL "$TIMEOUT" "$@" >/dev/null 2>"$err"
    code=$?
    if grep -q "AddressSanitizer\|runtime error:\|LeakSanitizer\|internal invariant" "$err"; then
        CRASH[$cat]=$((CRASH[$cat] + 1)); echo "crash [$cat]: $* :: $(head -c 300 "$err")" >> "$EXAMPLES"
    elif [ $code = 137 ]; then
        HANG[$cat]=$((HANG[$cat] + 1)); echo "hang [$cat]: $*" >> "$EXAMPLES"
    elif [ $code -ge 128 ]; then
        CRASH[$cat]=$((CRASH[$cat] + 1)); echo "signal $((code - 128)) [$cat]: $* :: $(head -c 300 "$err")" >> "$EXAMPLES"
    elif [ $code = 0 ]; then
        OK[$cat]=$((OK[$cat] + 1))
    elif { [ $code = 1 ] || [ $code = 2 ]; } && [ "$(wc -l < "$err")" = 1 ] && grep -q "^qat [a-z]*\( (rank [0-9]*)\)\?: " "$err"; then
        CLEAN[$cat]=$((CLEAN[$cat] + 1))
    else
        OTHER[$cat]=$((OTHER[$cat] + 1)); echo "other (exit $code) [$cat]: $* :: $(head -c 300 "$err")" >> "$EXAMPLES"
    fi
    return $code
}

UNLOADABLE=0; LEFTOVER=0; DUPLICATES=0
check_ckpts() { # every checkpoint in $1 loads
    for c in "$1"/*.ckpt; do
        [ -e "$c" ] || continue
        "$QAT" summary --ckpt "$c" >/dev/null 2>&1 || { UNLOADABLE=$((UNLOADABLE + 1)); echo "unloadable: $c" >> "$EXAMPLES"; }
    done
}

# ---- inputs: a tiny set, a good checkpoint, its PTQ checkpoint and INT8 model ----------------
"$B/mkdata" "$W/d" || exit 1
D=$W/d
TR=(--model "$D/tiny.spec" --batch 32 --threads 1 --quiet)
"$QAT" train --data "$D/idx" "${TR[@]}" --epochs 3 --max-steps 3 --out "$W/good" || exit 1
"$QAT" ptq --ckpt "$W/good/last.ckpt" --data "$D/idx" --calib-batches 2 --batch 16 --threads 1 --quiet --out "$W/ptq.ckpt" >/dev/null || exit 1
"$QAT" convert --ckpt "$W/ptq.ckpt" -o "$W/m.q8" >/dev/null || exit 1
GOOD=("$W/good/last.ckpt" "$W/ptq.ckpt" "$W/m.q8" "$D/img.png" "$D/tiny.spec" "$D"/idx/* "$D"/cifar/*)
sha256sum "${GOOD[@]}" > "$W/good.sha"

# ---- 1. every parser's input mutated, through the CLI ----------------------------------------
M=$W/mut
mkdir -p "$M"
for cat in q8 ckpt idx png cifar spec; do cat_init "$cat"; done
for ((i = 0; i < N; i++)); do
    "$B/mutate" "$W/m.q8" "$M/m.q8" "$i" crc
    run_case q8 "$QAT" infer "$M/m.q8" "$D/img.png" --threads 1

    src=$W/good/last.ckpt; [ $((i % 2)) = 1 ] && src=$W/ptq.ckpt
    "$B/mutate" "$src" "$M/c.ckpt" "$i" crc
    case $((i % 4)) in
    0|1) run_case ckpt "$QAT" eval --ckpt "$M/c.ckpt" --data "$D/idx" --threads 1 --quiet ;;
    2) run_case ckpt "$QAT" summary --ckpt "$M/c.ckpt" ;;
    3) rm -rf "$M/resume"; mkdir -p "$M/resume"
       if [ "$src" = "$W/ptq.ckpt" ]; then
           run_case ckpt "$QAT" convert --ckpt "$M/c.ckpt" -o "$M/resume/m.q8"
       else
           run_case ckpt "$QAT" train --data "$D/idx" --batch 32 --threads 1 --quiet --resume "$M/c.ckpt" --max-steps 1 --out "$M/resume"
       fi
       check_ckpts "$M/resume" ;;
    esac

    rm -rf "$M/idx"; cp -r "$D/idx" "$M/idx"
    f=$(ls "$M/idx" | sed -n "$((i % 4 + 1))p")
    "$B/mutate" "$D/idx/$f" "$M/idx/$f" "$i"
    run_case idx "$QAT" eval --ckpt "$W/good/last.ckpt" --data "$M/idx" --threads 1 --quiet

    "$B/mutate" "$D/img.png" "$M/i.png" "$i"
    run_case png "$QAT" infer "$W/m.q8" "$M/i.png" --threads 1

    rm -rf "$M/cifar"; cp -r "$D/cifar" "$M/cifar"
    f=$(ls "$M/cifar" | sed -n "$((i % 3 + 1))p")
    "$B/mutate" "$D/cifar/$f" "$M/cifar/$f" "$i"
    if [ $((i % 5)) = 0 ]; then
        rm -rf "$M/cr"
        run_case cifar "$QAT" train --data "$M/cifar" "${TR[@]}" --batch 16 --max-steps 1 --out "$M/cr"
    else
        run_case cifar "$QAT" eval --ckpt "$W/good/last.ckpt" --data "$M/cifar" --threads 1 --quiet
    fi

    s=$D/tiny.spec; [ $((i % 2)) = 1 ] && s=$(dirname "$QAT")/layers/presets/mbv2-tiny.spec
    [ -f "$s" ] || s=$D/tiny.spec
    "$B/mutate" "$s" "$M/m.spec" "$i"
    run_case spec "$QAT" summary --model "$M/m.spec"
done

# ---- 2. numeric options: huge, negative, NaN, hex, empty, spaces, junk -------------------------
cat_init options
VALUES=("1e300" "-1" "nan" "0x10" "" " 1" "1abc" "inf" "99999999999999999999" "-0.5" "1e-400")
for cmd in $("$QAT" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} on && /^$/ {exit}'); do
    for opt in $("$QAT" "$cmd" --help | awk '$2 == "N" {print $1}'); do
        for v in "${VALUES[@]}"; do
            if [ "$MODE" = short ] && [ "$v" != "0x10" ]; then continue; fi
            run_case options "$QAT" "$cmd" "$opt" "$v"
        done
    done
done

# ---- 3. kill -9 during training and during checkpoint writes, then a resume -------------------
cat_init resume
KILLED=0; IN_WRITES=0
for ((k = 0; k < KILLS; k++)); do
    R=$W/kill$k
    rm -rf "$R"; mkdir -p "$R"
    { # stderr off here: bash reports a background job killed by a signal ("Killed") on it
    "$QAT" train --data "$D/idx" "${TR[@]}" --epochs 1000 --out "$R" >/dev/null 2>&1 &
    pid=$!
    if [ $((k % 2)) = 0 ]; then
        "$B/killer" "$R" $pid # the moment a checkpoint's temp file appears
    else
        sleep "0.$((RANDOM % 9 + 1))$((RANDOM % 10))"
        kill -9 $pid
    fi
    wait $pid
    } 2>/dev/null
    KILLED=$((KILLED + 1))
    ls "$R" | grep -q '\.ckpt\.tmp\.' && IN_WRITES=$((IN_WRITES + 1))
    check_ckpts "$R"
    if [ -e "$R/last.ckpt" ]; then
        run_case resume "$QAT" train --data "$D/idx" --batch 32 --threads 1 --quiet --resume "$R/last.ckpt" --max-steps 2 --out "$R"
    else
        run_case resume "$QAT" train --data "$D/idx" "${TR[@]}" --epochs 1000 --max-steps 2 --out "$R"
    fi
    n=$(ls "$R" | grep -c '\.tmp\.')
    [ "$n" = 0 ] || { LEFTOVER=$((LEFTOVER + n)); echo "leftover after resume: $R: $(ls "$R")" >> "$EXAMPLES"; }
    d=$(grep -o '"epoch": [0-9]*' "$R/metrics.jsonl" 2>/dev/null | sort | uniq -d | wc -l)
    [ "$d" = 0 ] || { DUPLICATES=$((DUPLICATES + d)); echo "duplicate epoch lines: $R" >> "$EXAMPLES"; }
    check_ckpts "$R"
    rm -rf "$R"
done

# ---- 4. a full disk and a read-only directory (tmpfs, root only) -------------------------------
cat_init full-ro
if [ "$(id -u)" = 0 ]; then
    F=$W/full
    mkdir -p "$F"
    if mount -t tmpfs -o size=96k tmpfs "$F" 2>/dev/null; then
        MOUNTS+=("$F")
        cp "$W/m.q8" "$F/keep.q8"
        sum=$(sha256sum < "$F/keep.q8")
        run_case full-ro "$QAT" train --data "$D/idx" "${TR[@]}" --epochs 50 --out "$F/run"
        check_ckpts "$F/run"
        n=$(ls "$F/run" 2>/dev/null | grep -c '\.tmp\.'); LEFTOVER=$((LEFTOVER + n))
        dd if=/dev/zero of="$F/filler" bs=4k 2>/dev/null # fill what is left
        run_case full-ro "$QAT" convert --ckpt "$W/ptq.ckpt" -o "$F/keep.q8"
        run_case full-ro "$QAT" convert --ckpt "$W/ptq.ckpt" -o "$F/new.q8"
        run_case full-ro "$QAT" plot "$W/good" -o "$F/curves.png"
        run_case full-ro "$QAT" ptq --ckpt "$W/good/last.ckpt" --data "$D/idx" --calib-batches 1 --batch 16 --threads 1 --quiet --out "$F/p.ckpt"
        [ "$(sha256sum < "$F/keep.q8")" = "$sum" ] || LOST[full-ro]=$((LOST[full-ro] + 1))
        n=$(ls "$F" | grep -c '\.tmp'); LEFTOVER=$((LEFTOVER + n))
        rm -f "$F/filler"
        mount -o remount,ro "$F" 2>/dev/null
        run_case full-ro "$QAT" convert --ckpt "$W/ptq.ckpt" -o "$F/keep.q8"
        run_case full-ro "$QAT" train --data "$D/idx" "${TR[@]}" --epochs 1 --out "$F/run2"
        run_case full-ro "$QAT" plot "$W/good" -o "$F/curves.png"
        [ "$(sha256sum < "$F/keep.q8")" = "$sum" ] || LOST[full-ro]=$((LOST[full-ro] + 1))
        umount "$F"
    else
        echo "note: mount -t tmpfs failed: disk-full and read-only cases skipped"
    fi
else
    echo "note: not root: disk-full and read-only cases skipped"
fi

# ---- 5. two runs into one directory -------------------------------------------------------------
cat_init two-runs
BOTH_OK=0
for ((t = 0; t < TWO; t++)); do
    R=$W/two$t
    rm -rf "$R"
    ( timeout -s KILL "$TIMEOUT" "$QAT" train --data "$D/idx" "${TR[@]}" --epochs 4 --out "$R" >/dev/null 2>"$W/a.err"; echo $? > "$W/a.rc" ) &
    a=$!
    ( timeout -s KILL "$TIMEOUT" "$QAT" train --data "$D/idx" "${TR[@]}" --epochs 4 --out "$R" >/dev/null 2>"$W/b.err"; echo $? > "$W/b.rc" ) &
    b=$!
    wait $a $b
    CASES[two-runs]=$((CASES[two-runs] + 2))
    ra=$(cat "$W/a.rc"); rb=$(cat "$W/b.rc")
    [ "$ra" = 0 ] && [ "$rb" = 0 ] && BOTH_OK=$((BOTH_OK + 1))
    for rc in "$ra" "$rb"; do
        if [ "$rc" = 0 ]; then OK[two-runs]=$((OK[two-runs] + 1))
        elif [ "$rc" = 1 ]; then CLEAN[two-runs]=$((CLEAN[two-runs] + 1))
        elif [ "$rc" = 137 ]; then HANG[two-runs]=$((HANG[two-runs] + 1))
        else CRASH[two-runs]=$((CRASH[two-runs] + 1)); fi
    done
    d=$(grep -o '"epoch": [0-9]*' "$R/metrics.jsonl" 2>/dev/null | sort | uniq -d | wc -l)
    DUPLICATES=$((DUPLICATES + d))
    check_ckpts "$R"
done

# ---- the good inputs are as they were --------------------------------------------------------------
if ! sha256sum -c --quiet "$W/good.sha" >/dev/null 2>&1; then
    n=$(sha256sum -c "$W/good.sha" 2>/dev/null | grep -vc ': OK$')
    LOST[q8]=$((LOST[q8] + n))
    echo "good inputs changed: $(sha256sum -c "$W/good.sha" 2>&1 | grep -v ': OK$')" >> "$EXAMPLES"
fi

# ---- the table ---------------------------------------------------------------------------------
printf '\nqat fault harness (%s): %s\n' "$MODE" "$QAT"
printf '%-10s %7s %8s %6s %13s %10s %6s %11s\n' category cases crashes hangs "clean errors" successes other "files lost"
T=(0 0 0 0 0 0 0)
for c in "${CATS[@]}"; do
    printf '%-10s %7d %8d %6d %13d %10d %6d %11d\n' "$c" "${CASES[$c]}" "${CRASH[$c]}" "${HANG[$c]}" "${CLEAN[$c]}" "${OK[$c]}" "${OTHER[$c]}" "${LOST[$c]}"
    T=($((T[0] + CASES[$c])) $((T[1] + CRASH[$c])) $((T[2] + HANG[$c])) $((T[3] + CLEAN[$c])) $((T[4] + OK[$c])) $((T[5] + OTHER[$c])) $((T[6] + LOST[$c])))
done
printf '%-10s %7d %8d %6d %13d %10d %6d %11d\n' total "${T[@]}"
printf '\nkill -9: %d (%d during a checkpoint write); unloadable checkpoints %d; temp files left after a resume %d; duplicate epoch lines %d; two runs both exit 0: %d of %d\n' \
    "$KILLED" "$IN_WRITES" "$UNLOADABLE" "$LEFTOVER" "$DUPLICATES" "$BOTH_OK" "$TWO"
if [ -s "$EXAMPLES" ]; then echo; echo "findings (first 20):"; head -20 "$EXAMPLES"; fi
[ "${T[1]}" = 0 ] && [ "${T[2]}" = 0 ] && [ "${T[5]}" = 0 ] && [ "${T[6]}" = 0 ] && [ "$UNLOADABLE" = 0 ] &&
    [ "$LEFTOVER" = 0 ] && [ "$DUPLICATES" = 0 ] && [ "$BOTH_OK" = 0 ]
