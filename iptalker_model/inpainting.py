"""(c) Inpainting module: a U-Net that fills the masked lower face.

Inputs at full resolution: the masked source (head pose, upper face, background), the hidden-
region mask, and the K warped references each multiplied by its confidence (so occluded or
badly-warped pixels contribute nothing) plus the confidences themselves. At the bottleneck it
also receives the correspondence embedding and the confidence-weighted warped reference features.
The U-Net predicts a correction to the confidence-weighted average of the warped references, so
the references' own texture (teeth, lips, skin) is the starting point rather than something the
network must re-draw. Only the masked region may change: the prediction is blended into the
source with the mask.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .alignment import conv_block
from .config import ModelConfig


class InpaintingUNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch, k = cfg.unet_channels, cfg.num_references
        self.stem = nn.Sequential(conv_block(3 + 1 + 4 * k, ch[0]), conv_block(ch[0], ch[0]))
        self.downs = nn.ModuleList(
            nn.Sequential(conv_block(ch[i], ch[i + 1], stride=2), conv_block(ch[i + 1], ch[i + 1]))
            for i in range(len(ch) - 1)
        )
        c_fuse = ch[-1] + cfg.embed_dim + cfg.encoder_channels[-cfg.flow_scales]
        self.fuse = nn.Sequential(conv_block(c_fuse, ch[-1]), conv_block(ch[-1], ch[-1]))
        self.ups = nn.ModuleList(
            nn.Sequential(conv_block(ch[i + 1] + ch[i], ch[i]), conv_block(ch[i], ch[i]))
            for i in reversed(range(len(ch) - 1))
        )
        self.out = nn.Conv2d(ch[0], 3, 3, padding=1)
        nn.init.normal_(self.out.weight, std=1e-3)  # start as the fused warped references
        nn.init.zeros_(self.out.bias)

    def forward(self, masked_source, hidden, warped, masks, embedding, warped_features):
        """masked_source [N, 3, S, S], hidden [N|1, 1, S, S] in [0, 1], warped [N, K, 3, S, S],
        masks [N, K, 1, S, S], embedding [N, E, g, g], warped_features [N, K, C, h, h]
        -> frame [N, 3, S, S] in [-1, 1], equal to masked_source where hidden == 0."""
        n, k, _, s, _ = warped.shape
        hidden = hidden.expand(n, 1, s, s)
        refs = (warped * masks).reshape(n, 3 * k, s, s)                        # [N, 3K, S, S]
        x = self.stem(torch.cat([masked_source, hidden, refs, masks.reshape(n, k, s, s)], dim=1))
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x)                                                        # [N, C_i, S/2^i, .]
        b = x.shape[-1]
        feat_mask = F.interpolate(masks.flatten(0, 1), size=warped_features.shape[-2:], mode="area")
        fused = (warped_features * feat_mask.reshape(n, k, 1, *feat_mask.shape[-2:])).sum(1)
        fused = fused / (feat_mask.reshape(n, k, 1, *feat_mask.shape[-2:]).sum(1) + 1e-3)
        fused = F.interpolate(fused, size=(b, b), mode="bilinear", align_corners=False)
        emb = F.interpolate(embedding, size=(b, b), mode="bilinear", align_corners=False)
        x = self.fuse(torch.cat([x, emb, fused], dim=1))
        for up, skip in zip(self.ups, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = up(torch.cat([x, skip], dim=1))
        # Residual on the confidence-weighted average of the warped references: at init the
        # U-Net already pastes (sharp) warped mouths, and learning picks and corrects them.
        weights = masks / (masks.sum(1, keepdim=True) + 1e-3)                  # [N, K, 1, S, S]
        fused_refs = (weights * warped).sum(1)                                 # [N, 3, S, S]
        prediction = (fused_refs + self.out(x)).clamp(-1.0, 1.0)               # [N, 3, S, S]
        # masked_source already equals source * (1 - hidden): adding the prediction in the hidden
        # region is the feathered blend, and pixels with hidden == 0 are the source, bit for bit.
        return masked_source + hidden * prediction
