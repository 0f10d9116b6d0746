#!/usr/bin/env bash
# INT8 inference against PyTorch: runs bench_int8 (qat's INT8 runtime on MODEL.q8), the peer's
# INT8 model (torch_peer.py bench --only infer: convert_fx, oneDNN engine) and qat's FP32
# inference (bench_train --infer) alternately, ROUNDS times each with the same threads and
# batch, then prints medians at batch 1 and BATCH, qat/PyTorch ratios and INT8/FP32 ratios.
# Machines are shared and noisy: only ratios measured in one run mean something.
#
#   bench/compare_int8.sh MODEL.q8 [ROUNDS] [THREADS] [BATCH]    (BACKEND=auto|native|onednn)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench/compare_int8.sh MODEL.q8 [ROUNDS] [THREADS] [BATCH]}
rounds=${2:-3} threads=${3:-2} batch=${4:-64}
backend=${BACKEND:-auto}
build=${BUILD:-build}
peer=../shared/peer/torch_peer.py
py=/usr/bin/python3
out=bench/out; mkdir -p "$out"
: > "$out/int8_qat.jsonl"; : > "$out/int8_torch.jsonl"; : > "$out/int8_fp32.jsonl"

# bench_int8 links the deploy library only (libqat_rt.a).
make -s BUILD="$build" "$build/bench_int8" "$build/bench_train" >&2
. bench/host.sh
host_probe "$build" "$threads"

for r in $(seq "$rounds"); do
  echo "round $r/$rounds: qat int8" >&2
  "$build/bench_int8" --model "$model" --threads "$threads" --batch "$batch" --backend "$backend" \
    | tail -n 1 >> "$out/int8_qat.jsonl"
  echo "round $r/$rounds: pytorch int8 + fp32" >&2
  "$py" "$peer" bench --threads "$threads" --batch "$batch" --only infer | tail -n 1 >> "$out/int8_torch.jsonl"
  echo "round $r/$rounds: qat fp32" >&2
  "$build/bench_train" --threads "$threads" --batch "$batch" --qat 0 --steps 10 --infer 1 \
    | tail -n 1 >> "$out/int8_fp32.jsonl"
done
host_print
"$py" - "$out/int8_qat.jsonl" "$out/int8_torch.jsonl" "$out/int8_fp32.jsonl" "$batch" <<'PY'
import json, statistics, sys
load = lambda p: [json.loads(l) for l in open(p) if l.strip()]
q, t, f, batch = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3]), int(sys.argv[4])
med = lambda rows, k: statistics.median(d[k] for d in rows) if rows and all(k in d for d in rows) else float('nan')
print(f"{'img/s (median of %d rounds)' % len(q):30s} {'qat':>10s} {'pytorch':>10s} {'ratio':>7s}")
res = {}
for bs in sorted({1, batch}):
    k8, k32 = f'int8_infer_b{bs}_img_s', f'fp32_infer_b{bs}_img_s'
    qa, ta = med(q, k8), med(t, k8)
    qf, tf = med(f, k32), med(t, k32)
    print(f"{'INT8 inference batch %d' % bs:30s} {qa:10.1f} {ta:10.1f} {qa / ta:6.2f}x")
    print(f"{'FP32 inference batch %d' % bs:30s} {qf:10.1f} {tf:10.1f} {qf / tf:6.2f}x")
    print(f"{'INT8 / FP32 speed, batch %d' % bs:30s} {qa / qf:9.2f}x {ta / tf:9.2f}x")
    res[f'b{bs}'] = {'qat_int8': qa, 'torch_int8': ta, 'int8_ratio': qa / ta,
                     'qat_fp32': qf, 'torch_fp32': tf, 'qat_int8_over_fp32': qa / qf,
                     'torch_int8_over_fp32': ta / tf}
print(json.dumps(res))
PY
