"""The per-step task layer: batch -> named losses, no DeepSpeed, runs on CPU (open_clip's task).

Every returned key ending in ``_loss`` is an unweighted term; ``total_loss`` is their weighted
sum (``LossConfig``) and is what the trainer back-propagates. Other keys are metrics (floats) or,
for ``generator_losses``, the generated frames under ``"output"`` (with graph; detach it before
the discriminator step). Models wrapped by DDP/DeepSpeed are accepted (``.module`` is unwrapped
for the config only; the call goes through the wrapper).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .batch import check_batch
from .discriminator import hinge_d_loss, hinge_g_loss
from .losses import (
    LossConfig,
    flow_smoothness,
    load_perceptual,
    masked_l1,
    pyramid_warp_loss,
    ssim,
    sync_loss,
    warp_loss,
)
from .mask import lower_face_mask, mask_source, mouth_region

__all__ = ["lower_face_mask", "mask_source", "generator_losses", "discriminator_losses",
           "syncnet_losses"]


def _config(module: nn.Module):
    return getattr(module, "module", module).cfg


def _weighted_total(losses: dict[str, torch.Tensor], loss_cfg: LossConfig) -> torch.Tensor:
    return sum(loss_cfg.weight(name) * value for name, value in losses.items())


def generator_losses(model: nn.Module, discriminator: nn.Module | None, syncnet: nn.Module | None,
                     batch: dict, loss_cfg: LossConfig) -> dict[str, torch.Tensor]:
    """IPTalker step. ``discriminator`` / ``syncnet`` None (or weight 0) skip the GAN / sync terms;
    the syncnet should be frozen by the caller (requires_grad False) and is never updated here.
    Returns ``*_loss`` terms, ``total_loss`` and ``output`` [B, T, 3, S, S] in [-1, 1]."""
    check_batch(batch)
    cfg = _config(model)
    frames = batch["frames"]                                           # [B, T, 3, S, S] in [-1, 1]
    output, aux = model(mask_source(frames, cfg), batch["references"], batch["audio"])
    out, target = output.flatten(0, 1), frames.flatten(0, 1)           # [B*T, 3, S, S]
    mouth = mouth_region(batch["landmarks"], cfg).to(frames.dtype)     # [B*T, 1, S, S] lips box
    hidden = lower_face_mask(cfg, frames.device).to(frames.dtype)      # [1, 1, S, S]
    t = frames.shape[1]
    references = batch["references"].repeat_interleave(t, dim=0)       # [B*T, K, 3, S, S]
    losses = {
        "l1_loss": F.l1_loss(out, target),
        "ssim_loss": 1.0 - ssim(out, target),
        "mouth_l1_loss": masked_l1(out, target, mouth),
        "mouth_ssim_loss": 1.0 - ssim(out, target, weight=mouth),
        "warp_loss": warp_loss(aux["warped"], aux["masks"], target, hidden),
        "pyramid_warp_loss": pyramid_warp_loss(references, aux["pyramid_flows"], aux["masks"], target, hidden),
        "flow_smooth_loss": flow_smoothness(aux["flows"]),
    }
    if loss_cfg.perceptual_weight > 0:
        vgg = load_perceptual(loss_cfg.perceptual_weights, str(frames.device))
        if vgg is not None:
            losses["perceptual_loss"] = vgg(out, target)
    if discriminator is not None and loss_cfg.gan_weight > 0:
        losses["gan_loss"] = hinge_g_loss(discriminator(out))
    if syncnet is not None and loss_cfg.sync_weight > 0:
        losses["sync_loss"] = sync_loss(syncnet, output, batch["sync_audio"], loss_cfg.sync_window)
    losses["total_loss"] = _weighted_total(losses, loss_cfg)
    losses["output"] = output
    return losses


def discriminator_losses(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> dict:
    """Hinge loss on real / generated frames ([N, 3, S, S] or [B, T, 3, S, S]); ``fake`` is detached
    here so this step never reaches the generator."""
    real_loss, fake_loss = hinge_d_loss(discriminator(real), discriminator(fake.detach()))
    return {"real_loss": real_loss, "fake_loss": fake_loss, "total_loss": real_loss + fake_loss}


def syncnet_losses(syncnet: nn.Module, batch: dict) -> dict:
    """SyncNet step: BCE on (frames, sync_audio) = in sync vs (frames, sync_audio_off) = shifted.
    Each window's video is embedded once and scored against both audios.
    Returns ``bce_loss``, ``total_loss`` and ``accuracy`` (float, both pairs classified right)."""
    check_batch(batch)
    net = getattr(syncnet, "module", syncnet)
    t = _config(syncnet).sync_frames
    faces = net.lower_face(batch["frames"][:, :t])                     # [B, T, 3, h, w]
    audio = torch.cat([batch["sync_audio"][:, : 2 * t], batch["sync_audio_off"][:, : 2 * t]])
    v, a = syncnet(faces, audio)                                       # [B, E], [2B, E] via any wrapper
    logits = net.logit(torch.cat([v, v]), a)                           # [2B]: in sync, then shifted
    labels = torch.cat([torch.ones(len(faces)), torch.zeros(len(faces))]).to(logits)
    bce = F.binary_cross_entropy_with_logits(logits, labels)
    accuracy = ((logits > 0).float() == labels).float().mean().item()
    return {"bce_loss": bce, "total_loss": bce, "accuracy": accuracy}
