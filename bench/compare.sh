#!/usr/bin/env bash
# Runs qat's benchmark and the PyTorch peer alternately (ROUNDS times each, same threads and
# batch) and prints the median img/s of each and their ratio. Machines are shared and noisy:
# only the ratio, measured in one run, is meaningful.
#
#   bench/compare.sh [ROUNDS] [THREADS] [BATCH]       (make bench runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} threads=${2:-2} batch=${3:-64}
peer=../shared/peer/torch_peer.py
py=/usr/bin/python3
out=bench/out; mkdir -p "$out"; : > "$out/qat.jsonl"; : > "$out/torch.jsonl"
. bench/host.sh
host_probe build "$threads"
# The peer's peak RSS is read by a wrapper, so the peer script itself stays untouched.
peer_run() {
  "$py" - "$peer" bench --threads "$threads" --batch "$batch" --only "${1}" <<'PY'
import resource, runpy, sys, io, contextlib, json
path = sys.argv[1]; sys.argv = sys.argv[1:]
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    runpy.run_path(path, run_name='__main__')
d = json.loads(buf.getvalue().strip().splitlines()[-1])
d['peak_rss_kib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(d))
PY
}
for r in $(seq "$rounds"); do
  echo "round $r/$rounds: qat" >&2
  build/bench_train --threads "$threads" --batch "$batch" | tail -n 1 >> "$out/qat.jsonl"
  echo "round $r/$rounds: pytorch" >&2
  peer_run "${PEER_ONLY:-train,qat,infer}" | tail -n 1 >> "$out/torch.jsonl"
done
host_print
"$py" - "$out/qat.jsonl" "$out/torch.jsonl" <<'PY'
import json, statistics, sys
q = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
t = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
keys = [k for k in q[0] if k.endswith('_img_s')]
print(f"{'metric':26s} {'qat':>10s} {'pytorch':>10s} {'ratio':>7s}   (median of {len(q)} alternating rounds)")
res = {}
for k in keys:
    a = statistics.median(d[k] for d in q)
    b = statistics.median(d[k] for d in t) if all(k in d for d in t) else float('nan')
    res[k] = {'qat': a, 'pytorch': b, 'ratio': a / b}
    print(f"{k:26s} {a:10.1f} {b:10.1f} {a / b:6.2f}x")
for k in ('peak_rss_kib',):
    a = max(d[k] for d in q); b = max(d[k] for d in t)
    print(f"{k:26s} {a:10d} {b:10d}")
    res[k] = {'qat': a, 'pytorch': b}
if 'qat_train_img_s' in q[0] and 'fp32_train_img_s' in q[0]:
    r = statistics.median(d['fp32_train_img_s'] / d['qat_train_img_s'] for d in q)
    rt = statistics.median(d['fp32_train_img_s'] / d['qat_train_img_s'] for d in t) if 'qat_train_img_s' in t[0] else float('nan')
    print(f"QAT step time / FP32 step time: qat {r:.2f}x, pytorch {rt:.2f}x")
    res['qat_over_fp32_step'] = {'qat': r, 'pytorch': rt}
print(json.dumps(res))
PY
