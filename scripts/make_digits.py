#!/usr/bin/env python3
"""Writes a synthetic handwritten-digit ImageFolder of 28x28 gray PNGs (Python 3 standard
library only: no internet, no PyTorch, no PIL).

    python3 scripts/make_digits.py OUT [--train 8000] [--test 2000] [--seed 1] [--single-tree]

OUT/train/<0-9>/NNNNN.png and OUT/test/<0-9>/NNNNN.png (or, with --single-tree, OUT/<0-9>/
holding train+test images, for qat's --val-split path). Classes are balanced.

Each digit is a set of strokes (lines, arcs, a Bezier curve) in a unit box; every image jitters
the control points, applies a random affine map (rotation, shear, anisotropic scale, shift),
draws the strokes with a random pen width (anti-aliased by the distance to the stroke), and adds
ink-level, background and pixel noise, so a small CNN does not reach 100% in a few epochs.
Most digits are not mirror-symmetric (2, 3, 4, 5, 6, 7, 9 and the flag of 1): it is the kind of
data that random horizontal flips hurt. Used to measure qat's augmentation defaults (issue 11);
the images are generated, never committed.
"""
import argparse
import math
import os
import random
import struct
import zlib

SIZE = 28


def arc(cx, cy, r, a0, a1, n=14, ry=None):
    """Points of an arc, angles in degrees, y down (270 = top, 90 = bottom)."""
    ry = r if ry is None else ry
    return [(cx + r * math.cos(math.radians(a0 + (a1 - a0) * i / n)),
             cy + ry * math.sin(math.radians(a0 + (a1 - a0) * i / n))) for i in range(n + 1)]


def bezier(p0, p1, p2, n=10):
    return [((1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t * t * p2[0],
             (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t * t * p2[1])
            for t in (i / n for i in range(n + 1))]


# Strokes (polylines) of each digit in a unit box, x right, y down.
def glyph(d, rng):
    if d == 0:
        return [arc(0.5, 0.5, 0.3, 0, 360, 24, ry=0.45)]
    if d == 1:
        s = [[(0.52, 0.05), (0.5, 0.95)]]
        if rng.random() < 0.8:
            s.append([(0.52, 0.05), (0.3, 0.25)])
        if rng.random() < 0.3:
            s.append([(0.33, 0.95), (0.7, 0.95)])
        return s
    if d == 2:
        return [arc(0.5, 0.3, 0.27, 180, 400, 14) + [(0.15, 0.95), (0.85, 0.95)]]
    if d == 3:
        return [arc(0.47, 0.28, 0.23, 200, 450, 14), arc(0.47, 0.72, 0.25, 270, 520, 14)]
    if d == 4:
        return [[(0.62, 0.05), (0.12, 0.65), (0.88, 0.65)], [(0.65, 0.2), (0.65, 0.95)]]
    if d == 5:
        return [[(0.8, 0.06), (0.3, 0.06), (0.27, 0.46)] + arc(0.48, 0.67, 0.27, 220, 500, 14)]
    if d == 6:
        return [bezier((0.72, 0.05), (0.22, 0.18), (0.24, 0.7)), arc(0.5, 0.7, 0.26, 180, 540, 20)]
    if d == 7:
        s = [[(0.15, 0.06), (0.86, 0.06), (0.42, 0.95)]]
        if rng.random() < 0.3:
            s.append([(0.45, 0.5), (0.78, 0.5)])
        return s
    if d == 8:
        return [arc(0.5, 0.27, 0.21, 0, 360, 18), arc(0.5, 0.72, 0.25, 0, 360, 20)]
    return [arc(0.5, 0.3, 0.24, 0, 360, 18), bezier((0.74, 0.3), (0.74, 0.7), (0.55, 0.95))]


def render(d, rng):
    strokes = glyph(d, rng)
    jit = 0.06
    ang = math.radians(max(-35.0, min(35.0, rng.gauss(0, 14))))
    shear = rng.uniform(-0.45, 0.45)
    sx, sy = rng.uniform(0.45, 1.05), rng.uniform(0.65, 1.1)
    box = 20.0  # MNIST: the digit fits a 20x20 box centred in 28x28
    tx, ty = rng.uniform(-3.5, 3.5), rng.uniform(-3.5, 3.5)
    ca, sa = math.cos(ang), math.sin(ang)

    def warp(p):
        x, y = (p[0] - 0.5) * sx, (p[1] - 0.5) * sy
        x += shear * y
        x, y = ca * x - sa * y, sa * x + ca * y
        return (SIZE / 2 + tx + box * x, SIZE / 2 + ty + box * y)

    # per stroke: a smooth random displacement of its ends plus a wobble along it, so strokes
    # stay connected but no two images share a shape
    segs = []
    for pts in strokes:
        dx0, dy0, dx1, dy1 = (rng.gauss(0, jit) for _ in range(4))
        amp, freq, phase = rng.uniform(0, 0.04), rng.uniform(1, 3), rng.uniform(0, 2 * math.pi)
        n = len(pts) - 1
        moved = []
        for i, (x, y) in enumerate(pts):
            t = i / n if n else 0
            w = amp * math.sin(2 * math.pi * freq * t + phase)
            moved.append(warp((x + dx0 * (1 - t) + dx1 * t + w, y + dy0 * (1 - t) + dy1 * t - w)))
        pairs = list(zip(moved, moved[1:]))
        if len(pairs) > 4 and rng.random() < 0.25:  # a gap where the pen lifted
            k = rng.randrange(len(pairs) - 1)
            del pairs[k:k + rng.randint(1, 2)]
        segs.extend(pairs)
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):  # stray marks
        x0, y0 = rng.uniform(2, SIZE - 2), rng.uniform(2, SIZE - 2)
        a, l = rng.uniform(0, 2 * math.pi), rng.uniform(2, 6)
        segs.append(((x0, y0), (x0 + l * math.cos(a), y0 + l * math.sin(a))))
    radius = rng.uniform(0.5, 1.9)
    cov = [0.0] * (SIZE * SIZE)
    for (x0, y0), (x1, y1) in segs:
        lo_x, hi_x = int(max(0, min(x0, x1) - radius - 1)), int(min(SIZE - 1, max(x0, x1) + radius + 1))
        lo_y, hi_y = int(max(0, min(y0, y1) - radius - 1)), int(min(SIZE - 1, max(y0, y1) + radius + 1))
        vx, vy = x1 - x0, y1 - y0
        ll = vx * vx + vy * vy
        for py in range(lo_y, hi_y + 1):
            cy = py + 0.5
            for px in range(lo_x, hi_x + 1):
                cx = px + 0.5
                t = 0.0 if ll == 0 else max(0.0, min(1.0, ((cx - x0) * vx + (cy - y0) * vy) / ll))
                ex, ey = cx - (x0 + t * vx), cy - (y0 + t * vy)
                c = radius + 0.5 - math.sqrt(ex * ex + ey * ey)
                if c > cov[py * SIZE + px]:
                    cov[py * SIZE + px] = min(1.0, c)
    ink = rng.uniform(110, 255)
    bg = rng.uniform(0, 60)
    noise = rng.uniform(0, 40)
    out = bytearray(SIZE * SIZE)
    for i, c in enumerate(cov):
        v = bg + (ink - bg) * c + rng.gauss(0, noise)
        out[i] = 0 if v < 0 else 255 if v > 255 else int(v + 0.5)
    return bytes(out)


def png_gray(path, w, h, pix):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    raw = b"".join(b"\x00" + pix[y * w:(y + 1) * w] for y in range(h))
    body = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=8000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--single-tree", action="store_true",
                    help="OUT/<class>/ only (train+test images; qat holds out --val-split)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    for split, n in (("train", a.train), ("test", a.test)):
        for i in range(n):
            d = i % 10
            sub = os.path.join(a.out, str(d)) if a.single_tree else os.path.join(a.out, split, str(d))
            os.makedirs(sub, exist_ok=True)
            png_gray(os.path.join(sub, "%s%05d.png" % (split[:2], i)), SIZE, SIZE, render(d, rng))
    print("wrote %d train and %d test images to %s" % (a.train, a.test, a.out))


if __name__ == "__main__":
    main()
