"""Loss terms for IPTalker and their weights (``LossConfig``).

Reconstruction (L1 + SSIM on the whole frame and on the mouth region located from landmarks), a
confidence-weighted warped-reference loss at full resolution and at each coarse flow level, flow
smoothness, hinge GAN,
a sync loss from a frozen SyncNet, and a VGG-style perceptual loss whose pretrained weights are
read from a path (never downloaded; without a path the term is skipped with a warning).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import build_dataclass
from .warping import warp


@dataclass
class LossConfig:
    l1_weight: float = 1.0
    ssim_weight: float = 0.2
    mouth_l1_weight: float = 1.0
    mouth_ssim_weight: float = 0.2
    warp_weight: float = 0.5           # warped references vs target, inside the mask
    pyramid_warp_weight: float = 0.25  # the same at each coarse flow level
    flow_smooth_weight: float = 0.01
    gan_weight: float = 0.01
    sync_weight: float = 0.03          # Wav2Lip's expert-sync weight
    perceptual_weight: float = 0.1
    perceptual_weights: str | None = None  # path to torchvision-layout VGG19 weights (.pth)
    sync_window: int = 5               # frames fed to the SyncNet (= ModelConfig.sync_frames)

    def weight(self, loss_name: str) -> float:
        """'mouth_l1_loss' -> mouth_l1_weight."""
        return getattr(self, loss_name.removesuffix("_loss") + "_weight")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LossConfig:
        return build_dataclass(cls, d)


# --- reconstruction ---------------------------------------------------------------------------

def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean SSIM of [N, C, H, W] images in [-1, 1] (Gaussian window, sigma 1.5, valid region);
    with ``weight`` [N|1, 1, H, W] the mean is weighted (e.g. by the mouth region)."""
    a, b = (a.float() + 1) / 2, (b.float() + 1) / 2                   # to [0, 1], fp32 even in bf16
    c = a.shape[1]
    size = min(window, a.shape[-1], a.shape[-2])
    w = _gaussian_window(size, 1.5 * size / window, c, a.device, a.dtype)
    mu_a, mu_b = F.conv2d(a, w, groups=c), F.conv2d(b, w, groups=c)
    var_a = F.conv2d(a * a, w, groups=c) - mu_a**2
    var_b = F.conv2d(b * b, w, groups=c) - mu_b**2
    cov = F.conv2d(a * b, w, groups=c) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    if weight is None:
        return s.mean()
    r = (size - 1) // 2                                               # valid conv: trim the border
    wv = weight.float()[..., r:r + s.shape[-2], r:r + s.shape[-1]].expand(s.shape[0], 1, *s.shape[-2:])
    return (s * wv).sum() / (wv.sum() * c).clamp_min(1e-6)


def masked_l1(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 of [N, C, H, W] images averaged over the pixels where weight [N|1, 1, H, W] is set."""
    err = (a - b).abs() * weight
    return err.sum() / (weight.expand(a.shape[0], 1, *a.shape[-2:]).sum() * a.shape[1]).clamp_min(1e-6)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2), averaged over the leading dim."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return (10 * torch.log10(4.0 / mse)).mean()


def warp_loss(warped: torch.Tensor, masks: torch.Tensor, target: torch.Tensor,
              hidden: torch.Tensor) -> torch.Tensor:
    """L1 of warped references [N, K, 3, H, W] against target [N, 3, H, W] inside hidden
    [1, 1, H, W], each reference's error weighted by its normalised confidence masks
    [N, K, 1, H, W] (as the inpainting fuses them): only the references the model trusts are
    pushed onto the target, and confidence flows to the reference that can reach it."""
    weights = masks / (masks.sum(1, keepdim=True) + 1e-3)               # [N, K, 1, H, W]
    err = (weights * (warped - target[:, None]).abs()).sum(1) * hidden   # [N, 3, H, W]
    return err.sum() / (hidden.sum() * warped.shape[0] * 3).clamp_min(1.0)


def pyramid_warp_loss(references: torch.Tensor, pyramid_flows: list[torch.Tensor], masks: torch.Tensor,
                      target: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """``warp_loss`` at each coarse flow level, so every level of the coarse-to-fine flow is taught
    directly: references [N, K, 3, S, S], flows [N, K, 2, h, h] (pixels at h), masks [N, K, 1, S, S],
    target [N, 3, S, S], hidden [1, 1, S, S]. Images are area-downsampled to h."""
    n, k = references.shape[:2]
    total = 0.0
    for flow in pyramid_flows:
        h = flow.shape[-1]
        down = functools.partial(F.interpolate, size=(h, h), mode="area")
        refs = warp(down(references.flatten(0, 1)), flow.flatten(0, 1)).reshape(n, k, 3, h, h)
        conf = down(masks.flatten(0, 1)).reshape(n, k, 1, h, h)
        total = total + warp_loss(refs, conf, down(target), down(hidden))
    return total / max(len(pyramid_flows), 1)


def flow_smoothness(flows: torch.Tensor) -> torch.Tensor:
    """Mean absolute first difference of flows [..., 2, H, W] (pixels) along rows and columns."""
    dx = (flows[..., :, 1:] - flows[..., :, :-1]).abs().mean()
    dy = (flows[..., 1:, :] - flows[..., :-1, :]).abs().mean()
    return dx + dy


# --- sync -------------------------------------------------------------------------------------

def sync_loss(syncnet: nn.Module, frames: torch.Tensor, sync_audio: torch.Tensor, window: int) -> torch.Tensor:
    """-log P(in sync) of generated frames [B, T, 3, S, S] with their audio rows [B, 2T, D],
    on the first ``window`` frames (the frozen expert's T)."""
    if frames.shape[1] < window or sync_audio.shape[1] < 2 * window:
        raise ValueError(f"sync loss needs >= {window} frames and {2 * window} audio rows, got "
                         f"{frames.shape[1]} and {sync_audio.shape[1]} (LossConfig.sync_window)")
    net = getattr(syncnet, "module", syncnet)
    faces = net.lower_face(frames[:, :window])
    logit = net.logit(*syncnet(faces, sync_audio[:, : 2 * window]))
    return F.softplus(-logit).mean()


# --- perceptual -------------------------------------------------------------------------------

_VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512)  # up to conv4_1
_VGG19_TAPS = (1, 6, 11, 20)  # relu1_1, relu2_1, relu3_1, relu4_1 in torchvision's numbering


class VGGPerceptual(nn.Module):
    """VGG19 features up to relu4_1, laid out like torchvision's ``vgg19().features`` so its
    checkpoint (``features.N.weight``) loads as is. Frozen; compares ImageNet-normalised inputs."""

    def __init__(self):
        super().__init__()
        layers, c_prev = [], 3
        for v in _VGG19_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c_prev, v, 3, padding=1), nn.ReLU()]
                c_prev = v
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean L1 between tapped features of a, b [N, 3, H, W] in [-1, 1]."""
        x = (torch.cat([a, b]) + 1) / 2
        x = (x - self.mean) / self.std
        loss = 0.0
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _VGG19_TAPS:
                fa, fb = x.chunk(2)
                loss = loss + (fa - fb).abs().mean()
        return loss


@functools.lru_cache(maxsize=4)
def load_perceptual(path: str | None, device: str = "cpu") -> VGGPerceptual | None:
    """The frozen VGG from ``path`` (cached per path and device), or None with a warning."""
    if path is None:
        warnings.warn("LossConfig.perceptual_weights is not set: perceptual loss skipped", stacklevel=2)
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"perceptual_weights: no file at {path!r}") from None
    net = VGGPerceptual()
    wanted = {k: v for k, v in state.items() if k.startswith("features.") and k in net.state_dict()}
    missing = [k for k in net.state_dict() if k.startswith("features.") and k not in wanted]
    if missing:
        raise ValueError(f"perceptual_weights {path!r} lacks VGG19 keys {missing[:3]}...")
    net.load_state_dict(wanted, strict=False)
    return net.to(device).eval()
