"""Pass 1 of a dub: track the face through the whole video and decide, per frame, dub or pass through.

Frames are decoded (downscaled to ``preprocess.media.max_side``) in bounded batches and dropped;
only per-frame numbers are kept (landmarks, transforms, flags: ~0.7 KB a frame), so a long video
costs no more frame memory than a short one. Knowing the whole track before dubbing lets the
alignment be smoothed over time without look-ahead buffers and the references be chosen from the
whole video.

A frame passes through unchanged when it has no tracked face (``no_face``), its alignment fit is
poor (``alignment_failed``) or it lies in a run of tracked frames too short to trust
(``short_track``). A shot change restarts the tracker, so the track re-enters on the new shot.
With several faces in view the dub follows the longest-lasting one of each shot (``main_face``),
or the one nearest ``--face x,y``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.dub.main_face import (
    FaceCensus,
    GuidedDetector,
    KeyTrack,
    choose_main,
    follows,
    link_tracks,
)
from preprocessing.align import estimate_transforms, five_points, template_points, transform_points
from preprocessing.config import PreprocessConfig
from preprocessing.faces import (
    Box,
    FaceDetector,
    FaceTrack,
    FaceTracker,
    concat_tracks,
    smooth_track,
)
from preprocessing.media import MediaInfo, iter_frames, prefetch
from preprocessing.scenes import content_scores, is_cut

PASS, DUB = "", "dub"


@dataclass
class FaceAnalysis:
    """What pass 1 learned about the video, per frame of its fps grid (original pixels)."""

    landmarks: np.ndarray  # [N, 68, 2] float32 source pixels
    affines: np.ndarray  # [N, 2, 3] float32 crop (align.size) <- source pixels, smoothed per run
    usable: np.ndarray  # [N] bool: this frame gets a new mouth
    reasons: np.ndarray  # [N] str: "" when usable, else why it passes through
    shot_starts: list[int]  # first frame of each shot after the first
    face_counts: np.ndarray  # [K] faces seen on the detector's keyframes
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.usable)

    def crop_landmarks(self) -> np.ndarray:
        """[N, 68, 2] landmarks in the aligned crop's pixels (for reference selection)."""
        return np.stack([transform_points(lm, m) for lm, m in zip(self.landmarks, self.affines, strict=True)]) \
            if self.n_frames else np.zeros((0, 68, 2), np.float32)


class NearestFaceDetector:
    """Wraps a detector to report only the face nearest to a point (``--face x,y``), in its frame's pixels."""

    def __init__(self, inner: FaceDetector, point: tuple[float, float]):
        self.inner, self.point = inner, np.asarray(point, np.float64)

    def detect(self, frame_rgb: np.ndarray) -> list[Box]:
        boxes = self.inner.detect(frame_rgb)
        if not boxes:
            return []

        def dist(b: Box) -> float:
            return float(np.hypot((b.x0 + b.x1) / 2 - self.point[0], (b.y0 + b.y1) / 2 - self.point[1]))

        best = min(boxes, key=dist)
        return [best] if dist(best) <= 2.0 * best.size else []  # the picked face is not in view


def _scale_of(info: MediaInfo, max_side: int | None) -> float:
    """Decoded pixels per original pixel (the decoder's downscale, as media._open_reader does it)."""
    if max_side and max(info.width, info.height) > max_side:
        return max(2, int(round(info.width * max_side / max(info.width, info.height) / 2)) * 2) / info.width
    return 1.0


def _max_gap(preprocess: PreprocessConfig) -> int:
    """Frames a track may go undetected and stay one track (the tracker's own patience)."""
    return (preprocess.face.max_missed_keyframes + 1) * preprocess.face.detect_every


def track_video(path: Path, info: MediaInfo, fps: float, preprocess: PreprocessConfig,
                face: tuple[float, float] | None = None, mains: list[KeyTrack] | None = None,
                ) -> tuple[FaceTrack, list[int], float, dict, FaceCensus | None]:
    """Decode + track one face on every frame of the fps grid: the one nearest ``face``, else the
    main tracks' face (``mains``), else whichever the tracker finds (recording every keyframe's
    faces in the returned census).

    Returns (unsmoothed track in decoded pixels, shot starts, decoded/original scale, timings, census).
    """
    media, scale = preprocess.media, _scale_of(info, preprocess.media.max_side)
    tracker = FaceTracker(preprocess.face)
    census = None
    if face is not None:
        tracker.detector = NearestFaceDetector(tracker.detector, (face[0] * scale, face[1] * scale))
    elif mains is None:
        tracker.detector = census = FaceCensus(tracker.detector)
    else:
        tracker.detector = GuidedDetector(tracker.detector, mains, _max_gap(preprocess))
    if face is None:  # the census and the guided detector read the tracker's frame
        tracker.detector.clock = lambda: tracker.frame
    parts, cuts, prev_small, last_cut = [], [], None, -(10 ** 9)
    timings = {"decode": 0.0, "faces": 0.0}
    batches = prefetch(iter_frames(path, fps=fps, batch_size=media.batch_size, max_side=media.max_side,
                                   num_threads=media.num_threads, info=info), media.prefetch_batches)
    t0 = time.perf_counter()
    for idx, frames in batches:
        t1 = time.perf_counter()
        timings["decode"] += t1 - t0
        scores, prev_small = content_scores(frames, prev_small)
        start = 0
        for i, score in enumerate(scores):
            frame = int(idx[i])
            if is_cut(score, frame, last_cut, preprocess.filters.scene_threshold):
                if i > start:
                    parts.append(tracker.track(frames[start:i]))
                tracker.restart()  # a new shot: detect afresh, never follow across the cut
                cuts.append(frame)
                last_cut, start = frame, i
        parts.append(tracker.track(frames[start:]))
        t0 = time.perf_counter()
        timings["faces"] += t0 - t1
    return concat_tracks(parts), cuts, scale, timings, census


def track_main_face(path: Path, info: MediaInfo, fps: float, preprocess: PreprocessConfig,
                    face: tuple[float, float] | None) -> tuple[FaceTrack, list[int], float, dict]:
    """``track_video`` of the face nearest ``face`` or, by default, the longest-lasting face per
    shot (``main_face``): tracked again, guided, only when the tracker followed another face."""
    track, cuts, scale, timings, census = track_video(path, info, fps, preprocess, face)
    if census is not None:
        mains = choose_main(link_tracks(census.boxes, cuts, _max_gap(preprocess)))
        if not follows(track.boxes, track.valid, mains):
            track, cuts, scale, again, _ = track_video(path, info, fps, preprocess, mains=mains)
            timings = {k: timings[k] + again[k] for k in timings}
    return track, cuts, scale, timings


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def alignment_error(landmarks: np.ndarray, affines: np.ndarray, preprocess: PreprocessConfig) -> np.ndarray:
    """RMS distance of the five alignment points from the template after warping, / crop side: [N]."""
    pts = five_points(landmarks.astype(np.float64))  # [N, 5, 2]
    warped = np.einsum("nij,nkj->nki", affines[:, :, :2].astype(np.float64), pts) + affines[:, None, :, 2]
    err = np.sqrt(((warped - template_points(preprocess.align)) ** 2).sum(-1).mean(-1))
    return err / preprocess.align.size


def analyse_faces(path: Path, info: MediaInfo, fps: float, preprocess: PreprocessConfig,
                  face: tuple[float, float] | None, max_alignment_error: float,
                  min_run_frames: int) -> FaceAnalysis:
    """Pass 1: track, split into shots, align each run of tracked frames, flag what to pass through."""
    track, cuts, scale, timings = track_main_face(path, info, fps, preprocess, face)
    t0 = time.perf_counter()
    n = len(track)
    landmarks = np.zeros((n, 68, 2), np.float32)
    affines = np.tile(np.eye(2, 3, dtype=np.float32), (n, 1, 1))
    reasons = np.where(track.valid, DUB, "no_face").astype(object)
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):  # smoothing never crosses a cut
        for s, e in _runs(track.valid[a:b]):
            s, e = a + s, a + e
            if e - s < min_run_frames:
                reasons[s:e] = "short_track"
                continue
            run = smooth_track(track.slice(s, e), preprocess.face.smooth_sigma)
            lm = run.landmarks / scale  # original pixels
            landmarks[s:e], affines[s:e] = lm, estimate_transforms(lm, preprocess.align)
    bad = (reasons == DUB) & (alignment_error(landmarks, affines, preprocess) > max_alignment_error)
    reasons[bad] = "alignment_failed"
    usable = reasons == DUB
    reasons[usable] = PASS
    timings["faces"] += time.perf_counter() - t0
    return FaceAnalysis(landmarks, affines, usable, reasons.astype(str), cuts, track.face_counts, timings)
