#!/usr/bin/env bash
# MobileNetV2-1.0 at 32x32x3 (preset mbv2-1.0) against the same network in PyTorch 1.13
# (bench/torch_mbv2.py): FP32 training step and INT8 inference img/s at each batch size and
# thread count, qat and PyTorch alternating, ROUNDS times; then medians, ratios and memory per
# image (qat: the training arena's high-water mark and the INT8 runtime's activation plan;
# both: peak RSS). Synthetic data: only speed is measured. The INT8 model comes from a
# 2-step training run on a generated CIFAR-style set, PTQ and convert (made once, untimed:
# PREP_ONLY=1 makes it and stops, so it can run outside flock /work/heavy.lock).
#
#   bench/compare_mbv2.sh [ROUNDS] [BATCHES] [THREADS]     e.g. 1 "1 64 256" "1 2"
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1} batches=${2:-1 64 256} threadlist=${3:-1 2}
py=/usr/bin/python3
out=bench/out; mkdir -p "$out"; rows=$out/mbv2.jsonl
q8=$out/mbv2-1.0.q8
make -s build/bench_train build/bench_int8 qat >&2

if [ ! -s "$q8" ]; then
  data=$out/cifar-synth
  if [ ! -s "$data/test_batch.bin" ]; then
    mkdir -p "$data"
    "$py" - "$data" <<'PY'
import os, random, sys
random.seed(0)
for name in [f'data_batch_{i}.bin' for i in range(1, 6)] + ['test_batch.bin']:
    with open(os.path.join(sys.argv[1], name), 'wb') as f:  # 64 records: label + 3072 bytes
        for _ in range(64):
            f.write(bytes([random.randrange(10)]) + os.urandom(3072))
PY
  fi
  echo "making $q8 (2 training steps, PTQ, convert)" >&2
  ./qat train --data "$data" --model mbv2-1.0 --epochs 1 --max-steps 2 --batch 32 --threads 2 \
    --quiet --out "$out/mbv2-train" >&2
  ./qat ptq --ckpt "$out/mbv2-train/last.ckpt" --data "$data" --calib-batches 2 --batch 32 \
    --threads 2 --quiet --out "$out/mbv2-ptq.ckpt" >&2
  ./qat convert --ckpt "$out/mbv2-ptq.ckpt" -o "$q8" >&2
fi
[ "${PREP_ONLY:-0}" = 1 ] && exit 0

. bench/host.sh
host_probe build 2
: > "$rows"
# Timed steps: a training step is long (seconds at batch 256), an INT8 forward short, so the
# INT8 runs take more steps (3 forwards of a few ms each measured mostly noise).
train_steps() { case $1 in 1) echo 10 ;; 64) echo 4 ;; *) echo 2 ;; esac; }
int8_steps() { case $1 in 1) echo 300 ;; 64) echo 40 ;; *) echo 10 ;; esac; }
for r in $(seq "$rounds"); do
  for t in $threadlist; do
    for b in $batches; do
      s=$(train_steps "$b") si=$(int8_steps "$b")
      echo "round $r/$rounds: $t threads, batch $b" >&2
      qt=$(build/bench_train --model mbv2-1.0 --input 32x32x3 --batch "$b" --threads "$t" \
             --steps "$s" --qat 0 --infer 0 | tail -n 1)
      qi=$(build/bench_int8 --model "$q8" --batch "$b" --threads "$t" --steps "$si" | tail -n 1)
      tt=$("$py" bench/torch_mbv2.py --threads "$t" --batch "$b" --steps "$s" --only train | tail -n 1)
      ti=$("$py" bench/torch_mbv2.py --threads "$t" --batch "$b" --steps "$si" --only int8 | tail -n 1)
      tt=$("$py" -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); r=max(a["peak_rss_kib"], b["peak_rss_kib"]); a.update(b); a["peak_rss_kib"]=r; print(json.dumps(a))' "$tt" "$ti")
      printf '{"threads": %d, "batch": %d, "qat_train": %s, "qat_int8": %s, "torch": %s}\n' \
        "$t" "$b" "$qt" "$qi" "$tt" >> "$rows"
    done
  done
done
host_print
"$py" - "$rows" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
keys = sorted({(r['threads'], r['batch']) for r in rows})
med = lambda t, b, f: statistics.median(f(r) for r in rows if (r['threads'], r['batch']) == (t, b))
print(f"mbv2-1.0 at 32x32x3, img/s (median of {len(rows) // len(keys)} round(s))")
print(f"{'threads batch':14s} {'train qat':>10s} {'torch':>8s} {'ratio':>7s} {'int8 qat':>10s} {'torch':>8s} {'ratio':>7s}"
      f" {'qat train KiB/img':>18s} {'qat int8 KiB/img':>17s} {'RSS MiB qat/torch':>18s}")
res = []
for t, b in keys:
    qt = med(t, b, lambda r: r['qat_train']['fp32_train_img_s'])
    tt = med(t, b, lambda r: r['torch']['fp32_train_img_s'])
    qi = med(t, b, lambda r: r['qat_int8'][f'int8_infer_b{b}_img_s'])
    ti = med(t, b, lambda r: r['torch'][f'int8_infer_b{b}_img_s'])
    ta = med(t, b, lambda r: r['qat_train']['train_arena_bytes']) / b / 1024
    ia = med(t, b, lambda r: r['qat_int8'][f'int8_activation_bytes_b{b}']) / b / 1024
    rq = max(max(r['qat_train']['peak_rss_kib'], r['qat_int8']['peak_rss_kib']) for r in rows
             if (r['threads'], r['batch']) == (t, b)) / 1024
    rt = max(r['torch']['peak_rss_kib'] for r in rows if (r['threads'], r['batch']) == (t, b)) / 1024
    print(f"{t:7d} {b:6d} {qt:10.1f} {tt:8.1f} {qt / tt:6.2f}x {qi:10.1f} {ti:8.1f} {qi / ti:6.2f}x"
          f" {ta:18.1f} {ia:17.1f} {rq:8.0f} / {rt:6.0f}")
    res.append({'threads': t, 'batch': b, 'qat_train': qt, 'torch_train': tt, 'train_ratio': qt / tt,
                'qat_int8': qi, 'torch_int8': ti, 'int8_ratio': qi / ti, 'qat_train_kib_per_img': ta,
                'qat_int8_act_kib_per_img': ia, 'rss_mib_qat': rq, 'rss_mib_torch': rt})
print(json.dumps(res))
PY
