"""PSNR and SSIM between two videos (or images), on the whole frame or on a region.

Inputs are ``[T, H, W, 3]`` (or ``[H, W, 3]``) arrays: uint8 in [0, 255], or float. ``data_range``
defaults to 255 for uint8, 2 for float arrays with negative values (``[-1, 1]``, the model's range)
and 1 otherwise. A region is a ``box=(y0, y1, x0, x1)`` (both videos cropped) or a ``mask``
``[H, W]`` / ``[T, H, W]`` of weights in [0, 1] (1 = counted).

PSNR pools the squared error over all frames and pixels (one MSE per video, so one perfect frame
cannot make the mean infinite); identical inputs give ``inf``. SSIM is Wang et al. (2004) with an
11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, per channel, reflect-padded so the map
covers every pixel; the map is averaged over the region (weighted by the mask).
"""

from __future__ import annotations

import math

import numpy as np
import torch

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (pixels, end exclusive)


def _range(a: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        return float(data_range)
    if a.dtype == np.uint8:
        return 255.0
    return 2.0 if float(np.min(a)) < 0 else 1.0


def _prepare(a, b, box: Box | None, mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (a, b) float64 [T, C, H, W] and weights [T, 1, H, W], cropped to ``box`` if given."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 3:
        a, b = a[None], b[None]
    if a.ndim != 4:
        raise ValueError(f"expected [T, H, W, C] or [H, W, C], got {a.shape}")
    ta = torch.from_numpy(np.ascontiguousarray(a)).double().permute(0, 3, 1, 2)
    tb = torch.from_numpy(np.ascontiguousarray(b)).double().permute(0, 3, 1, 2)
    t, _, h, w = ta.shape
    if mask is None:
        wgt = torch.ones(t, 1, h, w, dtype=torch.float64)
    else:
        m = torch.from_numpy(np.asarray(mask, dtype=np.float64))
        wgt = (m[None] if m.dim() == 2 else m).reshape(-1, 1, h, w).expand(t, 1, h, w)
    if box is not None:
        y0, y1, x0, x1 = box
        ta, tb, wgt = ta[..., y0:y1, x0:x1], tb[..., y0:y1, x0:x1], wgt[..., y0:y1, x0:x1]
    if float(wgt.sum()) <= 0:
        raise ValueError("empty region: the box/mask selects no pixel")
    return ta, tb, wgt


def psnr(a, b, mask=None, *, box: Box | None = None, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB over the region; ``inf`` when the region is identical."""
    peak = _range(np.asarray(a), data_range)
    ta, tb, wgt = _prepare(a, b, box, mask)
    mse = float((wgt * (ta - tb) ** 2).sum() / (wgt.sum() * ta.shape[1]))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _gaussian_taps(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The 1-D Gaussian [size] (float64) whose outer product is SSIM's 11x11 window."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim_map(ta: torch.Tensor, tb: torch.Tensor, peak: float) -> torch.Tensor:
    """[T, C, H, W] float64 pair -> SSIM map [T, C, H, W] (reflect padding, same size).

    The Gaussian window is separable: OpenCV's ``sepFilter2D`` runs one 11-tap pass along rows
    and one along columns (22 instead of 121 multiply-adds a pixel) over the five blurred maps
    stacked as channels, in float64 as before (the scikit-image test holds to 1e-6). One frame at
    a time, so the five maps never exist for the whole clip at once."""
    import cv2

    c, (h, w) = ta.shape[1], ta.shape[-2:]
    g = _gaussian_taps().numpy()
    pad = min(5, h - 1, w - 1)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    out = np.empty((len(ta), h, w, c))
    for t, (a, b) in enumerate(zip(ta.permute(0, 2, 3, 1).numpy(), tb.permute(0, 2, 3, 1).numpy())):
        maps = np.concatenate([a, b, a * a, b * b, a * b], -1)                    # [H, W, 5C]
        maps = np.pad(maps, ((pad, pad), (pad, pad), (0, 0)), mode="reflect") if pad else maps
        if pad < 5:  # tiny region: zero-pad the rest so the window still fits
            maps = np.pad(maps, ((5 - pad, 5 - pad), (5 - pad, 5 - pad), (0, 0)))
        blurred = cv2.sepFilter2D(maps, cv2.CV_64F, g, g, borderType=cv2.BORDER_CONSTANT)
        mu_a, mu_b, e_aa, e_bb, e_ab = np.split(blurred.reshape(maps.shape)[5:5 + h, 5:5 + w], 5, -1)
        var_a, var_b, cov = e_aa - mu_a ** 2, e_bb - mu_b ** 2, e_ab - mu_a * mu_b  # valid part: no border rule
        out[t] = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def ssim(a, b, mask=None, *, box: Box | None = None, data_range: float | None = None) -> float:
    """Mean structural similarity over the region, in [-1, 1]; 1 for identical inputs."""
    peak = _range(np.asarray(a), data_range)
    ta, tb, wgt = _prepare(a, b, box, mask)
    smap = ssim_map(ta, tb, peak).mean(1, keepdim=True)  # channel mean [T, 1, H, W]
    return float((smap * wgt).sum() / wgt.sum())
