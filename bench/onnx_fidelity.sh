#!/usr/bin/env bash
# Fidelity of the ONNX export on a dataset's whole test split: exports MODEL.q8 (QDQ) and, when
# given, FP32.ckpt (float, BN folded) with `qat export`, runs them in ONNX Runtime
# (tests/onnx/ort_run.js) and compares with qat's own logits (bench/onnx_logits.c: the INT8
# runtime on raw pixels, the FP32 eval forward): top-1 agreement, each one's accuracy, the
# largest logit difference. Accuracy only, not timed: no lock needed.
#
#   bench/onnx_fidelity.sh MODEL.q8 [FP32.ckpt] [DATA=fashion-mnist]     (THREADS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
q8=${1:?usage: bench/onnx_fidelity.sh MODEL.q8 [FP32.ckpt] [DATA]}
ckpt=${2:-} data=${3:-fashion-mnist} threads=${THREADS:-2}
build=${BUILD:-build}
out=bench/out/onnx_fidelity; mkdir -p "$out"
make -s BUILD="$build" qat "$build/onnx_logits" >&2
py=/usr/bin/python3

run_pair() {   # run_pair KIND SOURCE-ARGS...
  local kind=$1; shift
  ./qat export "$@" -o "$out/$kind.onnx" >&2
  local shape
  shape=$("$build/onnx_logits" --"$([ "$kind" = int8 ] && echo q8 || echo ckpt)" "${@: -1}" \
          --data "$data" --out "$out" --threads "$threads")
  local n c h w
  read -r n c h w < <("$py" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["images"], d["c"], d["h"], d["w"])' "$shape")
  node tests/onnx/ort_run.js "$out/$kind.onnx" "$out/pixels.f32" "$n" "$c" "$h" "$w" "$out/ort_$kind.f32" \
    --threads "$threads" --batch 500
  "$py" - "$out/$kind.f32" "$out/ort_$kind.f32" "$out/labels.i32" "$kind" <<'PY'
import sys, numpy as np
ours, theirs = np.fromfile(sys.argv[1], np.float32), np.fromfile(sys.argv[2], np.float32)
labels = np.fromfile(sys.argv[3], np.int32)
n = labels.size
ours, theirs = ours.reshape(n, -1), theirs.reshape(n, -1)
a, b = ours.argmax(1), theirs.argmax(1)
d = np.abs(ours.astype(np.float64) - theirs)
scale = np.abs(ours).max()
print(f"{sys.argv[4]}: {n} images: top-1 agreement {(a == b).sum()}/{n} ({100 * (a == b).mean():.3f}%), "
      f"accuracy qat {100 * (a == labels).mean():.2f}% ONNX Runtime {100 * (b == labels).mean():.2f}% "
      f"(diff {100 * ((b == labels).mean() - (a == labels).mean()):+.3f} points), "
      f"max |logit diff| {d.max():.3g} (relative to max |logit| {scale:.3g}: {d.max() / scale:.3g}), "
      f"images with any logit off by > 1e-5 relative: {(d.max(1) > 1e-5 * scale).sum()}")
PY
}

run_pair int8 "$q8"
[ -n "$ckpt" ] && run_pair fp32 --ckpt "$ckpt"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
