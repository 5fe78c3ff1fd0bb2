"""LPIPS (Zhang et al. 2018, VGG variant) from weight files given by path; nothing downloads.

Two files, both plain state dicts loaded with ``weights_only=True``:
- the backbone: torchvision's ``vgg16`` state dict (``features.<i>.weight/bias``; ``classifier.*``
  keys are ignored), e.g. ``vgg16-397923af.pth``;
- the linear heads: the ``lpips`` package's ``weights/v0.1/vgg.pth`` (``lin<k>.model.1.weight``).

Distance = sum over the five relu stages of the spatial mean of the head-weighted squared
difference of channel-normalised features, on inputs scaled as the lpips package does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)            # torchvision vgg16.features indices of relu1_2 ... relu5_3
_CHANNELS = (64, 128, 256, 512, 512)
_SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
_SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` up to relu5_3, with the same module indices."""
    layers, c = [], 3
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
            c = v
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = _vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS)

    @classmethod
    def from_files(cls, backbone: str | Path, heads: str | Path) -> LPIPS:
        """Build from the two weight files (see module doc); ValueError names a layout mismatch."""
        net = cls()
        vgg = torch.load(str(backbone), map_location="cpu", weights_only=True)
        vgg = {k.removeprefix("features."): v for k, v in vgg.items() if k.startswith("features.")}
        lin = torch.load(str(heads), map_location="cpu", weights_only=True)
        lin = {f"{k[3]}.weight": v for k, v in lin.items() if k.startswith("lin") and k.endswith("model.1.weight")}
        for part, state, path in ((net.features, vgg, backbone), (net.lins, lin, heads)):
            missing, unexpected = part.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(f"{path}: unexpected LPIPS weight layout (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        return net.eval().requires_grad_(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] pair -> LPIPS distance [N] (0 for identical inputs)."""
        x = torch.cat([a, b])
        x = (x - _SHIFT.to(x)) / _SCALE.to(x)
        total = torch.zeros(len(a), dtype=x.dtype, device=x.device)
        taps = iter(self.lins)
        for i, layer in enumerate(self.features[:_TAPS[-1] + 1]):
            x = layer(x)
            if i in _TAPS:
                f = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                fa, fb = f[:len(a)], f[len(a):]
                total = total + next(taps)((fa - fb) ** 2).mean((1, 2, 3))
        return total


@torch.no_grad()
def lpips(a: np.ndarray, b: np.ndarray, net: LPIPS, batch: int = 16) -> float:
    """Mean LPIPS over frames of two uint8 [T, H, W, 3] videos (lower = more alike)."""
    def unit(x):
        return torch.from_numpy(np.ascontiguousarray(x)).float().div(127.5).sub(1).permute(0, 3, 1, 2)

    a, b = np.asarray(a), np.asarray(b)
    a, b = (a[None], b[None]) if a.ndim == 3 else (a, b)
    vals = [net(unit(a[i:i + batch]), unit(b[i:i + batch])) for i in range(0, len(a), batch)]
    return float(torch.cat(vals).mean())
