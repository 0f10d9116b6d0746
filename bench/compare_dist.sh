#!/usr/bin/env bash
# Data-parallel training against threads on one machine (issue 18, docs/distributed.md):
# `mpirun -np 2 --bind-to core qat train --threads 1` (2 ranks x 1 thread) against
# `qat train --threads 2` (1 process x 2 threads), alternating in one run (odd rounds the ranks
# first, even rounds the threads), STEPS optimizer steps of Fashion-MNIST's mbv2-tiny each (global
# batch 128 both), then the median img/s of each side, their ratio, and the share of the ranks'
# time spent in collectives (SyncBN's and the observers' small allreduces plus the gradient
# allreduce), on the rank that waited most and on the one that waited least, and the gradient
# allreduce's own share. The machine is shared and noisy: only figures measured in one run mean
# something; the CPU model and the load are printed before and after.
#
#   bench/compare_dist.sh [ROUNDS] [STEPS]        (defaults 5 rounds, 300 steps)
#   SIDES="ranks threads localbn" bench/compare_dist.sh   also 2 ranks with --local-bn
#
# Run it under `flock /work/heavy.lock` on a shared machine. The test split is cut to 256 images
# (bench/out/fmnist-bench/) so the evaluation after the steps costs little; img/s counts the
# training steps only.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} steps=${2:-300}
sides=${SIDES:-ranks threads}
qat=${QAT:-./qat}
out=bench/out/dist; mkdir -p "$out"
data=bench/out/fmnist-bench
src=/usr/share/datasets/fashion-mnist
py=/usr/bin/python3

command -v mpirun >/dev/null || { echo "compare_dist: mpirun not found (apt-get install openmpi-bin)" >&2; exit 1; }
ldd "$qat" | grep -q libmpi || { echo "compare_dist: $qat was built without MPI (install libopenmpi-dev, make clean; make)" >&2; exit 1; }
if [ ! -f "$data/t10k-labels-idx1-ubyte" ]; then
  mkdir -p "$data"
  ln -sf "$src/train-images-idx3-ubyte.gz" "$src/train-labels-idx1-ubyte.gz" "$data/"
  "$py" - "$src" "$data" 256 <<'PY'
import gzip, struct, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name, rec in (('t10k-images-idx3-ubyte', 28 * 28), ('t10k-labels-idx1-ubyte', 1)):
    b = gzip.open(f'{src}/{name}.gz').read()
    dims = b[3]
    hdr = bytearray(b[:4 + 4 * dims]); hdr[4:8] = struct.pack('>I', n)
    open(f'{dst}/{name}', 'wb').write(bytes(hdr) + b[4 + 4 * dims:4 + 4 * dims + n * rec])
PY
fi

root=(); [ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
common=(train --data "$data" --crop-pad 2 --flip --epochs 1 --max-steps "$steps" --batch 128 --json)
run_side() { # side round
  local log="$out/$1.$2.log"
  case $1 in
    ranks)   mpirun "${root[@]}" -np 2 --bind-to core "$qat" "${common[@]}" --threads 1 --out "$out/r" ;;
    localbn) mpirun "${root[@]}" -np 2 --bind-to core "$qat" "${common[@]}" --threads 1 --local-bn --out "$out/l" ;;
    threads) "$qat" "${common[@]}" --threads 2 --out "$out/t" ;;
  esac >"$log.json" 2>"$log"
}

cpuf() { grep -m1 "^$1[[:space:]]*:" /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'; }
echo "cpu: $(cpuf 'model name') (family $(cpuf 'cpu family') model $(cpuf 'model')), $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$rounds rounds x $steps steps of global batch 128 per side; sides: $sides"
for r in $(seq "$rounds"); do
  order=$sides
  [ $((r % 2)) = 0 ] && order=$(echo "$sides" | tr ' ' '\n' | tac | tr '\n' ' ')
  for s in $order; do echo "round $r/$rounds: $s" >&2; run_side "$s" "$r"; done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

"$py" - "$out" "$rounds" $sides <<'PY'
import json, re, statistics, sys
out, rounds, sides = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
pat = re.compile(r'in collectives ([\d.]+)% of the time on the rank waiting most, ([\d.]+)% least; '
                 r'gradient allreduce ([\d.]+)%, ([\d.]+)%')
res = {}
for s in sides:
    ips, shares = [], []
    for r in range(1, rounds + 1):
        ips.append(json.loads(open(f'{out}/{s}.{r}.log.json').read().strip().splitlines()[-1])['img_per_s'])
        m = pat.search(open(f'{out}/{s}.{r}.log').read())
        if m: shares.append([float(v) for v in m.groups()])
    res[s] = statistics.median(ips)
    line = f"{s:8s} img/s median {res[s]:7.1f}  (rounds: {', '.join(f'{v:.0f}' for v in ips)})"
    if shares:
        med = [statistics.median(x[i] for x in shares) for i in range(4)]
        line += (f"\n{'':8s} collectives {med[0]:.1f}% of the step on the rank waiting most, {med[1]:.1f}% "
                 f"least; gradient allreduce {med[2]:.2f}%, {med[3]:.2f}% (medians)")
    print(line)
if 'ranks' in res and 'threads' in res:
    print(f"ratio 2 ranks x 1 thread / 1 process x 2 threads: {res['ranks'] / res['threads']:.3f}")
if 'localbn' in res and 'threads' in res:
    print(f"ratio 2 ranks --local-bn / 1 process x 2 threads: {res['localbn'] / res['threads']:.3f}")
PY
