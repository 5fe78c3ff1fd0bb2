"""(b) Warping module: move each reference's mouth into the configuration the audio asks for.

Per reference, a small head predicts a dense flow and a confidence logit from the
reference features and the correspondence embedding, coarse to fine over the last
``flow_scales`` encoder levels (each finer level refines the upsampled coarser flow). The final
flow is upsampled to full resolution and warps the reference image (and its features) by bilinear
sampling, ``warp`` below (grid_sample's maths at integer pixel indices).

Flow convention (backward warping): ``warp(x, flow)[p] = x[p + flow[p]]`` with ``flow`` in
pixels of ``x``'s own resolution, channel 0 = dx (columns), channel 1 = dy (rows).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .alignment import conv_block
from .config import ModelConfig


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp x [N, C, H, W] by flow [N, 2, H, W] (pixels): bilinear, border padding.

    The same maths as ``F.grid_sample(x, grid, "bilinear", "border", align_corners=True)``
    (tests check they agree), but sampled at integer pixel indices instead of a [-1, 1] grid:
    normalising the grid costs float rounding (~1e-5 here), so grid_sample cannot return its
    input for a zero flow. Here zero and whole-pixel flows are exact on every backend.
    """
    n, c, h, w = x.shape
    flow = flow.float()  # coordinates in fp32 even under bf16: bf16 cannot tell pixel 200 from 201
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=torch.float32),
                            torch.arange(w, device=x.device, dtype=torch.float32), indexing="ij")
    px = (xs + flow[:, 0]).clamp(0, w - 1)                         # [N, H, W] source columns
    py = (ys + flow[:, 1]).clamp(0, h - 1)                         # [N, H, W] source rows
    x0, y0 = px.detach().floor(), py.detach().floor()
    wx = (px - x0)[:, None].to(x.dtype)                            # [N, 1, H, W] in [0, 1)
    wy = (py - y0)[:, None].to(x.dtype)
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    flat = x.reshape(n, c, h * w)

    def tap(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:  # x[:, :, yi, xi] -> [N, C, H, W]
        index = (yi * w + xi).reshape(n, 1, h * w).expand(n, c, h * w)
        return flat.gather(2, index).reshape(n, c, h, w)

    top = tap(y0, x0) * (1 - wx) + tap(y0, x1) * wx
    bottom = tap(y1, x0) * (1 - wx) + tap(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


def upsample_flow(flow: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a pixel flow [N, 2, h, h] to [N, 2, size, size], rescaling the pixel units."""
    scale = size / flow.shape[-1]
    return F.interpolate(flow, size=(size, size), mode="bilinear", align_corners=False) * scale


class FlowHead(nn.Module):
    """Two conv blocks -> 3 channels: flow (dx, dy) and a confidence logit. Starts near zero flow."""

    def __init__(self, c_in: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(conv_block(c_in, hidden), conv_block(hidden, hidden))
        self.out = nn.Conv2d(hidden, 3, 3, padding=1)
        nn.init.normal_(self.out.weight, std=1e-3)   # small, not zero: every layer still gets grads
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.out(self.body(x))
        return y[:, :2], y[:, 2:]


class WarpingModule(nn.Module):
    """Coarse-to-fine flow + confidence per reference; warps reference images and features."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        levels = len(cfg.encoder_channels)
        self.levels = list(range(levels - 1, levels - 1 - cfg.flow_scales, -1))  # coarse -> fine
        heads = []
        for i, level in enumerate(self.levels):
            c = cfg.encoder_channels[level]
            c_in = c + cfg.embed_dim + (0 if i == 0 else 2)   # finer levels also see the coarse flow
            heads.append(FlowHead(c_in, max(c, 16)))
        self.heads = nn.ModuleList(heads)

    def forward(self, ref_pyramid: list[torch.Tensor], embedding: torch.Tensor, per_ref: torch.Tensor,
                references: torch.Tensor, selection: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """ref_pyramid: [N*K, C_l, h_l, h_l] per level; embedding [N, E, g, g] and its per-reference
        maps [N, K, E, g, g] (summed: where the target is + what this reference offers);
        references [N, K, 3, S, S] in [-1, 1]; selection [N, K] per-reference logits (the audio's
        choice of reference mouth, ``ReferenceSelector``) added to the per-pixel logits. Returns
        flows [N, K, 2, S, S] (pixels), masks [N, K, 1, S, S] (softmax over the K references per
        pixel: weights that sum to 1), warped [N, K, 3, S, S], warped_features [N, K, C, h, h]
        (finest flow level) and coarse flows per level (for smoothness losses)."""
        n, k, _, s, _ = references.shape
        emb = embedding.repeat_interleave(k, dim=0) + per_ref.flatten(0, 1)  # [N*K, E, g, g]
        flow = logit = None
        pyramid_flows = []
        for level, head in zip(self.levels, self.heads):
            feat = ref_pyramid[level]                                        # [N*K, C, h, h]
            h = feat.shape[-1]
            emb_l = F.interpolate(emb, size=(h, h), mode="bilinear", align_corners=False)
            if flow is None:
                flow, logit = head(torch.cat([feat, emb_l], dim=1))
            else:
                flow = upsample_flow(flow, h)
                feat = warp(feat, flow)
                delta, logit = head(torch.cat([feat, emb_l, flow], dim=1))
                flow = flow + delta
            pyramid_flows.append(flow)
        warped_features = warp(ref_pyramid[self.levels[-1]], flow)          # [N*K, C, h, h]
        full_flow = upsample_flow(flow, s)                                   # [N*K, 2, S, S]
        logit = F.interpolate(logit, size=(s, s), mode="bilinear", align_corners=False).reshape(n, k, 1, s, s)
        if selection is not None:
            logit = logit + selection[:, :, None, None, None]
        mask = torch.softmax(logit, dim=1).flatten(0, 1)                     # [N*K, 1, S, S]
        warped = warp(references.flatten(0, 1), full_flow)                   # [N*K, 3, S, S]
        return {
            "flows": full_flow.reshape(n, k, 2, s, s),
            "masks": mask.reshape(n, k, 1, s, s),
            "warped": warped.reshape(n, k, 3, s, s),
            "warped_features": warped_features.reshape(n, k, *warped_features.shape[1:]),
            "pyramid_flows": [f.reshape(n, k, *f.shape[1:]) for f in pyramid_flows],
        }
