#!/usr/bin/env bash
# Share of a training step's time per op: perf samples of build/bench_train grouped by the
# kernel/op they fall in. oneDNN's JIT-generated GEMM code has no symbols; it is counted as
# "gemm (oneDNN)". FP32 training step only (--qat 0 --infer 0).   bench/profile.sh [THREADS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2} steps=${2:-40}
make -s build/bench_train
data=$(mktemp /tmp/qat-perf.XXXXXX)
perf record -q -o "$data" build/bench_train --threads "$threads" --steps "$steps" --qat 0 --infer 0 >/dev/null 2>&1
perf report -i "$data" --no-children --sort dso,symbol 2>/dev/null | grep -v '^#' | grep '%' |
awk '
function op(dso, sym) {
  if (dso ~ /JIT|dnnl/) return "gemm (oneDNN)";
  if (dso ~ /kernel/) return "kernel (page faults, scheduling)";
  if (sym ~ /batchnorm2d_backward|grad_chunk|dx_flat/) return "batchnorm+act backward";
  if (sym ~ /batchnorm2d|stats_chunk|column_sums|fwd_flat|fwd_fq_rows|fwd_range_avx512/) return "batchnorm+act forward";
  if (sym ~ /fwd_range|dwconv_fwd/) return "depthwise forward";
  if (sym ~ /bwd_weight_range|bwd_data_range|dwconv_bwd/) return "depthwise backward";
  if (sym ~ /im2col|col2im|gather|scatter/) return "im2col / strided gather";
  if (sym ~ /conv2d|bias/) return "conv2d glue";
  if (sym ~ /qat_add|pass_grad/) return "residual add";
  if (sym ~ /sgd|adamw|optim/) return "optimizer";
  if (sym ~ /softmax|linear|avgpool|relu/) return "head (pool, linear, loss)";
  if (dso ~ /gomp/) return "OpenMP runtime";
  if (dso ~ /libc/) return "libc (memset, malloc)";
  return "other";
}
{ pct = $1; sub(/%/, "", pct); dso = $2; sym = $4; s[op(dso, sym)] += pct; t += pct }
END { for (k in s) printf "%6.1f%%  %s\n", 100 * s[k] / t, k }' | sort -rn
rm -f "$data"
