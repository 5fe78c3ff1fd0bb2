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


MOUTH_POINTS = slice(48, 68)  # iBUG 68: outer (48-59) and inner (60-67) lips


def mouth_region(landmarks: torch.Tensor, cfg: ModelConfig, margin: float = 0.35) -> torch.Tensor:
    """Box around the lips of each frame, where the mouth losses look.

    landmarks: [..., 68, 2] (x, y) in crop fractions [0, 1]. The lips' bounding box is padded by
    ``margin`` x mouth width on every side (so a closed mouth's box still covers an open one's
    lips and chin crease). Returns [N, 1, S, S] in {0, 1}, N = the leading dims folded.
    """
    s = cfg.image_size
    pts = landmarks[..., MOUTH_POINTS, :].reshape(-1, 20, 2).float()
    lo, hi = pts.amin(1), pts.amax(1)                                  # [N, 2]
    pad = margin * (hi[:, :1] - lo[:, :1]).clamp_min(2.0 / s)          # [N, 1] of the mouth width
    lo, hi = lo - pad, hi + pad
    pos = (torch.arange(s, dtype=torch.float32, device=landmarks.device) + 0.5) / s
    cols = (pos >= lo[:, :1]) & (pos <= hi[:, :1])                     # [N, S]
    rows = (pos >= lo[:, 1:]) & (pos <= hi[:, 1:])                     # [N, S]
    return (rows[:, :, None] & cols[:, None, :]).float()[:, None]      # [N, 1, S, S]


def mouth_box(cfg: ModelConfig, landmarks: torch.Tensor | None = None) -> tuple[slice, slice]:
    """(rows, cols) slices that metrics crop: the union over frames of ``mouth_region`` when
    landmarks [..., 68, 2] (crop fractions) are given, else the mask rectangle (no landmarks)."""
    s = cfg.image_size
    if landmarks is None:
        top, side = int(round(cfg.mask_top * s)), int(round(cfg.mask_side * s))
        return slice(top, s), slice(side, s - side)
    region = mouth_region(landmarks, cfg).amax(0)[0]                    # [S, S]
    rows, cols = region.amax(1).nonzero()[:, 0], region.amax(0).nonzero()[:, 0]
    return slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)


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
