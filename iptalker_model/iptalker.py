"""IPTalker = alignment -> warping -> inpainting (Liu et al., arXiv 2501.04586).

    masked source ─┐
    references ────┼─> (a) AlignmentModule ── embedding [N, E, g, g]
    audio window ──┘            │
    references + features ─> (b) WarpingModule ── flows, masks, warped refs
    masked source + warped ─> (c) InpaintingUNet ── output frame (only the mask changes)

Frames are independent given their audio window, so a [B, T, ...] window is folded into B*T
frames; references are encoded once per clip and shared by its T frames.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .alignment import AlignmentModule
from .config import ModelConfig
from .inpainting import InpaintingUNet
from .mask import lower_face_mask
from .warping import WarpingModule


class IPTalker(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.alignment = AlignmentModule(cfg)
        self.warping = WarpingModule(cfg)
        self.inpainting = InpaintingUNet(cfg)
        self.register_buffer("hidden", lower_face_mask(cfg), persistent=False)  # [1, 1, S, S]

    def forward(self, masked_source: torch.Tensor, references: torch.Tensor,
                audio_window: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Generate frames with a new mouth.

        masked_source: [N, 3, S, S] or [B, T, 3, S, S] in [-1, 1], from ``mask_source``.
        references:    [N, K, 3, S, S] or [B, K, 3, S, S] (shared by the T frames) in [-1, 1].
        audio_window:  [N, A, D] or [B, T, A, D] Whisper rows centred on each frame.
        Returns output with masked_source's shape, in [-1, 1], and aux: flows [.., K, 2, S, S]
        (pixels), masks [.., K, 1, S, S] (per-pixel reference weights, summing to 1 over K),
        warped [.., K, 3, S, S], warped_features, embedding [.., E, g, g], selection [.., K]
        (the audio-vs-reference-mouth logits) and pyramid_flows (coarse levels), leading dims
        folded to N = B*T.
        """
        windowed = masked_source.dim() == 5
        if windowed:
            b, t = masked_source.shape[:2]
            masked_source = masked_source.flatten(0, 1)                   # [B*T, 3, S, S]
            audio_window = audio_window.flatten(0, 1)                     # [B*T, A, D]
        else:
            b, t = masked_source.shape[0], 1
        pyramid = self.alignment.encode_references(references)           # [B*K, C, h, h] per level
        keys = self.alignment.selector.keys(references)                   # [B, K, E]
        k = references.shape[1]
        if t > 1:  # share each clip's reference features among its T frames
            pyramid = [p.reshape(b, k, *p.shape[1:]).repeat_interleave(t, 0).flatten(0, 1)
                       for p in pyramid]
            references = references.repeat_interleave(t, dim=0)          # [B*T, K, 3, S, S]
            keys = keys.repeat_interleave(t, dim=0)                       # [B*T, K, E]
        embedding, per_ref = self.alignment(masked_source, pyramid, audio_window)  # [N, (K,) E, g, g]
        selection = self.alignment.selector(keys, audio_window)          # [N, K] logits
        aux = self.warping(pyramid, embedding, per_ref, references, selection)
        output = self.inpainting(masked_source, self.hidden.to(masked_source.dtype), aux["warped"],
                                 aux["masks"], embedding, aux["warped_features"])
        aux["embedding"], aux["selection"] = embedding, selection
        if windowed:
            output = output.reshape(b, t, *output.shape[1:])
        return output, aux

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
