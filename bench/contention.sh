#!/usr/bin/env bash
# FP32 and INT8 inference at batch 1 with the cores to ourselves ("quiet") and with two busy
# processes beside (`sh -c 'while :; do :; done'` x2, issue 19), alternating quiet and busy
# ROUNDS times, for one or more builds in the same run (before/after a change). Prints the
# median img/s per build and condition and the busy/quiet slowdown; the bar is FP32 batch 1
# slowing at most 5x. FP32 is bench_train's inference (the training engine's forward, what
# `qat eval --ckpt` and `qat bench --ckpt` run), INT8 bench_int8 on MODEL.q8. With TRAIN_BATCH
# set (e.g. 64), also the FP32 training step at that batch with the cores to ourselves and
# beside ONE busy process (the training engine's team under load, issue 19).
#
#   [TRAIN_BATCH=64] bench/contention.sh MODEL.q8 [ROUNDS] [THREADS] [TREE...]
#   (TREE: a checkout whose build/ holds bench_train and bench_int8; default: this one)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench/contention.sh MODEL.q8 [ROUNDS] [THREADS] [TREE...]}
rounds=${2:-3} threads=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
trees=("$@"); [ ${#trees[@]} -gt 0 ] || trees=(.)
py=/usr/bin/python3
out=bench/out; mkdir -p "$out"; rows=$out/contention.jsonl; : > "$rows"
make -s build/bench_train build/bench_int8 >&2
. bench/host.sh
host_probe build "$threads"

train_batch=${TRAIN_BATCH:-0}
busy=()
start_busy() { for i in $(seq "$1"); do sh -c 'while :; do :; done' & busy+=($!); done; sleep 0.5; }
stop_busy() { for p in "${busy[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done; busy=(); }
trap stop_busy EXIT

run_tree() { # tree condition
  local t=$1 c=$2 f i
  if [ "$c" = busy1 ]; then
    f=$("$t/build/bench_train" --threads "$threads" --batch "$train_batch" --steps 20 --qat 0 \
        --infer 0 | tail -n 1)
    printf '{"tree": "%s", "cond": "busy", "train": %s}\n' "$t" "$f" >> "$rows"
    return
  fi
  f=$("$t/build/bench_train" --threads "$threads" --batch 1 --steps 20 --qat 0 | tail -n 1)
  i=$("$t/build/bench_int8" --model "$model" --threads "$threads" --batch 1 --steps 100 | tail -n 1)
  printf '{"tree": "%s", "cond": "%s", "fp32": %s, "int8": %s}\n' "$t" "$c" "$f" "$i" >> "$rows"
  if [ "$c" = quiet ] && [ "$train_batch" -gt 0 ]; then
    f=$("$t/build/bench_train" --threads "$threads" --batch "$train_batch" --steps 20 --qat 0 \
        --infer 0 | tail -n 1)
    printf '{"tree": "%s", "cond": "quiet", "train": %s}\n' "$t" "$f" >> "$rows"
  fi
}
conds="quiet busy"
[ "$train_batch" -gt 0 ] && conds="quiet busy busy1"
for r in $(seq "$rounds"); do
  for c in $conds; do
    echo "round $r/$rounds: $c" >&2
    case $c in busy) start_busy 2 ;; busy1) start_busy 1 ;; esac
    for t in "${trees[@]}"; do run_tree "$t" "$c"; done
    [ "$c" = quiet ] || stop_busy
  done
done
host_print
"$py" - "$rows" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
trees = list(dict.fromkeys(r['tree'] for r in rows))
med = lambda t, c, k, m: statistics.median(r[k][m] for r in rows if r['tree'] == t and r['cond'] == c and k in r)
print(f"{'batch 1, img/s (medians)':28s} {'quiet':>9s} {'busy x2':>9s} {'slowdown':>9s}")
res = {}
for t in trees:
    for k, m in (('fp32', 'fp32_infer_b1_img_s'), ('int8', 'int8_infer_b1_img_s')):
        q, b = med(t, 'quiet', k, m), med(t, 'busy', k, m)
        print(f"{t[-18:] + ' ' + k.upper():28s} {q:9.1f} {b:9.1f} {q / b:8.1f}x")
        res[f'{t} {k}'] = {'quiet': q, 'busy': b, 'slowdown': q / b}
if any('train' in r for r in rows):
    b = next(r['train']['batch'] for r in rows if 'train' in r)
    print(f"{'FP32 training, batch %d' % b:28s} {'quiet':>9s} {'busy x1':>9s} {'slowdown':>9s}")
    for t in trees:
        q, s = med(t, 'quiet', 'train', 'fp32_train_img_s'), med(t, 'busy', 'train', 'fp32_train_img_s')
        print(f"{t[-18:] + ' TRAIN':28s} {q:9.1f} {s:9.1f} {q / s:8.1f}x")
        res[f'{t} train'] = {'quiet': q, 'busy1': s, 'slowdown': q / s}
print(json.dumps(res))
PY
