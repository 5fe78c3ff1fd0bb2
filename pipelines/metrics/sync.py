"""Lip sync the syncnet_python way: LSE-D, LSE-C and the audio-video offset.

Protocol (Chung & Zisserman's ``SyncNetInstance.evaluate``, re-written): embed every 5-frame video
window and the audio window at the same time; for each offset o in [-max_offset, max_offset]
average the distance between video window i and audio window i + o over i; then

    LSE-D  = min over offsets of that time-averaged distance   (lower = better sync)
    LSE-C  = median over offsets - LSE-D                         (higher = more confident sync)
    offset = the arg-min, in frames: video frame i matches the audio of frame i + offset
             (iptalker_model.syncnet's convention; syncnet_python prints the opposite sign).

Unlike syncnet_python, an offset averages only over windows whose shifted audio exists (it pads
with zero features, which biases large offsets); for long clips the two agree.

Two experts: ours (``iptalker_model.SyncNet``: lower-face crops vs Whisper rows, unit embeddings)
and the public one (``PublicSyncNet``: joonson's ``syncnet_v2.model`` state dict, MFCC audio).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from pipelines.metrics.mfcc import mfcc

MAX_OFFSET = 15  # frames, as syncnet_python's default vshift


@dataclass
class LSE:
    distance: float   # LSE-D: min over offsets of the mean embedding distance
    confidence: float  # LSE-C: median - min of the mean distance over offsets
    offset: int        # frames; video frame i matches the audio of frame i + offset
    curve: list[float] = field(default_factory=list)  # mean distance per offset, -max..max

    def as_dict(self) -> dict[str, float]:
        return {"lse_d": self.distance, "lse_c": self.confidence, "lse_offset": float(self.offset)}


def lse_from_embeddings(video: torch.Tensor, audio: torch.Tensor, max_offset: int = MAX_OFFSET) -> LSE:
    """LSE from per-window embeddings: video [W, E], audio [W, E] (window i = frames i..i+4).

    Needs W > max_offset so every offset has at least one window pair.
    """
    w = min(len(video), len(audio))
    if w <= max_offset:
        raise ValueError(f"{w} windows is too short for offsets +/-{max_offset} (need > {max_offset})")
    dist = torch.cdist(video[:w].double(), audio[:w].double())  # [W video, W audio]
    curve = []
    for o in range(-max_offset, max_offset + 1):
        curve.append(float(torch.diagonal(dist, offset=o).mean()))  # pairs (i, i + o)
    c = np.asarray(curve)
    best = int(c.argmin())
    return LSE(distance=float(c[best]), confidence=float(np.median(c) - c[best]),
               offset=best - max_offset, curve=curve)


# ------------------------------------------------------------------ our SyncNet (Whisper rows)
def _unit_frames(frames: np.ndarray) -> torch.Tensor:
    """uint8 [N, S, S, 3] -> float32 [N, 3, S, S] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1.0).permute(0, 3, 1, 2)


@torch.no_grad()
def embed_ours(syncnet, frames: np.ndarray, whisper_rows: np.ndarray, batch: int = 64):
    """Our SyncNet's window embeddings: frames uint8 [N, S, S, 3], rows [2N, D] -> ([W, E], [W, E])."""
    t = syncnet.cfg.sync_frames
    faces = syncnet.lower_face(_unit_frames(frames))                  # [N, 3, h, w]
    rows = torch.as_tensor(np.asarray(whisper_rows), dtype=torch.float32)
    n = min(len(faces), len(rows) // 2)
    starts = torch.arange(max(n - t + 1, 0))
    vs, aus = [], []
    for s in starts.split(batch):
        vs.append(syncnet.embed_video(faces[s[:, None] + torch.arange(t)]))        # [b, T, 3, h, w]
        aus.append(syncnet.embed_audio(rows[2 * s[:, None] + torch.arange(2 * t)]))  # [b, 2T, D]
    if not vs:
        raise ValueError(f"clip of {n} frames is shorter than one {t}-frame window")
    return torch.cat(vs), torch.cat(aus)


def lse_ours(syncnet, frames: np.ndarray, whisper_rows: np.ndarray, max_offset: int = MAX_OFFSET) -> LSE:
    """LSE with our SyncNet: frames uint8 [N, S, S, 3] aligned crops, Whisper rows [2N, D]."""
    return lse_from_embeddings(*embed_ours(syncnet, frames, whisper_rows), max_offset)


# ------------------------------------------------------------------ the public SyncNet (MFCC)
def _bn_relu(bn, c, inplace=True):
    return [bn(c), nn.ReLU(inplace=inplace)]


class PublicSyncNet(nn.Module):
    """joonson/syncnet_python's ``SyncNetModel.S``: the layout of the published ``syncnet_v2.model``.

    Lip stream: 5 BGR frames of a 224x224 face crop, raw 0-255 values, [B, 3, 5, 224, 224];
    audio stream: 13 MFCC x 20 steps (0.2 s at 100 Hz), [B, 1, 13, 20]. Both -> [B, 1024].
    The module names (``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``) and layer order
    match the original so its state dict loads as is.
    """

    def __init__(self, embed: int = 1024):
        super().__init__()
        b2, b3 = nn.BatchNorm2d, nn.BatchNorm3d
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, 3, 1, 1), *_bn_relu(b2, 64), nn.MaxPool2d(1, 1),
            nn.Conv2d(64, 192, 3, 1, 1), *_bn_relu(b2, 192), nn.MaxPool2d(3, (1, 2)),
            nn.Conv2d(192, 384, 3, padding=1), *_bn_relu(b2, 384),
            nn.Conv2d(384, 256, 3, padding=1), *_bn_relu(b2, 256),
            nn.Conv2d(256, 256, 3, padding=1), *_bn_relu(b2, 256), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 512, (5, 4)), *_bn_relu(b2, 512, inplace=False),
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed))
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2)), *_bn_relu(b3, 96), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), *_bn_relu(b3, 256),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), *_bn_relu(b3, 256),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), *_bn_relu(b3, 256),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), *_bn_relu(b3, 256),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(256, 512, (1, 6, 6)), *_bn_relu(b3, 512),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, 13, 20] MFCC -> [B, 1024]."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 5, 224, 224] BGR 0-255 -> [B, 1024]."""
        return self.netfclip(self.netcnnlip(x).flatten(1))

    @classmethod
    def from_file(cls, path: str | Path) -> PublicSyncNet:
        """Load a ``syncnet_v2.model`` state dict (weights_only: no pickle). Raises ValueError
        naming missing/unexpected keys when the file is not that layout."""
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
        net = cls()
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: not a syncnet_v2 state dict (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        return net.eval()


def public_inputs(frames: np.ndarray, audio: np.ndarray, sample_rate: int = 16000):
    """(lip [1, 3, N, 224, 224] BGR 0-255, mfcc [1, 1, 13, M]) as syncnet_python builds them.

    frames: uint8 [N, H, W, 3] RGB face crops at 25 fps; audio: float32 mono in [-1, 1] at 16 kHz
    (scaled to int16 units: the published weights were trained on MFCCs of 16-bit wav samples).
    """
    import cv2

    lip = np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_LINEAR)[..., ::-1] for f in frames])
    lip_t = torch.from_numpy(np.ascontiguousarray(lip)).float().permute(3, 0, 1, 2)[None]
    feats = mfcc(np.asarray(audio, np.float64) * 32768.0, sample_rate)   # [M, 13]
    return lip_t, torch.from_numpy(feats.T.copy()).float()[None, None]


@torch.no_grad()
def embed_public(net: PublicSyncNet, frames: np.ndarray, audio: np.ndarray, batch: int = 8):
    """Window embeddings with the public SyncNet -> ([W, 1024], [W, 1024]); 4 MFCC steps per frame."""
    lip, cc = public_inputs(frames, audio)
    w = min(lip.shape[2] - 4, (cc.shape[-1] - 20) // 4 + 1)
    if w < 1:
        raise ValueError("clip shorter than one 5-frame / 0.2 s window")
    vs, aus = [], []
    for i in range(0, w, batch):
        idx = range(i, min(w, i + batch))
        vs.append(net.forward_lip(torch.cat([lip[:, :, v:v + 5] for v in idx])))
        aus.append(net.forward_aud(torch.cat([cc[..., 4 * v:4 * v + 20] for v in idx])))
    return torch.cat(vs), torch.cat(aus)


def lse_public(net: PublicSyncNet, frames: np.ndarray, audio: np.ndarray, max_offset: int = MAX_OFFSET) -> LSE:
    """LSE with the public SyncNet: frames uint8 [N, H, W, 3] RGB face crops, 16 kHz mono audio."""
    return lse_from_embeddings(*embed_public(net, frames, audio), max_offset)
