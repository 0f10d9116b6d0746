#!/usr/bin/env bash
# qat's runtimes against ONNX Runtime, the runtime a user would pick instead: the same INT8
# model (MODEL.q8 in qat's runtime, its QDQ export in ONNX Runtime) and the same FP32 network
# (qat's FP32 inference of the checkpoint's architecture, the checkpoint's float export in ONNX
# Runtime), same threads, batch 1 and BATCH, alternating ROUNDS times in one run; medians, the
# qat / ONNX Runtime ratios and each runtime's INT8 / FP32 ratio. Timed: run it under
# `flock /work/heavy.lock` on a shared machine; only ratios from one run mean something.
#
#   bench/onnx_peer.sh MODEL.q8 FP32.ckpt [ROUNDS=3] [THREADS=2] [BATCH=64]   (SECONDS_PER=3)
#
# qat INT8: bench_int8 (qat_rt_run on normalised floats, quantized inside). ONNX Runtime:
# tests/onnx/ort_run.js --bench, raw float pixels normalised and quantized inside the graph,
# onnxruntime-node 1.30 CPU, graph optimisation "all", intra-op threads = THREADS; its times
# include Node's per-call overhead (tens of microseconds), which a Python caller pays likewise.
set -euo pipefail
cd "$(dirname "$0")/.."
q8=${1:?usage: bench/onnx_peer.sh MODEL.q8 FP32.ckpt [ROUNDS] [THREADS] [BATCH]}
ckpt=${2:?usage: bench/onnx_peer.sh MODEL.q8 FP32.ckpt [ROUNDS] [THREADS] [BATCH]}
rounds=${3:-3} threads=${4:-2} batch=${5:-64} secs=${SECONDS_PER:-3}
build=${BUILD:-build}
py=/usr/bin/python3
out=bench/out/onnx_peer; mkdir -p "$out"
make -s BUILD="$build" qat "$build/bench_int8" "$build/bench_train" >&2
./qat export "$q8" -o "$out/int8.onnx" >&2
./qat export --ckpt "$ckpt" -o "$out/fp32.onnx" >&2
arch=$(./qat summary --ckpt "$ckpt" 2>/dev/null | sed -n 's/^model \([^ ,:]*\).*/\1/p' | head -1)
arch=${arch:-mbv2-tiny}
read -r c h w < <("$py" -c 'import onnx,sys; d=onnx.load(sys.argv[1]).graph.input[0].type.tensor_type.shape.dim; print(d[1].dim_value, d[2].dim_value, d[3].dim_value)' "$out/int8.onnx")
"$py" -c "import numpy as np; np.random.default_rng(1).integers(0, 256, $batch*$c*$h*$w).astype(np.float32).tofile('$out/pixels.f32')"
: > "$out/qat_int8.jsonl"; : > "$out/qat_fp32.jsonl"; : > "$out/ort.jsonl"

ort() {   # ort KIND BATCH
  node tests/onnx/ort_run.js "$out/$1.onnx" "$out/pixels.f32" "$batch" "$c" "$h" "$w" /dev/null \
    --threads "$threads" --bench "$secs" --batch "$2" | sed "s/^{/{\"kind\": \"$1\", /" >> "$out/ort.jsonl"
}
for r in $(seq "$rounds"); do
  echo "round $r/$rounds: qat int8, onnxruntime int8, qat fp32, onnxruntime fp32" >&2
  "$build/bench_int8" --model "$q8" --threads "$threads" --batch "$batch" | tail -n 1 >> "$out/qat_int8.jsonl"
  ort int8 1; ort int8 "$batch"
  "$build/bench_train" --model "$arch" --threads "$threads" --batch "$batch" --qat 0 --steps 10 --infer 1 \
    | tail -n 1 >> "$out/qat_fp32.jsonl"
  ort fp32 1; ort fp32 "$batch"
done

"$py" - "$out" "$batch" "$threads" "$arch" <<'PY'
import json, statistics, sys
out, batch, threads, arch = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
load = lambda p: [json.loads(l) for l in open(p) if l.strip()]
q8, q32, o = load(f'{out}/qat_int8.jsonl'), load(f'{out}/qat_fp32.jsonl'), load(f'{out}/ort.jsonl')
med = lambda xs: statistics.median(xs) if xs else float('nan')
ort = lambda kind, bs: med([d['img_s'] for d in o if d['kind'] == kind and d['batch'] == bs])
print(f"{arch}, {threads} threads, median of {len(q8)} rounds, img/s     {'qat':>9s} {'onnxrt':>9s} {'qat/ort':>8s}")
res = {}
for bs in sorted({1, batch}):
    qi, qf = med([d[f'int8_infer_b{bs}_img_s'] for d in q8]), med([d[f'fp32_infer_b{bs}_img_s'] for d in q32])
    oi, of = ort('int8', bs), ort('fp32', bs)
    print(f"{'INT8 batch %d' % bs:44s} {qi:9.1f} {oi:9.1f} {qi / oi:7.2f}x")
    print(f"{'FP32 batch %d' % bs:44s} {qf:9.1f} {of:9.1f} {qf / of:7.2f}x")
    print(f"{'INT8 / FP32, batch %d' % bs:44s} {qi / qf:8.2f}x {oi / of:8.2f}x")
    res[f'b{bs}'] = {'qat_int8': qi, 'ort_int8': oi, 'int8_ratio': qi / oi, 'qat_fp32': qf, 'ort_fp32': of,
                     'fp32_ratio': qf / of, 'qat_int8_over_fp32': qi / qf, 'ort_int8_over_fp32': oi / of}
host = q8[-1].get('host', {}) if q8 else {}
print(json.dumps(res))
PY
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
