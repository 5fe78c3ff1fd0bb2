"""Training-window augmentation: mirror, jitter and recolour a window's person, never its speech.

Why: with a handful of training people the generator learns to move the mouth for *them* and,
depending on the seed, not for a new face (CPU recipe, one seed: mouth-audio r 0.74 on training
people, 0.18 on a held-out one; without augmentation the held-out grey photo failed in most
seeds). A mirrored, recoloured window is the same speech on a face the network has not
memorised, so what transfers is the audio -> mouth mapping. Jitter (a small random similarity:
scale, rotation, shift) stands for where a new face sits in its aligned crop (a turned head puts
the mouth off centre; alignment errs by pixels): without it the SyncNet expert's held-out
accuracy was 0.76 on a turned head against 0.91 on a frontal one (0.89 / 0.87 with it). The same transform is applied
to the target frames, the references and the landmarks of one window (the references must still
look like the target); audio is untouched. Validation windows are never augmented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from preprocessing.ibug68 import MIRROR_68


@dataclass(frozen=True)
class Augment:
    """flip: probability of mirroring a window; colour: strength in [0, 1) of the per-window
    recolouring (per-channel gain and offset within +/- colour, and with probability colour a
    grey-scale image); jitter: strength in [0, 0.5) of the per-window similarity (scale within
    1 +/- jitter, rotation within +/- jitter radians, shift within +/- jitter half-widths);
    all 0 = off."""

    flip: float = 0.0
    colour: float = 0.0
    jitter: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.flip <= 1.0:
            raise ValueError(f"flip={self.flip!r}: a probability in [0, 1]")
        if not 0.0 <= self.colour < 1.0:
            raise ValueError(f"colour={self.colour!r}: a strength in [0, 1)")
        if not 0.0 <= self.jitter < 0.5:
            raise ValueError(f"jitter={self.jitter!r}: a strength in [0, 0.5)")

    @property
    def active(self) -> bool:
        return self.flip > 0 or self.colour > 0 or self.jitter > 0


def mirror_landmarks(landmarks: torch.Tensor) -> torch.Tensor:
    """[..., 68, 2] in crop fractions -> the mirrored face's landmarks, iBUG order kept."""
    out = landmarks[..., MIRROR_68, :].clone()
    out[..., 0] = 1.0 - out[..., 0]
    return out


def recolour(images: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor, grey: bool) -> torch.Tensor:
    """images [..., 3, S, S] in [-1, 1]; gain, offset [3] -> recoloured, clamped to [-1, 1]."""
    if grey:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype)
        images = (images * w[:, None, None]).sum(-3, keepdim=True).expand_as(images)
    return (images * gain[:, None, None] + offset[:, None, None]).clamp(-1.0, 1.0)


def similarity(scale: float, angle: float, shift_x: float, shift_y: float) -> torch.Tensor:
    """[2, 3] map from output to input positions in ``grid_sample``'s [-1, 1] coordinates: the
    image content is shrunk by ``scale``, turned by ``-angle`` and moved by ``-shift``."""
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return torch.tensor([[c, -s, shift_x], [s, c, shift_y]], dtype=torch.float32)


def warp_images(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """images [N, 3, S, S] sampled through theta [2, 3] (output -> input), borders replicated."""
    grid = F.affine_grid(theta.expand(len(images), 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def warp_landmarks(landmarks: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """[..., 68, 2] crop fractions (pixel index / size) -> where ``warp_images(., theta)`` puts
    those points: the inverse of theta, in the same fractions."""
    u = (2 * landmarks * size + 1) / size - 1                     # pixel index -> [-1, 1] (centres)
    a, t = theta[:, :2], theta[:, 2]
    out = (u - t) @ torch.linalg.inv(a).T
    return ((out + 1) * size - 1) / (2 * size)


def augment_window(window: dict, aug: Augment, rng: np.random.Generator) -> dict:
    """One window of the batch contract (no batch axis) -> the same window mirrored, jittered
    and/or recoloured, in place. frames [T,3,S,S], references [K,3,S,S], landmarks [T,68,2]."""
    if aug.flip and rng.random() < aug.flip:
        window["frames"] = window["frames"].flip(-1)
        window["references"] = window["references"].flip(-1)
        window["landmarks"] = mirror_landmarks(window["landmarks"])
    if aug.jitter:
        j = aug.jitter
        theta = similarity(*rng.uniform([1 - j, -j, -j, -j], [1 + j, j, j, j]))
        for key in ("frames", "references"):
            window[key] = warp_images(window[key], theta)
        window["landmarks"] = warp_landmarks(window["landmarks"], theta, window["frames"].shape[-1])
    if aug.colour:
        c = aug.colour
        gain = torch.from_numpy(rng.uniform(1 - c, 1 + c, 3).astype(np.float32))
        offset = torch.from_numpy(rng.uniform(-c, c, 3).astype(np.float32))
        grey = bool(rng.random() < c)
        for key in ("frames", "references"):
            window[key] = recolour(window[key], gain, offset, grey)
    return window
