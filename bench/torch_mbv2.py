"""PyTorch 1.13 side of bench/compare_mbv2.sh: MobileNetV2-1.0 (torchvision's mobilenet_v2
layout, written out here because Debian's python3-torch comes without torchvision) for 32x32x3
inputs with the stem at stride 1, the same network as qat's preset mbv2-1.0
(layers/presets/mbv2-1.0.spec): 2,236,682 parameters with 10 classes. Synthetic data (speed
only). Times, like ../shared/peer/torch_peer.py: the FP32 training step (fwd + bwd + SGD),
FP32 inference and FX INT8 inference (prepare_fx with the onednn qconfig, calibrated on two
batches, convert_fx), all at --batch, 3 warm-up calls then the mean of --steps.
  /usr/bin/python3 bench/torch_mbv2.py [--threads 2] [--batch 64] [--steps 5] [--only train,int8,fp32]
The last line is JSON: fp32_train_img_s, fp32_infer_bB_img_s, int8_infer_bB_img_s, peak_rss_kib.
"""
import argparse, copy, json, resource, time
import torch, torch.nn as nn, torch.nn.functional as F
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import prepare_fx, convert_fx

# (expansion t, out channels c, repeats n, first stride s): torchvision's table
CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
       (6, 320, 1, 1)]


def cbr(i, o, k, s, g=1, act=True):
    layers = [nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o)]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, i, o, stride, t):
        super().__init__()
        h = i * t
        layers = [] if t == 1 else [cbr(i, h, 1, 1)]
        layers += [cbr(h, h, 3, stride, g=h), cbr(h, o, 1, 1, act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and i == o

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MBV2(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        layers, c = [cbr(3, 32, 3, 1)], 32
        for t, o, n, s in CFG:
            for j in range(n):
                layers.append(InvertedResidual(c, o, s if j == 0 else 1, t))
                c = o
        layers.append(cbr(c, 1280, 1, 1))
        self.features, self.drop, self.fc = nn.Sequential(*layers), nn.Dropout(0.2), nn.Linear(1280, classes)

    def forward(self, x):
        return self.fc(self.drop(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)))


def per_step(fn, steps):
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--only', default='train,int8,fp32')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    torch.backends.quantized.engine = 'onednn'
    x, y = torch.randn(a.batch, 3, 32, 32), torch.randint(0, 10, (a.batch,))
    net, out, bs = MBV2(), {'threads': a.threads, 'batch': a.batch}, a.batch
    out['params'] = sum(p.numel() for p in net.parameters())
    if 'train' in a.only:
        opt = torch.optim.SGD(net.train().parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
        out['fp32_train_img_s'] = bs / per_step(step, a.steps)
    net.eval()
    with torch.no_grad():
        if 'fp32' in a.only:
            out[f'fp32_infer_b{bs}_img_s'] = bs / per_step(lambda: net(x), a.steps)
        if 'int8' in a.only:
            q = prepare_fx(copy.deepcopy(net), get_default_qconfig_mapping('onednn'), (x,))
            for _ in range(2):
                q(torch.randn(max(bs, 16), 3, 32, 32))
            q = convert_fx(q)
            out[f'int8_infer_b{bs}_img_s'] = bs / per_step(lambda: q(x), a.steps)
    out['peak_rss_kib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for k, v in out.items():
        print(f'{k:24s} {v:10.1f}' if isinstance(v, float) else f'{k:24s} {v:10d}')
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == '__main__':
    main()
