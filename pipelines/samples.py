"""Sample grids for MLflow: reference | generated | ground truth, one row per target frame."""

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
