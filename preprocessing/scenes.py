"""Scene cuts: the content-difference score of each frame and the one rule that calls a cut.

Cuts are not a filter but a splitter: the clip extractor starts a new shot where `is_cut` says so
(streaming, batch by batch), and `find_scene_cuts` applies the same rule to a whole clip.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_GAP = 5  # frames: a second jump this soon after a cut is a flash or a fast pan, not a new shot


def content_scores(frames: np.ndarray, previous: np.ndarray | None = None, width: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Content difference of each frame to the one before: mean |HSV diff| (0-255) on small frames.

    frames [B, H, W, 3] uint8 RGB; `previous` is the last small frame of the previous batch.
    Returns (scores [B] float32, last small frame to pass on). The first frame of a stream scores 0.
    """
    height = max(1, round(frames.shape[1] * width / frames.shape[2]))
    step = max(1, frames.shape[2] // (4 * width))  # subsample first: INTER_AREA on 4K is slow
    small = np.stack([cv2.cvtColor(cv2.resize(f[::step, ::step], (width, height), interpolation=cv2.INTER_AREA),
                                   cv2.COLOR_RGB2HSV) for f in frames]).astype(np.int16)  # [B, h, w, 3]
    prev = np.concatenate([small[:1] if previous is None else previous[None], small[:-1]])
    return np.abs(small - prev).mean(axis=(1, 2, 3)).astype(np.float32), small[-1]


def is_cut(score: float, frame: int, last_cut: int, threshold: float, min_gap: int = MIN_GAP) -> bool:
    """Does a new shot start at `frame` (index in the stream)? A content jump above `threshold`,
    not on the first frame, at least `min_gap` frames after the previous cut at `last_cut`."""
    return bool(score > threshold) and frame > 0 and frame - last_cut >= min_gap


def find_scene_cuts(frames_or_scores: np.ndarray, threshold: float = 30.0, min_gap: int = MIN_GAP) -> list[int]:
    """Frames where a new shot starts (content-difference detector).

    Accepts frames [T, H, W, 3] uint8 RGB or precomputed scores [T] from `content_scores`.
    """
    data = np.asarray(frames_or_scores)
    scores = content_scores(data)[0] if data.ndim == 4 else data.astype(np.float32)
    cuts: list[int] = []
    for i, score in enumerate(scores):
        if is_cut(score, i, cuts[-1] if cuts else -min_gap, threshold, min_gap):
            cuts.append(i)
    return cuts
