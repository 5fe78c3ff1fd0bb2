"""Reference frames for dubbing, chosen as training chooses them (``preprocessing.references``).

Training picks references for a target window: other times of the clip, a similar head pose,
spread over mouth openness. A dub uses ONE set for the whole video (references that changed from
chunk to chunk would make the mouth's texture jump at every chunk seam), so the target is the
frame whose pose is the video's typical one.
"""

from __future__ import annotations

import numpy as np

from preprocessing.config import ReferenceConfig
from preprocessing.references import pose_descriptor, select_references


def dub_references(landmarks: np.ndarray, usable: np.ndarray, k: int,
                   cfg: ReferenceConfig | None = None) -> np.ndarray:
    """K reference frames: landmarks [N, 68, 2] (aligned crop), usable [N] bool -> [K] int64 indices.

    Raises ValueError when no frame is usable.
    """
    idx = np.flatnonzero(usable)
    if len(idx) == 0:
        raise ValueError("no usable face frame to take references from")
    pose = pose_descriptor(landmarks[idx])  # [U, P]
    typical = int(np.argmin(np.linalg.norm(pose - np.median(pose, 0), axis=1)))
    if len(idx) == 1:
        return np.repeat(idx, k)
    return idx[select_references(landmarks[idx], typical, k, cfg)]
