# Sourced by the bench/ scripts: the host block (build/bench_host: CPU model, family/model, the
# ISA paths the dispatch takes, measured FP32 FMA and int8 VNNI peaks, threads, load average)
# that goes with every table, so figures from different hosts are never mixed up.
#   host_probe BUILD_DIR THREADS   before the timed runs: builds bench_host, keeps its block
#   host_print                     with the table: the block and the load average at the end
host_probe() {
  make -s BUILD="$1" "$1/bench_host" >&2
  QAT_HOST_BLOCK=$("$1/bench_host" --threads "$2")
}
host_print() {
  printf '%s\n' "$QAT_HOST_BLOCK"
  echo "load     at the end of the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
}
