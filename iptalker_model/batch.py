"""The training-window contract between the shard loader (pipelines) and the model's losses.

One source of truth for the keys and shapes a training batch carries. The loader builds these
from one curated clip; the model package consumes them without knowing where they came from.

Shapes (B batch, T consecutive target frames = ``ModelConfig.sync_frames``, K references,
S = ``ModelConfig.image_size``, A = Whisper rows per frame window = 2 * (2 * audio_context + 1),
D = Whisper feature width):

  frames          float32 [B, T, 3, S, S] in [-1, 1]   aligned ground-truth target frames
  references      float32 [B, K, 3, S, S] in [-1, 1]   same clip, frames outside the target window
  audio           float32 [B, T, A, D]                 Whisper rows centred on each target frame
  sync_audio      float32 [B, 2T, D]                   Whisper rows covering the target window
  sync_audio_off  float32 [B, 2T, D]                   rows of a window >= T frames away (negative)
  landmarks       float32 [B, T, 68, 2] in [0, 1]      iBUG-68 (x, y) of the target frames, as
                                                       fractions of the crop: the mouth losses'
                                                       region (``mask.mouth_region``)

The masked source is not in the batch: the model masks ``frames`` itself (``ModelConfig`` owns
the mask geometry), so loader and model cannot disagree about which pixels are hidden.
"""

from __future__ import annotations

from typing import TypedDict

import torch

BATCH_KEYS = ("frames", "references", "audio", "sync_audio", "sync_audio_off", "landmarks")


class TrainingWindow(TypedDict):
    frames: torch.Tensor
    references: torch.Tensor
    audio: torch.Tensor
    sync_audio: torch.Tensor
    sync_audio_off: torch.Tensor
    landmarks: torch.Tensor


def check_batch(batch: dict) -> None:
    """Raise ValueError naming the first key whose rank or batch size breaks the contract."""
    ranks = {"frames": 5, "references": 5, "audio": 4, "sync_audio": 3, "sync_audio_off": 3,
             "landmarks": 4}
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch is missing keys {missing}")
    b = batch["frames"].shape[0]
    for key, rank in ranks.items():
        t = batch[key]
        if t.dim() != rank or t.shape[0] != b:
            raise ValueError(f"batch[{key!r}] has shape {tuple(t.shape)}; expected rank {rank}, B={b}")
    t_frames = batch["frames"].shape[1]
    if batch["audio"].shape[1] != t_frames or batch["sync_audio"].shape[1] != 2 * t_frames:
        raise ValueError("audio windows do not match the number of target frames")
    if batch["landmarks"].shape[1:] != (t_frames, 68, 2):
        raise ValueError(f"batch['landmarks'] has shape {tuple(batch['landmarks'].shape)}; "
                         f"expected [B, {t_frames}, 68, 2]")


def random_batch(cfg, b: int = 2, t: int | None = None, seed: int = 0, device=None) -> dict:
    """A batch with the contract's keys and shapes and random values (shape tests, benchmarks).

    ``cfg``: a ``ModelConfig``; ``t`` defaults to ``cfg.sync_frames``. Frames in [-1, 1], audio N(0, 1).
    """
    g = torch.Generator().manual_seed(seed)
    t = t or cfg.sync_frames
    s, k, a, d = cfg.image_size, cfg.num_references, cfg.audio_rows, cfg.audio_dim
    out = {
        "frames": torch.rand(b, t, 3, s, s, generator=g) * 2 - 1,
        "references": torch.rand(b, k, 3, s, s, generator=g) * 2 - 1,
        "audio": torch.randn(b, t, a, d, generator=g),
        "sync_audio": torch.randn(b, 2 * t, d, generator=g),
        "sync_audio_off": torch.randn(b, 2 * t, d, generator=g),
        "landmarks": _plausible_landmarks(b, t),
    }
    return {key: v.to(device) for key, v in out.items()} if device is not None else out


def _plausible_landmarks(b: int, t: int) -> torch.Tensor:
    """[b, t, 68, 2] crop fractions: every point at the centre of the lower face, the lips spread
    over a small box there (enough for the mouth region of a random batch)."""
    lm = torch.full((68, 2), 0.5)
    lm[48:68] = torch.stack([torch.linspace(0.35, 0.65, 20), torch.linspace(0.7, 0.8, 20)], -1)
    return lm.expand(b, t, 68, 2).clone()
