"""`Clip`: one aligned face clip, the unit every clip filter judges and every shard sample stores.

Its own module so that the extractor (`clips.py`) and the filters (`filters.py`) share the type
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Clip:
    video_id: str
    index: int
    start_frame: int  # at `fps`, inclusive
    end_frame: int  # at `fps`, exclusive
    crops: np.ndarray  # [T, S, S, 3] uint8 RGB aligned faces
    landmarks: np.ndarray  # [T, 68, 2] float32 in crop pixels
    affine: np.ndarray  # [T, 2, 3] float32 crop <- source, in the original video's pixels
    audio: np.ndarray  # [N] float32 16 kHz, time zero = the clip's first frame
    face_size: float  # median face width in original-video pixels
    fps: float = 25.0
    face_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # [K] faces per keyframe
    source_scale: float = 1.0  # decoded pixels / original pixels (the max_side downscale used)
    scores: dict[str, float] = field(default_factory=dict)
    whisper: np.ndarray | None = None  # [2T, D] Whisper rows, once computed (the A/V sync filter reads them)

    @property
    def key(self) -> str:
        return f"{self.video_id}-{self.index:04d}"

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame
