"""PyTorch peer for MobileNetV3: the `mbv3-tiny` preset (layers/presets/mbv3-tiny.spec) for 28x28x1
inputs in PyTorch (Debian's python3-torch 1.13), FP32 and FX INT8, in the style of
../shared/peer/torch_peer.py (which stays untouched: its network is mbv2-tiny).

  /usr/bin/python3 bench/torch_mbv3.py bench [--threads 2] [--batch 64] [--steps 30]
      prints img/s of FP32 inference and of FX INT8 inference (prepare_fx, calibration on test
      images, convert_fx) with the onednn and the qnnpack engines (this torch has no fbgemm/x86), at batch 1
      and --batch; int8_infer_b*_img_s is the faster backend's (the peer at its best). Last line
      is JSON.
  /usr/bin/python3 bench/torch_mbv3.py check
      prints the parameter and MAC counts and the quantized graph's op kinds; exits non-zero if
      the parameters differ from qat's 184,554 or an SE/hardswish op stayed in float.

mbv3-tiny (NHWC in qat, NCHW here; 184,554 parameters, 5.27 M MACs per image):
  stem  conv3x3 1->16 + BN + hardswish
  MobileNetV3 bottlenecks (torchvision's InvertedResidual) (e expanded, c out, k, SE, act, stride):
    [1x1 expand + BN + act (left out when e == in)] -> dw kxk stride + BN + act
    -> [SE: avgpool, 1x1 conv+bias to make_divisible(e/4, 8) + ReLU, 1x1 conv+bias to e,
        hardsigmoid, x * gate] -> 1x1 project + BN, residual add when stride 1 and in == c:
      (16,16,3,se,relu,1) (48,24,3,-,relu,2) (72,24,3,-,relu,1) (96,40,5,se,hs,2)
      (160,40,5,se,hs,1) (192,64,5,se,hs,2) (256,64,5,se,hs,1)
  head  conv1x1 64->192 + BN + hardswish, global average pool, linear 192->10
  convs other than SE's have no bias, padding k//2; input normalised with mean 0.2860, std 0.3530.

How PyTorch 1.13 FX quantizes it (the default qconfig mapping of the backend): conv+BN(+ReLU)
fused into quantized convs, hardswish as quantized::hardswish (requantizing, u8 -> u8),
hardsigmoid with fixed output qparams (scale 1/256, zero point 0), the SE multiply as
quantized::mul, the residual adds as quantized::add, avgpool/adaptive pool in u8.
"""
import argparse, copy, gzip, json, struct, sys, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import prepare_fx, convert_fx

DATA = '/usr/share/datasets/fashion-mnist'
MEAN, STD = 0.2860, 0.3530
# The engines Debian's torch 1.13 has (no fbgemm, so no 'x86'); each with its default qconfigs.
BACKENDS = ('onednn', 'qnnpack')
QAT_PARAMS = 184554  # ./qat summary --model mbv3-tiny
# (e, c, k, se, act, stride) of each bottleneck, as in layers/presets/mbv3-tiny.spec
BLOCKS = [(16, 16, 3, 1, 'relu', 1), (48, 24, 3, 0, 'relu', 2), (72, 24, 3, 0, 'relu', 1),
          (96, 40, 5, 1, 'hs', 2), (160, 40, 5, 1, 'hs', 1), (192, 64, 5, 1, 'hs', 2),
          (256, 64, 5, 1, 'hs', 1)]


def load_test():
    with gzip.open(f'{DATA}/t10k-images-idx3-ubyte.gz') as f:
        d = f.read()
    n, r, c = struct.unpack('>III', d[4:16])
    x = np.frombuffer(d, np.uint8, offset=16).reshape(n, 1, r, c).astype(np.float32) / 255.0
    return (torch.from_numpy(x) - MEAN) / STD


def make_divisible(v, d=8):  # torchvision's _make_divisible (qat_make_divisible)
    n = max(d, int(v + d / 2) // d * d)
    return n + d if n < 0.9 * v else n


def act(kind):
    return nn.Hardswish() if kind == 'hs' else nn.ReLU()


def cba(i, o, k, s, g=1, a=None):
    layers = [nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o)]
    if a:
        layers.append(act(a))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, c):
        super().__init__()
        sq = make_divisible(c / 4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.relu = nn.Conv2d(c, sq, 1), nn.ReLU()
        self.fc2, self.hardsigmoid = nn.Conv2d(sq, c, 1), nn.Hardsigmoid()

    def forward(self, x):
        return x * self.hardsigmoid(self.fc2(self.relu(self.fc1(self.avgpool(x)))))


class Bottleneck(nn.Module):
    def __init__(self, i, e, o, k, se, a, s):
        super().__init__()
        layers = [] if e == i else [cba(i, e, 1, 1, a=a)]
        layers.append(cba(e, e, k, s, g=e, a=a))
        if se:
            layers.append(SqueezeExcite(e))
        layers.append(cba(e, o, 1, 1))
        self.block = nn.Sequential(*layers)
        self.residual = s == 1 and i == o

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MBV3Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        layers, c = [cba(1, 16, 3, 1, a='hs')], 16
        for e, o, k, se, a, s in BLOCKS:
            layers.append(Bottleneck(c, e, o, k, se, a, s))
            c = o
        layers.append(cba(c, 192, 1, 1, a='hs'))
        self.features, self.avgpool, self.fc = nn.Sequential(*layers), nn.AdaptiveAvgPool2d(1), nn.Linear(192, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def macs(model, x):
    total = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total.append(out.numel() // out.shape[0] * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.Linear):
            total.append(m.in_features * m.out_features)
    hs = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return sum(total)


def int8_model(net, x, backend):
    """FX post-training quantization with the backend's default qconfig mapping. Speed does not
    depend on how the scales were found, so a few calibration batches stand in for QAT."""
    torch.backends.quantized.engine = backend
    p = prepare_fx(copy.deepcopy(net).eval(), get_default_qconfig_mapping(backend), (x[:1],))
    with torch.no_grad():
        for i in range(0, 512, 128):
            p(x[i:i + 128])
    return convert_fx(p)


def per_step(fn, steps):
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def bench(a):
    x = load_test()
    out = {'threads': a.threads, 'batch': a.batch, 'model': 'mbv3-tiny'}
    net = MBV3Tiny().eval()
    int8 = {b: int8_model(net, x, b) for b in BACKENDS}
    with torch.no_grad():
        for bs in sorted({1, a.batch}):
            n = a.steps * (10 if bs == 1 else 1)
            xb = x[:bs].contiguous()
            out[f'fp32_infer_b{bs}_img_s'] = bs / per_step(lambda: net(xb), n)
            for b, m in int8.items():
                torch.backends.quantized.engine = b
                out[f'int8_{b}_infer_b{bs}_img_s'] = bs / per_step(lambda: m(xb), n)
            best = max(int8, key=lambda b: out[f'int8_{b}_infer_b{bs}_img_s'])
            out[f'int8_infer_b{bs}_img_s'] = out[f'int8_{best}_infer_b{bs}_img_s']
            out[f'int8_infer_b{bs}_backend'] = best
    for k, v in out.items():
        print(f'{k:30s} {v:10.1f}' if isinstance(v, float) else f'{k:30s} {v!s:>10s}')
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}))


def kind(mod):
    """'quantized Hardswish' for torch.ao.nn.quantized modules, 'float Hardswish' for torch.nn's."""
    t = type(mod)
    return ('quantized ' if '.quantized' in t.__module__ else 'float ') + t.__name__


def check(a):
    x = load_test()[:512]
    net = MBV3Tiny().eval()
    n = sum(p.numel() for p in net.parameters())
    print(f'parameters {n:,} (qat: {QAT_PARAMS:,}), MACs per image {macs(net, x[:1]):,}')
    ok = n == QAT_PARAMS
    for b in BACKENDS:
        m = int8_model(net, x, b)
        kinds = sorted({'quantize_per_tensor' if 'quantize_per_tensor' in str(nd.target)
                        else str(nd.target).split('.')[-1] if nd.op != 'call_module'
                        else kind(m.get_submodule(nd.target))
                        for nd in m.graph.nodes if nd.op in ('call_module', 'call_function', 'call_method')})
        print(f'{b}: {", ".join(kinds)}')
        # SE and hardswish must run quantized: one quantize at the input and one dequantize at the
        # logits, no float conv, linear or hardswish in between (pooling and hardsigmoid are
        # torch.nn modules that take quantized tensors as they are)
        names = [str(nd.target) for nd in m.graph.nodes]
        floats = [k for k in kinds if k in ('float Conv2d', 'float Linear', 'float Hardswish')]
        nq, ndq = sum('quantize_per_tensor' in t for t in names), names.count('dequantize')
        if floats or nq != 1 or ndq != 1:
            print(f'{b}: float ops in the INT8 graph: {floats}, {nq} quantize, {ndq} dequantize')
            ok = False
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('mode', choices=['bench', 'check'])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--steps', type=int, default=30)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    {'bench': bench, 'check': check}[a.mode](a)
