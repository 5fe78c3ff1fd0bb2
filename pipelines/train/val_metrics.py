"""Validation metrics that show a run learning to dub (logged by the trainer every ``val_every``).

- ``mouth_audio_r``: Pearson r over the val frames between the generated mouth's opening and the
  loudness of the audio that drives it (a model that ignores the audio sits near 0; the real
  frames' own r is logged beside it as the ceiling).
- ``lse_d`` / ``lse_c``: the frozen SyncNet's embedding distance between the generated window
  and its audio, and how much farther the shifted (off-sync) audio is: LSE-D / LSE-C measured on
  the val windows (LSE's offset search needs whole clips; ``iptalker evaluate`` does that).

The mouth opening here is a pixel measure, the dark (open-mouth) fraction of the lips box located
from the landmarks; the learning tests check that it agrees with dlib landmarks on real frames.
"""

from __future__ import annotations

import math

import torch

from iptalker_model.mask import mouth_region

DARK = 0.3  # luminance in [0, 1] below which a lips-box pixel counts as mouth interior


def mouth_opening_proxy(frames: torch.Tensor, landmarks: torch.Tensor, cfg) -> torch.Tensor:
    """Dark fraction of the tight lips box: frames [N, 3, S, S] in [-1, 1], landmarks [N, 68, 2]
    in crop fractions -> [N] in [0, 1] (0 closed lips, larger as the mouth opens)."""
    box = mouth_region(landmarks, cfg, margin=0.0)                      # [N, 1, S, S]
    rgb = (frames.float() + 1) / 2
    luma = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])[:, None]
    return ((luma < DARK).float() * box).flatten(1).sum(1) / box.flatten(1).sum(1).clamp_min(1.0)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """r of two [N] tensors over their finite pairs; NaN when either is constant or N < 3."""
    ok = torch.isfinite(a) & torch.isfinite(b)
    a, b = a[ok].double(), b[ok].double()
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return math.nan
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


@torch.no_grad()
def window_lse(syncnet, frames: torch.Tensor, sync_audio: torch.Tensor, off_audio: torch.Tensor) -> dict:
    """frames [B, T, 3, S, S], sync/off audio [B, 2T, D] -> {"lse_d", "lse_c"} (batch means)."""
    net = getattr(syncnet, "module", syncnet)
    t = net.cfg.sync_frames
    faces = net.lower_face(frames[:, :t])
    v, a_sync = net(faces, sync_audio[:, :2 * t])
    a_off = net.embed_audio(off_audio[:, :2 * t])
    d_sync, d_off = (v - a_sync).norm(dim=-1), (v - a_off).norm(dim=-1)
    return {"lse_d": float(d_sync.mean()), "lse_c": float((d_off - d_sync).mean())}


class DubbingMetrics:
    """Accumulates val windows; ``result()`` gives mouth_audio_r (generated and real) and LSE."""

    def __init__(self, cfg, syncnet=None):
        self.cfg, self.syncnet = cfg, syncnet
        self.gen, self.real, self.rms, self.lse = [], [], [], []

    def add(self, batch: dict, generated: torch.Tensor) -> None:
        lm = batch["landmarks"].flatten(0, 1)
        self.gen.append(mouth_opening_proxy(generated.flatten(0, 1), lm, self.cfg))
        self.real.append(mouth_opening_proxy(batch["frames"].flatten(0, 1), lm, self.cfg))
        if "audio_rms" in batch:
            self.rms.append(batch["audio_rms"].flatten().float())
        if self.syncnet is not None:
            self.lse.append(window_lse(self.syncnet, generated, batch["sync_audio"], batch["sync_audio_off"]))

    def result(self) -> dict[str, float]:
        out = {}
        if self.rms:
            rms = torch.cat(self.rms)
            out["mouth_audio_r"] = pearson(torch.cat(self.gen), rms)
            out["mouth_audio_r_real"] = pearson(torch.cat(self.real), rms)
        for key in ("lse_d", "lse_c"):
            if self.lse:
                out[key] = sum(x[key] for x in self.lse) / len(self.lse)
        return {k: v for k, v in out.items() if not math.isnan(v)}
