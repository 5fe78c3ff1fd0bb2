"""SSIM of an evaluation clip: ``pipelines.metrics.image.ssim`` against the dense 11x11 window.

``iptalker evaluate`` scores SSIM for the model and every baseline, twice per clip (own and
another clip's audio); as dense float64 torch convolutions it was ~45 % of the demo's evaluation
(42 of 92 s). Ours: the separable window with OpenCV's sepFilter2D, float64. The same-run
baseline is that dense form (one 11x11 float64 convolution per blurred map); the printed ratio is
baseline time / ours, and the two values must agree to 1e-9.

    .venv/bin/python benchmarks/metrics_bench.py [--frames 75] [--size 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.metrics.image import _gaussian_taps, _prepare, ssim


def dense_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM with the 2-D window applied directly (the baseline)."""
    ta, tb, wgt = _prepare(a, b, None, None)
    c = ta.shape[1]
    g = _gaussian_taps()
    win = (g[:, None] * g[None, :])[None, None].expand(c, 1, 11, 11)

    def blur(x):
        return F.conv2d(F.pad(x, (5,) * 4, mode="reflect"), win, groups=c)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(ta), blur(tb)
    var_a, var_b, cov = blur(ta * ta) - mu_a ** 2, blur(tb * tb) - mu_b ** 2, blur(ta * tb) - mu_a * mu_b
    smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float((smap.mean(1, keepdim=True) * wgt).sum() / wgt.sum())


def best(fn, repeats: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), value


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=75)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (args.frames, args.size, args.size, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    print(f"SSIM of {args.frames} frames at {args.size} px, {torch.get_num_threads()} torch threads")
    t_dense, v_dense = best(lambda: dense_ssim(a, b), args.repeats)
    t_ours, v_ours = best(lambda: ssim(a, b), args.repeats)
    assert abs(v_dense - v_ours) < 1e-9, (v_dense, v_ours)
    print(f"dense 11x11 window : {t_dense:.2f} s")
    print(f"separable, OpenCV  : {t_ours:.2f} s  (SSIM {v_ours:.6f}, equal to the dense value)")
    print(f"ratio dense / ours : {t_dense / t_ours:.1f}x")


if __name__ == "__main__":
    main()
