"""Samples for MLflow: reference | generated | ground truth, as a PNG grid (one row per target
frame) and as a short H.264 video over every window of the validation batch."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[N, 3, S, S] in [-1, 1] -> uint8 [N, S, S, 3] RGB."""
    x = ((frames.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def write_sample_grid(path: str | Path, references: torch.Tensor, frames: torch.Tensor,
                      generated: torch.Tensor | None = None) -> Path:
    """Write a PNG: columns reference k (cycled) | generated (when given) | ground truth.

    references [K, 3, S, S], frames and generated [T, 3, S, S], all in [-1, 1].
    """
    refs, truth = to_uint8(references), to_uint8(frames)
    gen = to_uint8(generated) if generated is not None else None
    rows = []
    for t in range(len(truth)):
        cols = [refs[t % len(refs)]] + ([gen[t]] if gen is not None else []) + [truth[t]]
        rows.append(np.concatenate(cols, axis=1))
    grid = np.concatenate(rows, axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def write_sample_video(path: str | Path, references: torch.Tensor, frames: torch.Tensor,
                       generated: torch.Tensor | None = None, fps: float = 5.0) -> Path:
    """An mp4 playing each window's frames: reference 0 | generated | ground truth.

    references [B, K, 3, S, S], frames and generated [B, T, 3, S, S], all in [-1, 1]. A low frame
    rate because the windows are only T frames long.
    """
    from preprocessing.encode import encode_mp4

    video = []
    for b in range(frames.shape[0]):
        ref, truth = to_uint8(references[b, :1])[0], to_uint8(frames[b])
        gen = to_uint8(generated[b]) if generated is not None else None
        for t in range(len(truth)):
            video.append(np.concatenate([ref] + ([gen[t]] if gen is not None else []) + [truth[t]], axis=1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_mp4(np.stack(video), fps, path)
    return path
