#!/usr/bin/env bash
# INT8 runtime before/after a change: bench_int8 of two builds on the same MODEL.q8, alternating
# (A B in odd rounds, B A in even ones) so that drift of a shared machine falls on both, then
# the medians at batch 1 and BATCH and B/A. Quicker than bench/compare_builds.sh, which also
# times training and the PyTorch peer. Run it under `flock /work/heavy.lock` on a shared host.
#
#   bench/compare_int8_builds.sh A_DIR B_DIR MODEL.q8 [ROUNDS] [THREADS] [BATCH]
#
# A_DIR, B_DIR: trees whose build/ holds bench_int8 (make build/bench_int8 in each); the host
# block comes from this tree's build/. BACKEND=auto|native|onednn (default auto).
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?usage: bench/compare_int8_builds.sh A_DIR B_DIR MODEL.q8 [ROUNDS] [THREADS] [BATCH]}
b=${2:?} model=${3:?} rounds=${4:-5} threads=${5:-2} batch=${6:-64}
backend=${BACKEND:-auto}
py=/usr/bin/python3
out=bench/out; mkdir -p "$out"
: > "$out/int8_builds_a.jsonl"; : > "$out/int8_builds_b.jsonl"
for d in "$a" "$b"; do [ -x "$d/build/bench_int8" ] || { echo "$d/build/bench_int8: not built" >&2; exit 2; }; done
. bench/host.sh
host_probe build "$threads"
run() { "$2/build/bench_int8" --model "$model" --threads "$threads" --batch "$batch" --backend "$backend" \
          | tail -n 1 >> "$out/int8_builds_$1.jsonl"; }
for r in $(seq "$rounds"); do
  echo "round $r/$rounds" >&2
  if [ $((r % 2)) = 1 ]; then run a "$a"; run b "$b"; else run b "$b"; run a "$a"; fi
done
host_print
"$py" - "$out" "$a" "$b" "$batch" "$backend" <<'PY'
import json, statistics, sys
d, A, B, batch, backend = sys.argv[1:6]
rows = {k: [json.loads(l) for l in open(f'{d}/int8_builds_{k}.jsonl') if l.strip()] for k in 'ab'}
print(f"A = {A}, B = {B}; backend {backend}; medians of {len(rows['a'])} rounds")
print(f"{'img/s':22s} {'A':>10s} {'B':>10s} {'B/A':>7s}")
res = {}
for k in ('int8_infer_b1_img_s', f'int8_infer_b{batch}_img_s'):
    qa, qb = (statistics.median(r[k] for r in rows[s]) for s in 'ab')
    res[k] = {'a': qa, 'b': qb, 'b_over_a': qb / qa}
    print(f"{k:22s} {qa:10.1f} {qb:10.1f} {qb / qa:6.3f}")
print(json.dumps(res))
PY
