#!/usr/bin/env bash
# MobileNetV3 INT8 inference against PyTorch: runs bench_int8 (qat's INT8 runtime on an mbv3-tiny
# MODEL.q8), bench/torch_mbv3.py bench (the same network in PyTorch 1.13: FP32, and FX INT8 with
# the onednn and qnnpack engines, the faster one counting) and qat's FP32 inference (bench_train
# --model mbv3-tiny --infer 1) alternately, ROUNDS times each with the same threads and batch,
# then prints the CPU model and load, medians at batch 1 and BATCH, qat/PyTorch ratios and
# INT8/FP32 ratios. Run it under `flock /work/heavy.lock` on a shared machine: only ratios
# measured in one run mean something.
#
#   bench/compare_mbv3.sh MODEL.q8 [ROUNDS] [THREADS] [BATCH]    (BACKEND=auto|native|onednn)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench/compare_mbv3.sh MODEL.q8 [ROUNDS] [THREADS] [BATCH]}
rounds=${2:-3} threads=${3:-2} batch=${4:-64}
backend=${BACKEND:-auto}
build=${BUILD:-build}
py=/usr/bin/python3
out=bench/out; mkdir -p "$out"
: > "$out/mbv3_qat.jsonl"; : > "$out/mbv3_torch.jsonl"; : > "$out/mbv3_fp32.jsonl"

# bench_int8 through make: it links bench/host.o too (a hand-written cc line missed it)
make -s BUILD="$build" "$build/bench_int8" "$build/bench_train" >&2
# The .q8 must hold the network the peer builds: same input and parameter count as mbv3-tiny.
"$py" bench/torch_mbv3.py check >&2

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$rounds"); do
  echo "round $r/$rounds: qat int8" >&2
  "$build/bench_int8" --model "$model" --threads "$threads" --batch "$batch" --backend "$backend" \
    | tail -n 1 >> "$out/mbv3_qat.jsonl"
  echo "round $r/$rounds: pytorch fp32 + int8" >&2
  "$py" bench/torch_mbv3.py bench --threads "$threads" --batch "$batch" | tail -n 1 >> "$out/mbv3_torch.jsonl"
  echo "round $r/$rounds: qat fp32" >&2
  "$build/bench_train" --model mbv3-tiny --threads "$threads" --batch "$batch" --qat 0 \
    --steps 10 --infer 1 | tail -n 1 >> "$out/mbv3_fp32.jsonl"
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores;" \
     "load average (1/5/15 min) $load_start at the start, $load_end at the end"
"$py" - "$out/mbv3_qat.jsonl" "$out/mbv3_torch.jsonl" "$out/mbv3_fp32.jsonl" "$batch" <<'PY'
import json, statistics, sys
load = lambda p: [json.loads(l) for l in open(p) if l.strip()]
q, t, f, batch = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3]), int(sys.argv[4])
med = lambda rows, k: statistics.median(d[k] for d in rows) if rows and all(k in d for d in rows) else float('nan')
print(f"mbv3-tiny, 28x28x1, threads {t[0]['threads']}")
print(f"{'img/s (median of %d rounds)' % len(q):30s} {'qat':>10s} {'pytorch':>10s} {'ratio':>7s}")
res = {}
for bs in sorted({1, batch}):
    k8, k32 = f'int8_infer_b{bs}_img_s', f'fp32_infer_b{bs}_img_s'
    qa, ta = med(q, k8), med(t, k8)
    qf, tf = med(f, k32), med(t, k32)
    eng = {e: med(t, f'int8_{e}_infer_b{bs}_img_s') for e in ('onednn', 'qnnpack')}
    print(f"{'INT8 inference batch %d' % bs:30s} {qa:10.1f} {ta:10.1f} {qa / ta:6.2f}x"
          f"   (pytorch onednn {eng['onednn']:.1f}, qnnpack {eng['qnnpack']:.1f})")
    print(f"{'FP32 inference batch %d' % bs:30s} {qf:10.1f} {tf:10.1f} {qf / tf:6.2f}x")
    print(f"{'INT8 / FP32 speed, batch %d' % bs:30s} {qa / qf:9.2f}x {ta / tf:9.2f}x")
    res[f'b{bs}'] = {'qat_int8': qa, 'torch_int8': ta, 'int8_ratio': qa / ta, 'torch_int8_engines': eng,
                     'qat_fp32': qf, 'torch_fp32': tf, 'qat_int8_over_fp32': qa / qf,
                     'torch_int8_over_fp32': ta / tf}
print(json.dumps(res))
PY
