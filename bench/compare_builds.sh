#!/usr/bin/env bash
# Before/after a change: two builds of qat against each other and against the PyTorch peer, in
# one run. Every round runs build A's and build B's bench_train (FP32 and QAT training steps,
# FP32 inference) and bench_int8 (INT8 inference of MODEL.q8) and the peer once, A and B in
# alternating order (A B in odd rounds, B A in even ones), so drift of this shared machine
# falls on both; then prints the medians, each build's ratio to PyTorch (the figures
# bench/compare.sh and bench/compare_int8.sh report) and B/A.
#
#   bench/compare_builds.sh A_DIR B_DIR MODEL.q8 [ROUNDS] [THREADS] [BATCH]
#
# A_DIR, B_DIR: repository trees whose build/ holds bench_train and bench_int8
# (make build/bench_train build/bench_int8 in each); the host block comes from this tree's build/.
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?usage: bench/compare_builds.sh A_DIR B_DIR MODEL.q8 [ROUNDS] [THREADS] [BATCH]}
b=${2:?} model=${3:?} rounds=${4:-5} threads=${5:-2} batch=${6:-64}
peer=../shared/peer/torch_peer.py
py=/usr/bin/python3
out=bench/out; mkdir -p "$out"
for k in a_train b_train a_int8 b_int8 torch; do : > "$out/builds_$k.jsonl"; done
. bench/host.sh
host_probe build "$threads"
run_build() { # which dir
  "$2/build/bench_train" --threads "$threads" --batch "$batch" | tail -n 1 >> "$out/builds_${1}_train.jsonl"
  "$2/build/bench_int8" --model "$model" --threads "$threads" --batch "$batch" | tail -n 1 >> "$out/builds_${1}_int8.jsonl"
}
for r in $(seq "$rounds"); do
  echo "round $r/$rounds" >&2
  if [ $((r % 2)) = 1 ]; then run_build a "$a"; run_build b "$b"; else run_build b "$b"; run_build a "$a"; fi
  "$py" "$peer" bench --threads "$threads" --batch "$batch" | tail -n 1 >> "$out/builds_torch.jsonl"
done
host_print
"$py" - "$out" "$a" "$b" <<'PY'
import json, statistics, sys
d, A, B = sys.argv[1:4]
load = lambda k: [json.loads(l) for l in open(f'{d}/builds_{k}.jsonl') if l.strip()]
rows = {k: load(k) for k in ('a_train', 'b_train', 'a_int8', 'b_int8', 'torch')}
med = lambda rs, k: statistics.median(r[k] for r in rs) if rs and all(k in r for r in rs) else float('nan')
print(f"A = {A}, B = {B}; medians of {len(rows['torch'])} rounds")
print(f"{'metric':24s} {'A':>10s} {'B':>10s} {'pytorch':>10s} {'A/torch':>8s} {'B/torch':>8s} {'B/A':>7s}")
res = {}
for src, keys in (('train', ['fp32_train_img_s', 'qat_train_img_s', 'fp32_infer_b1_img_s', f'fp32_infer_b{64}_img_s']),
                  ('int8', ['int8_infer_b1_img_s', 'int8_infer_b64_img_s'])):
    for k in keys:
        qa, qb, t = med(rows['a_' + src], k), med(rows['b_' + src], k), med(rows['torch'], k)
        res[k] = {'a': qa, 'b': qb, 'torch': t}
        print(f"{k:24s} {qa:10.1f} {qb:10.1f} {t:10.1f} {qa / t:7.2f}x {qb / t:7.2f}x {qb / qa:6.3f}")
for s in ('a', 'b'):
    r = statistics.median(x['fp32_train_img_s'] / x['qat_train_img_s'] for x in rows[s + '_train'])
    print(f"QAT step / FP32 step, {s.upper()}: {r:.3f}x")
print(json.dumps(res))
PY
