"""Identity preservation: dlib's 128-d face descriptor between each generated frame and its source.

dlib's ResNet descriptor (``dlib_face_recognition_resnet_model_v1.dat``, shipped offline in
face-recognition-models) is trained so that two photos of the same person lie < 0.6 apart
(Euclidean). Frames are compared pairwise in time (generated frame t vs source frame t), never
all pairs, so a model that swaps faces between frames cannot hide in an average. ArcFace is not
implemented: no ArcFace weights ship offline with our dependencies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import dlib
import numpy as np

from pipelines.metrics.mouth import MIN_DETECT_SIDE, landmarks_of
from preprocessing import dlib_models

SAME_PERSON_DISTANCE = 0.6  # dlib's published decision threshold


@dataclass
class IdentityScores:
    distance: float  # mean Euclidean descriptor distance over matched frames (0 = same face)
    cosine: float    # mean cosine similarity over matched frames (1 = same direction)
    frames: int      # matched frames where both faces were found
    total: int       # frames compared

    def as_dict(self) -> dict[str, float]:
        return {"identity_distance": self.distance, "identity_cosine": self.cosine,
                "identity_frames": float(self.frames)}


def face_descriptors(frames: np.ndarray, landmarks: np.ndarray | None = None,
                     min_side: int = MIN_DETECT_SIDE) -> np.ndarray:
    """uint8 [T, H, W, 3] RGB -> float32 [T, 128] descriptors (NaN rows where no face is found).

    ``landmarks`` [T, 68, 2] (from ``landmarks_of``) may be passed to skip detection.
    """
    frames = np.asarray(frames)
    lms = landmarks_of(frames, min_side) if landmarks is None else np.asarray(landmarks)
    model = dlib_models.face_descriptor_model()
    out = np.full((len(frames), 128), np.nan, np.float32)
    for i, (frame, lm) in enumerate(zip(frames, lms, strict=True)):
        if not np.isfinite(lm).all():
            continue
        scale = max(1.0, min_side / min(frame.shape[:2]))
        big = frame if scale == 1.0 else cv2.resize(frame, None, fx=scale, fy=scale,
                                                    interpolation=cv2.INTER_CUBIC)
        pts = lm * scale
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        rect = dlib.rectangle(int(x0), int(y0), int(math.ceil(x1)), int(math.ceil(y1)))
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
        out[i] = np.asarray(model.compute_face_descriptor(np.ascontiguousarray(big), shape), np.float32)
    return out


def identity_scores(generated: np.ndarray, source: np.ndarray, *, generated_desc: np.ndarray | None = None,
                    source_desc: np.ndarray | None = None) -> IdentityScores:
    """Mean descriptor distance and cosine between matched frames of two clips.

    generated, source: uint8 [T, H, W, 3] (same T); precomputed descriptors [T, 128] may be passed
    (e.g. the source's, shared by several candidates). NaN scores when no frame pair has two faces.
    """
    g = face_descriptors(generated) if generated_desc is None else generated_desc
    s = face_descriptors(source) if source_desc is None else source_desc
    n = min(len(g), len(s))
    g, s = g[:n].astype(np.float64), s[:n].astype(np.float64)
    ok = np.isfinite(g).all(1) & np.isfinite(s).all(1)
    if not ok.any():
        return IdentityScores(math.nan, math.nan, 0, n)
    dist = np.linalg.norm(g[ok] - s[ok], axis=1)
    cos = (g[ok] * s[ok]).sum(1) / (np.linalg.norm(g[ok], axis=1) * np.linalg.norm(s[ok], axis=1))
    return IdentityScores(float(dist.mean()), float(cos.mean()), int(ok.sum()), n)
