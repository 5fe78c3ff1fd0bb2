"""The lower-face mask: which pixels of the source frame the model must re-draw.

One definition shared by the model (blending), the losses (mouth region), SyncNet (lower
face) and paste-back when dubbing, so loader, trainer, metrics and dubbing cannot disagree about
the hidden region. The fractions (``ModelConfig.mask_*``) are drawn for one alignment template
(``TEMPLATE``, which ``preprocessing.align`` builds its crops from); a curated dataset records both
in ``dataset.json`` and training refuses a model whose geometry differs.
"""

from __future__ import annotations

import torch

from .config import ModelConfig

# The alignment template the mask fractions are drawn for: ArcFace's five points (eye centres, nose
# tip, mouth corners) scaled by 0.75 about the crop centre and shifted up by 0.07 S, which puts the
# nose tip at ~0.535 S (just inside mask_top = 0.5) and the mouth corners at ~0.67 S. Bump the version when the points or fit change.
TEMPLATE = {"name": "arcface5", "version": 1, "scale": 0.75, "shift_y": -0.07}
MASK_FIELDS = ("mask_top", "mask_side", "mask_feather")


def mask_geometry(cfg: ModelConfig) -> dict:
    """The geometry a dataset must share with this model: template + mask fractions (size-free)."""
    return {"template": dict(TEMPLATE), "mask": {k: getattr(cfg, k) for k in MASK_FIELDS}}


def lower_face_mask(cfg: ModelConfig, device=None, size: int | None = None) -> torch.Tensor:
    """Rectangle over the lower face, feathered inwards. Returns [1, 1, S, S] in [0, 1], 1 = hidden.

    ``size`` (default ``cfg.image_size``): the fractions are size-free, so paste-back at the full
    crop size uses the same geometry. Nothing above ``mask_top`` or outside ``mask_side`` is ever
    touched; the value ramps to 1 over ``mask_feather`` inside that edge.
    """
    s = size or cfg.image_size
    pos = (torch.arange(s, dtype=torch.float32, device=device) + 0.5) / s  # pixel centres in (0, 1)
    ramp = max(cfg.mask_feather, 1e-6)
    rows = ((pos - cfg.mask_top) / ramp).clamp(0, 1)                            # 0 above, 1 below
    left = ((pos - cfg.mask_side) / ramp).clamp(0, 1)
    right = ((1.0 - cfg.mask_side - pos) / ramp).clamp(0, 1)
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
