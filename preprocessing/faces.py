"""Face detection every N frames + 68 landmarks on every frame, tracked and smoothed over time.

Detection (dlib HOG, ~9 ms on a 640 px frame) is the slow part, so it runs on keyframes only on a
downscaled frame; between keyframes the landmark predictor (~0.5 ms) follows the face from the
previous frame's landmarks. The detector is a Protocol so a GPU detector can replace dlib.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import cv2
import dlib
import numpy as np
from scipy.ndimage import gaussian_filter1d

from preprocessing import dlib_models
from preprocessing.config import FaceConfig


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def size(self) -> float:
        return max(self.x1 - self.x0, self.y1 - self.y0)

    def as_array(self) -> np.ndarray:
        return np.array([self.x0, self.y0, self.x1, self.y1], np.float32)


class FaceDetector(Protocol):
    def detect(self, frame_rgb: np.ndarray) -> list[Box]:
        """Faces in a [H, W, 3] uint8 RGB frame, boxes in that frame's pixels, best first."""
        ...


class DlibHogDetector:
    """dlib HOG on a frame downscaled to `max_side` (finds faces >= ~80 px on that frame)."""

    def __init__(self, max_side: int = 640, upsample: int = 0, min_score: float = 0.0):
        self.max_side, self.upsample, self.min_score = max_side, upsample, min_score
        self._hog = dlib_models.hog_detector()

    def detect(self, frame_rgb: np.ndarray) -> list[Box]:
        scale = min(1.0, self.max_side / max(frame_rgb.shape[:2]))
        small = frame_rgb if scale == 1.0 else cv2.resize(
            frame_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        rects, scores, _ = self._hog.run(gray, self.upsample, self.min_score)
        boxes = [Box(r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale, s)
                 for r, s in zip(rects, scores, strict=True)]
        return sorted(boxes, key=lambda b: -b.score)


class LandmarkPredictor68:
    """dlib 68-point shape predictor (iBUG 300-W; non-commercial licence)."""

    def __init__(self):
        self._predictor = dlib_models.landmark_predictor()

    def predict(self, image: np.ndarray, box: Box) -> np.ndarray:
        """[68, 2] float32 landmarks in `image`'s pixels for the face in `box`.

        `image` is [H, W] uint8 gray (fastest: ~0.5 ms) or [H, W, 3] uint8 RGB.
        """
        rect = dlib.rectangle(int(box.x0), int(box.y0), int(box.x1), int(box.y1))
        shape = self._predictor(np.ascontiguousarray(image), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


@dataclass
class FaceTrack:
    """Per-frame face track of one video segment (source pixels)."""

    landmarks: np.ndarray  # [T, 68, 2] float32
    boxes: np.ndarray  # [T, 4] float32 x0, y0, x1, y1 (box fed to the landmark predictor)
    keyframes: np.ndarray  # [K] int, frame indices (within this track) where detection ran
    face_counts: np.ndarray  # [K] int, faces found on each keyframe
    valid: np.ndarray  # [T] bool, a face was tracked on this frame
    face_size: np.ndarray  # [T] float32, face width = |jaw 0 - jaw 16| in source pixels

    def __len__(self) -> int:
        return len(self.valid)

    def slice(self, start: int, end: int) -> FaceTrack:
        keep = (self.keyframes >= start) & (self.keyframes < end)
        return FaceTrack(self.landmarks[start:end], self.boxes[start:end], self.keyframes[keep] - start,
                         self.face_counts[keep], self.valid[start:end], self.face_size[start:end])


def concat_tracks(tracks: list[FaceTrack]) -> FaceTrack:
    offsets = np.cumsum([0] + [len(t) for t in tracks])
    return FaceTrack(
        np.concatenate([t.landmarks for t in tracks]) if tracks else np.zeros((0, 68, 2), np.float32),
        np.concatenate([t.boxes for t in tracks]) if tracks else np.zeros((0, 4), np.float32),
        np.concatenate([t.keyframes + o for t, o in zip(tracks, offsets, strict=False)] + [np.zeros(0, int)]),
        np.concatenate([t.face_counts for t in tracks] + [np.zeros(0, int)]),
        np.concatenate([t.valid for t in tracks] + [np.zeros(0, bool)]),
        np.concatenate([t.face_size for t in tracks] + [np.zeros(0, np.float32)]))


def _iou(a: Box, b: np.ndarray) -> float:
    ix = max(0.0, min(a.x1, b[2]) - max(a.x0, b[0]))
    iy = max(0.0, min(a.y1, b[3]) - max(a.y0, b[1]))
    inter = ix * iy
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Streaming tracker: feed frame batches in order; state carries across batches."""

    def __init__(self, cfg: FaceConfig, detector: FaceDetector | None = None,
                 predictor: LandmarkPredictor68 | None = None):
        self.cfg = cfg
        self.detector = detector or DlibHogDetector(cfg.detect_max_side, cfg.upsample, cfg.min_score)
        self.predictor = predictor or LandmarkPredictor68()
        self._frame = 0  # global frame counter (keyframe schedule)
        self._force = True  # detect on the next frame (start, lost track, scene cut)
        self._box_rel: np.ndarray | None = None  # detector box relative to the landmark bbox
        self._prev_lm: np.ndarray | None = None  # [68, 2] landmarks of the previous frame
        self._missed = 0  # consecutive keyframes where the detector lost the tracked face

    def restart(self) -> None:
        """Forget the face (call at a scene cut): the next frame is a keyframe."""
        self._force, self._box_rel, self._prev_lm, self._missed = True, None, None, 0

    def _choose(self, boxes: list[Box], prev: np.ndarray | None) -> Box | None:
        if not boxes:
            return None
        if prev is not None:
            best = max(boxes, key=lambda b: _iou(b, prev))
            if _iou(best, prev) > 0.3:
                return best
        return max(boxes, key=lambda b: b.size)

    def _box_from_landmarks(self, lm: np.ndarray) -> Box:
        lo, hi = lm.min(0), lm.max(0)
        wh = np.maximum(hi - lo, 1.0)
        rel = self._box_rel  # [4] offsets in units of the landmark bbox size
        return Box(lo[0] + rel[0] * wh[0], lo[1] + rel[1] * wh[1], hi[0] + rel[2] * wh[0], hi[1] + rel[3] * wh[1])

    def _detect(self, frame: np.ndarray, prev_lm: np.ndarray | None) -> tuple[Box | None, int]:
        """Keyframe: (box to follow, faces counted). A live track survives a few missed detections
        (HOG misses turned or blurred faces) and then counts as one face."""
        found = self.detector.detect(frame)
        self._force = False
        prev_box = self._box_from_landmarks(prev_lm) if prev_lm is not None else None
        box = self._choose(found, prev_box.as_array() if prev_box is not None else None)
        if box is not None:
            self._missed = 0
            return box, len(found)
        self._missed += 1
        if prev_box is not None and self._missed <= self.cfg.max_missed_keyframes:
            return prev_box, len(found) + 1
        return None, len(found)

    def track(self, frames: np.ndarray) -> FaceTrack:
        """Track the main face through frames [B, H, W, 3] uint8 RGB (unsmoothed)."""
        n = len(frames)
        lms, boxes = np.zeros((n, 68, 2), np.float32), np.zeros((n, 4), np.float32)
        valid = np.zeros(n, bool)
        keyframes, counts = [], []
        prev_lm = self._prev_lm
        for i, frame in enumerate(frames):
            every = self.cfg.detect_every if prev_lm is not None else max(1, self.cfg.detect_every // 2)
            is_key = self._force or self._frame % every == 0  # no face yet: look twice as often
            box = None
            if is_key:
                box, count = self._detect(frame, prev_lm)
                keyframes.append(i)
                counts.append(count)
            elif prev_lm is not None:
                box = self._box_from_landmarks(prev_lm)
            self._frame += 1
            if box is None:
                prev_lm, self._box_rel = None, None
                continue
            lm = self.predictor.predict(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), box)
            if is_key and self._missed == 0:
                lo, hi = lm.min(0), lm.max(0)
                wh = np.maximum(hi - lo, 1.0)
                self._box_rel = np.array([(box.x0 - lo[0]) / wh[0], (box.y0 - lo[1]) / wh[1],
                                          (box.x1 - hi[0]) / wh[0], (box.y1 - hi[1]) / wh[1]], np.float32)
            lms[i], boxes[i], valid[i], prev_lm = lm, box.as_array(), True, lm
        self._prev_lm = prev_lm
        size = np.linalg.norm(lms[:, 16] - lms[:, 0], axis=-1).astype(np.float32) * valid
        return FaceTrack(lms, boxes, np.array(keyframes, int), np.array(counts, int), valid, size)


def valid_runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """[(start, end)) of consecutive True frames of `valid` [T] bool (tracked-face runs)."""
    edges = np.diff(np.concatenate([[0], np.asarray(valid).astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def smooth_track(track: FaceTrack, sigma: float) -> FaceTrack:
    """Gaussian-smooth landmarks over time inside each run of tracked frames (no bleed across gaps)."""
    if sigma <= 0:
        return track
    lms = track.landmarks.copy()
    for start, end in valid_runs(track.valid):
        if end - start > 1:
            lms[start:end] = gaussian_filter1d(lms[start:end], sigma, axis=0, mode="nearest")
    size = np.linalg.norm(lms[:, 16] - lms[:, 0], axis=-1).astype(np.float32) * track.valid
    return FaceTrack(lms, track.boxes, track.keyframes, track.face_counts, track.valid, size)


def track_faces(frames_iter: Iterable, cfg: FaceConfig, detector: FaceDetector | None = None) -> FaceTrack:
    """Track the main face through a whole frame stream.

    `frames_iter` yields frame batches [B, H, W, 3] uint8 RGB or (indices, frames) pairs as
    produced by `media.iter_frames`. Returns the smoothed FaceTrack of all frames.
    """
    tracker = FaceTracker(cfg, detector)
    parts = [tracker.track(item[1] if isinstance(item, tuple) else item) for item in frames_iter]
    return smooth_track(concat_tracks(parts), cfg.smooth_sigma)
