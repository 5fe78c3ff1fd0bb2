"""Who is in a video: the median dlib 128-d face descriptor of its main face.

dlib's ResNet face descriptor (shipped by face-recognition-models) maps a face to a 128-d vector
where two photos of one person are closer than ~0.6 (Euclidean) and different people further.
The median over a few frames spread over the video resists a blink or a turned head. Costs
~55 ms per frame on one core, so a handful of frames per input.
"""

from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np

from preprocessing import dlib_models
from preprocessing.config import PreprocessConfig
from preprocessing.faces import Box, DlibHogDetector
from preprocessing.media import MediaInfo, iter_frames, probe

DESCRIPTOR_DIM = 128


def face_descriptor(frame_rgb: np.ndarray, box: Box) -> np.ndarray:
    """[128] float32 descriptor of the face in `box` of a [H, W, 3] uint8 RGB frame."""
    rect = dlib.rectangle(int(box.x0), int(box.y0), int(box.x1), int(box.y1))
    image = np.ascontiguousarray(frame_rgb)
    shape = dlib_models.landmark_predictor()(image, rect)
    return np.asarray(dlib_models.face_descriptor_model().compute_face_descriptor(image, shape), np.float32)


def video_descriptor(path: str | Path, cfg: PreprocessConfig, n_frames: int = 5,
                     info: MediaInfo | None = None) -> np.ndarray | None:
    """Median [128] float32 descriptor of the largest face on `n_frames` frames spread over the
    video (at 0, 1/n, 2/n... of its length), or None when no frame shows a face of `filters.min_face_size`.

    Decodes only those frames, at the curation's decode size; detection runs the fast pass, then
    the fine pass down to the minimum face size, as the tracker does.
    """
    info = info or probe(path)
    scale = min(1.0, cfg.media.max_side / max(info.width, info.height)) if cfg.media.max_side else 1.0
    min_face = cfg.filters.min_face_size * scale
    detector = DlibHogDetector(cfg.face.detect_max_side, cfg.face.upsample, cfg.face.min_score,
                               cfg.face.fine_max_pixels)
    fps = n_frames / max(info.duration_s, 1e-3)  # iter_frames then yields ~n_frames frames
    descriptors = []
    for _, frames in iter_frames(path, fps=fps, batch_size=n_frames, max_side=cfg.media.max_side, info=info):
        for frame in frames[: n_frames]:
            found = detector.detect(frame) or detector.detect(frame, min_face=min_face)
            found = [b for b in found if b.size >= min_face]
            if found:
                descriptors.append(face_descriptor(frame, max(found, key=lambda b: b.size)))
    return np.median(np.stack(descriptors), axis=0) if descriptors else None
