#!/usr/bin/env python3
"""The paper cost model of docs/distributed.md: per training step, compute time vs the ring
allreduce of the gradients (2(N-1)/N x bytes / bandwidth + 2(N-1) x latency) and SyncBN's small
allreduces (2 per BN layer, recursive doubling: log2(N) x latency each), for mbv2-tiny and
MobileNetV2-1.0 at 1, 8 and 64 nodes on 10 and 100 Gbit/s. Prints the markdown tables.

Inputs (measured or stated):
  - this 2-core node trains mbv2-tiny at 2750 img/s (README, 2 threads): 2750 x 4.86 M MACs x 3
    (forward + two backward GEMMs) = 40 G MAC/s, assumed for MobileNetV2-1.0 too (300 M MACs at
    224x224; optimistic: its larger layers run no worse than the tiny ones);
  - a "32-core node" computes 16x faster (linear in cores: optimistic, so communication weighs
    more there, the case where scaling stops paying first);
  - latency per message: 20 us on 10 Gbit/s Ethernet with TCP, 3 us on 100 Gbit/s with RDMA.
"""
import math

NODE_MACS = 2750 * 4.86e6 * 3
MODELS = [  # name, parameters, MACs per image, images per node per step, BN layers
    ("mbv2-tiny (28x28)", 86634, 4.86e6, 64, 26),
    ("MobileNetV2-1.0 (224x224)", 3.5e6, 300e6, 32, 52),
]
NETS = [("10 Gbit/s", 1.25e9, 20e-6), ("100 Gbit/s", 12.5e9, 3e-6)]
NODES = [("2-core node (this one)", 1), ("32-core node", 16)]
BUCKETS = 4  # for the overlapped variant


def step(model, node_speedup, net, n, overlap):
    _, params, macs, b, nbn = model
    _, bw, lat = net
    tc = b * macs * 3 / (NODE_MACS * node_speedup)
    if n == 1:
        return tc, tc
    g = params * 4
    k = BUCKETS if overlap else 1
    ring = 2 * (n - 1) / n * g / bw + k * 2 * (n - 1) * lat
    sync = 2 * nbn * math.log2(n) * lat
    if not overlap:
        return tc, tc + ring + sync
    # the backward (~2/3 of a step) hides all buckets but the last
    return tc, tc / 3 + max(2 * tc / 3, ring * (k - 1) / k) + ring / k + sync


for node, sp in NODES:
    print(f"\n{node}: step time (ms) and scaling efficiency (compute / step), weak scaling")
    print("| model | network | compute/step | N=8 | N=64 | N=64, 4 buckets overlapped | N=64, --local-bn |")
    print("|---|---|---|---|---|---|---|")
    for m in MODELS:
        for net in NETS:
            tc, _ = step(m, sp, net, 1, False)
            cells = []
            for n in (8, 64):
                _, s = step(m, sp, net, n, False)
                cells.append(f"{s*1e3:.1f} ms, {tc/s*100:.0f}%")
            _, so = step(m, sp, net, 64, True)
            cells.append(f"{so*1e3:.1f} ms, {tc/so*100:.0f}%")
            # --local-bn: no SyncBN latency term
            nb = (m[0], m[1], m[2], m[3], 0)
            _, sl = step(nb, sp, net, 64, False)
            cells.append(f"{sl*1e3:.1f} ms, {tc/sl*100:.0f}%")
            print(f"| {m[0]} | {net[0]} | {tc*1e3:.1f} ms | " + " | ".join(cells) + " |")
