"""The lower-face mask: which pixels of the source frame the model must re-draw.

One definition shared by the model (blending), the losses (mouth region) and SyncNet (lower
face), so loader, trainer and metrics cannot disagree about the hidden region.
"""

from __future__ import annotations

import torch

from .config import ModelConfig


def lower_face_mask(cfg: ModelConfig, device=None) -> torch.Tensor:
    """Feathered rectangle over the lower face. Returns [1, 1, S, S] in [0, 1], 1 = hidden."""
    s = cfg.image_size
    pos = (torch.arange(s, dtype=torch.float32, device=device) + 0.5) / s  # pixel centres in (0, 1)
    ramp = max(cfg.mask_feather, 1e-6)
    rows = ((pos - cfg.mask_top) / ramp + 0.5).clamp(0, 1)                      # 0 above, 1 below
    left = ((pos - cfg.mask_side) / ramp + 0.5).clamp(0, 1)
    right = ((1.0 - cfg.mask_side - pos) / ramp + 0.5).clamp(0, 1)
    cols = torch.minimum(left, right)
    return (rows[:, None] * cols[None, :])[None, None]


def mask_source(frames: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Hide the lower face: [..., 3, S, S] in [-1, 1] -> same shape, masked pixels set to 0 (grey)."""
    mask = lower_face_mask(cfg, frames.device).to(frames.dtype)
    return frames * (1.0 - mask)


def mouth_box(cfg: ModelConfig) -> tuple[slice, slice]:
    """(rows, cols) slices of the mask rectangle: the region the mouth metrics and losses crop."""
    s = cfg.image_size
    top = int(round(cfg.mask_top * s))
    side = int(round(cfg.mask_side * s))
    return slice(top, s), slice(side, s - side)


def cut_lower_face(frames: torch.Tensor, size: int) -> torch.Tensor:
    """SyncNet input: resize [..., 3, S, S] to size x size, keep the lower half -> [..., 3, size/2, size]."""
    lead = frames.shape[:-3]
    x = frames.reshape(-1, *frames.shape[-3:])
    if x.shape[-1] != size:
        # antialiased resize has no bf16 kernel on CPU: resize in fp32, return the input dtype
        x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear",
                                            align_corners=False, antialias=True).to(frames.dtype)
    x = x[:, :, size // 2:, :]
    return x.reshape(*lead, *x.shape[-3:])
