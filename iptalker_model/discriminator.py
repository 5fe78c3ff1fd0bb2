"""PatchGAN discriminator (pix2pix): one real/fake score per receptive-field patch, hinge loss.

Spectral norm (optional) keeps the discriminator Lipschitz so the hinge GAN stays stable at the
small batch sizes video training affords.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import ModelConfig


class PatchDiscriminator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if cfg.disc_spectral_norm else (lambda m: m)
        c, layers, c_prev = cfg.disc_channels, [], 3
        for i in range(cfg.disc_layers):
            c_out = c * 2 ** min(i, 3)
            layers += [sn(nn.Conv2d(c_prev, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            c_prev = c_out
        layers += [sn(nn.Conv2d(c_prev, c_prev, 3, padding=1)), nn.LeakyReLU(0.2),
                   sn(nn.Conv2d(c_prev, 1, 3, padding=1))]
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [N, 3, S, S] or [B, T, 3, S, S] in [-1, 1] -> patch logits [N, 1, S/2^L, S/2^L]."""
        return self.net(frames.reshape(-1, *frames.shape[-3:]))


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator hinge terms: (mean relu(1 - D(real)), mean relu(1 + D(fake)))."""
    return torch.relu(1.0 - real_logits).mean(), torch.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge term: -mean D(fake)."""
    return -fake_logits.mean()
