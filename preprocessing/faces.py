"""Face detection every N frames + 68 landmarks on every frame, tracked and smoothed over time.

Detection (dlib HOG, ~9 ms on a 640 px frame) is the slow part, so it runs on keyframes only, on a
downscaled frame (the fast pass: finds faces >= ~70 px there, >= ~140 px on a 1280 px frame).
Where the fast pass finds nothing, a fine pass scales the frame so that every face of at least
the minimum face size is found, and, rarely, a small-face probe looks further down so a face
that is there but too small is reported as such (not as "no face"). Between keyframes the
landmark predictor (~0.5 ms) follows the face from the previous frame's landmarks. The detector
is a Protocol so a GPU detector can replace dlib.
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
    def detect(self, frame_rgb: np.ndarray, min_face: float | None = None) -> list[Box]:
        """Faces in a [H, W, 3] uint8 RGB frame, boxes in that frame's pixels, best first.

        `min_face` (fine pass, only asked of detectors with a `reach` method): find every face
        whose box is at least this many pixels of this frame, whatever it costs.
        """
        ...


# Smallest box dlib's HOG finds at upsample 0 (80 px window; measured on a real photo: a face
# 60 px jaw to jaw gives a 73 px box and is found, 50 px is not). Scales below aim at this size.
HOG_MIN_FACE = 72.0


class DlibHogDetector:
    """dlib HOG. Fast pass: the frame downscaled to `max_side` (finds boxes >= ~72 px there).
    Fine pass (`min_face`): the frame rescaled so that a `min_face` box becomes ~72 px, at most
    `max_pixels` pixels (the cost grows with them: ~40-70 ms per megapixel on one core)."""

    def __init__(self, max_side: int = 640, upsample: int = 0, min_score: float = 0.0,
                 max_pixels: int = 8_000_000):
        self.max_side, self.upsample, self.min_score = max_side, upsample, min_score
        self.max_pixels = max_pixels
        self._hog = dlib_models.hog_detector()

    def _fast_scale(self, shape: tuple[int, ...]) -> float:
        return min(1.0, self.max_side / max(shape[:2])) * 2.0 ** self.upsample

    def reach(self, shape: tuple[int, ...]) -> float:
        """Smallest box (frame pixels) the fast pass finds on a frame of this shape."""
        return HOG_MIN_FACE / self._fast_scale(shape)

    def detect(self, frame_rgb: np.ndarray, min_face: float | None = None,
               max_pixels: int | None = None) -> list[Box]:
        h, w = frame_rgb.shape[:2]
        if min_face is None:
            scale, upsample = min(1.0, self.max_side / max(h, w)), self.upsample
        else:
            budget = max_pixels or self.max_pixels
            scale, upsample = min(HOG_MIN_FACE / min_face, (budget / (h * w)) ** 0.5), 0
        image = frame_rgb if scale == 1.0 else cv2.resize(
            frame_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        rects, scores, _ = self._hog.run(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), upsample, self.min_score)
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
    """Streaming tracker: feed frame batches in order; state carries across batches.

    `min_face_px`: the smallest face to find, in this tracker's frame pixels (the curation job
    passes `filters.min_face_size` times the decode scale). With it, keyframes where the fast pass
    finds nothing get the fine pass; without it only a tracked face is looked for more finely.
    """

    def __init__(self, cfg: FaceConfig, detector: FaceDetector | None = None,
                 predictor: LandmarkPredictor68 | None = None, min_face_px: float | None = None):
        self.cfg, self.min_face_px = cfg, min_face_px
        self.detector = detector or DlibHogDetector(cfg.detect_max_side, cfg.upsample, cfg.min_score,
                                                    cfg.fine_max_pixels)
        self.predictor = predictor or LandmarkPredictor68()
        self._frame = 0  # global frame counter (keyframe schedule)
        self._force = True  # detect on the next frame (start, lost track, scene cut)
        self._box_rel: np.ndarray | None = None  # detector box relative to the landmark bbox
        self._prev_lm: np.ndarray | None = None  # [68, 2] landmarks of the previous frame
        self._missed = 0  # consecutive keyframes where the detector lost the tracked face
        self._last_probe = -(10**9)  # frame of the last small-face probe

    @property
    def frame(self) -> int:
        """Index (from the first frame fed) of the frame being tracked: a detector's clock."""
        return self._frame

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

    def _find(self, frame: np.ndarray, prev_box: Box | None) -> list[Box]:
        """Keyframe detection: the fast pass; where it finds nothing (or not the tracked face),
        the fine pass down to the minimum face size (or the tracked face's size); where that
        finds nothing either and no face is tracked, now and then the small-face probe."""
        if prev_box is not None and self.min_face_px and prev_box.size < 0.9 * self.min_face_px:
            return [prev_box]  # too small for any clip: follow it by landmarks, its size rejects it
        found = self.detector.detect(frame)
        reach = getattr(self.detector, "reach", None)  # detectors without it handle scale themselves
        if reach is None or (found and (prev_box is None or any(_iou(b, prev_box.as_array()) > 0.3 for b in found))):
            return found
        # a tracked face: look finer only when it is itself below the fast pass's reach (a large
        # face the fast pass misses is turned or blurred, not small); no face: the minimum size
        target = 0.8 * prev_box.size if prev_box is not None else self.min_face_px
        if target and target < reach(frame.shape):
            found = self.detector.detect(frame, min_face=target)
        probe_due = self._frame - self._last_probe >= self.cfg.small_face_probe_every
        if not found and prev_box is None and self.min_face_px and probe_due:
            self._last_probe = self._frame
            found = self.detector.detect(frame, min_face=self.min_face_px * self.cfg.small_face_ratio,
                                         max_pixels=self.cfg.small_face_max_pixels)
        return found

    def _count(self, found: list[Box], main: Box | None) -> int:
        """Faces on a keyframe: the main one plus others of at least `second_face_min_ratio` of
        its size (smaller detections are background or false positives on clothing)."""
        if main is None:
            return 0
        others = [b for b in found if _iou(b, main.as_array()) < 0.3
                  and b.size >= self.cfg.second_face_min_ratio * main.size]
        return 1 + len(others)

    def _detect(self, frame: np.ndarray, prev_lm: np.ndarray | None) -> tuple[Box | None, int]:
        """Keyframe: (box to follow, faces counted). A live track survives a few missed detections
        (HOG misses turned or blurred faces) and then counts as one face."""
        prev_box = self._box_from_landmarks(prev_lm) if prev_lm is not None else None
        found = self._find(frame, prev_box)
        self._force = False
        box = self._choose(found, prev_box.as_array() if prev_box is not None else None)
        if box is not None:
            self._missed = 0
            return box, self._count(found, box)
        self._missed += 1
        if prev_box is not None and self._missed <= self.cfg.max_missed_keyframes:
            return prev_box, self._count(found, prev_box)
        return None, 0

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
