"""Keep/reject filters with one signature: `filter(candidate) -> FilterResult(keep, reason, score)`.

Video filters judge the probe (`MediaInfo`: they run before a frame is decoded); every clip filter,
the A/V sync filter included, judges a `Clip` (the sync filter reads the Whisper rows the curation
job attaches to it). The curation job records `reason` (a stable code) and `score` for the dataset
report. Scene cuts are a splitter, not a filter: `preprocessing.scenes`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import cv2
import numpy as np

from preprocessing.clip import Clip
from preprocessing.config import FilterConfig
from preprocessing.media import MediaInfo

if TYPE_CHECKING:
    from iptalker_model.syncnet import SyncNet

C = TypeVar("C", MediaInfo, Clip)


@dataclass(frozen=True)
class FilterResult:
    keep: bool
    reason: str | None  # machine-readable reject code, None when kept
    score: float  # the measured value the decision was made on

    @classmethod
    def ok(cls, score: float) -> FilterResult:
        return cls(True, None, float(score))

    @classmethod
    def reject(cls, reason: str, score: float) -> FilterResult:
        return cls(False, reason, float(score))


VideoFilter = Callable[[MediaInfo], FilterResult]
ClipFilter = Callable[[Clip], FilterResult]


def run_filters(filters: Sequence[tuple[str, Callable[[C], FilterResult]]], candidate: C) -> tuple[FilterResult, dict[str, float]]:
    """Apply named filters in order; stop at the first reject. Returns (verdict, {name: score})."""
    scores: dict[str, float] = {}
    for name, flt in filters:
        result = flt(candidate)
        scores[name] = result.score
        if not result.keep:
            return result, scores
    return FilterResult.ok(1.0), scores


# --- video filters (MediaInfo) ---------------------------------------------------------------
@dataclass(frozen=True)
class DurationFilter:
    min_s: float
    max_s: float | None = None

    def __call__(self, info: MediaInfo) -> FilterResult:
        if info.duration_s < self.min_s:
            return FilterResult.reject("too_short", info.duration_s)
        if self.max_s is not None and info.duration_s > self.max_s:
            return FilterResult.reject("too_long", info.duration_s)
        return FilterResult.ok(info.duration_s)


@dataclass(frozen=True)
class FpsFilter:
    min_fps: float
    max_fps: float

    def __call__(self, info: MediaInfo) -> FilterResult:
        if not self.min_fps <= info.fps <= self.max_fps:
            return FilterResult.reject("bad_fps", info.fps)
        return FilterResult.ok(info.fps)


@dataclass(frozen=True)
class ResolutionFilter:
    min_side: int
    max_pixels: int | None = None

    def __call__(self, info: MediaInfo) -> FilterResult:
        side = min(info.width, info.height)
        if side < self.min_side:
            return FilterResult.reject("low_resolution", side)
        if self.max_pixels is not None and info.width * info.height > self.max_pixels:
            return FilterResult.reject("resolution_too_high", side)
        return FilterResult.ok(side)


@dataclass(frozen=True)
class AudioStreamFilter:
    def __call__(self, info: MediaInfo) -> FilterResult:
        return FilterResult.ok(1.0) if info.has_audio else FilterResult.reject("no_audio_stream", 0.0)


def video_filters(cfg: FilterConfig) -> list[tuple[str, VideoFilter]]:
    return [("duration", DurationFilter(cfg.min_duration_s, cfg.max_duration_s)),
            ("fps", FpsFilter(cfg.min_fps, cfg.max_fps)),
            ("resolution", ResolutionFilter(cfg.min_side, cfg.max_pixels)),
            ("audio", AudioStreamFilter())]


# --- clip filters (Clip) ----------------------------------------------------------------------
@dataclass(frozen=True)
class ClipLengthFilter:
    min_frames: int

    def __call__(self, clip: Clip) -> FilterResult:
        n = clip.end_frame - clip.start_frame
        return FilterResult.ok(n) if n >= self.min_frames else FilterResult.reject("clip_too_short", n)


@dataclass(frozen=True)
class FaceCountFilter:
    """One face throughout: a face on every keyframe, and no second face that persists.

    `clip.face_counts` [K] counts the main face plus faces of comparable size (the tracker drops
    small ones); a second face must be on at least `min_share` of the keyframes (and two or
    more) to reject the clip. Score = faces that count (1, or the most seen on a keyframe).
    """

    min_share: float = 0.3

    def __call__(self, clip: Clip) -> FilterResult:
        counts = np.asarray(clip.face_counts)
        if counts.size == 0 or counts.min() == 0:
            return FilterResult.reject("no_face", 0)
        crowded = int((counts > 1).sum())
        if crowded >= max(2, self.min_share * counts.size):
            return FilterResult.reject("multiple_faces", counts.max())
        return FilterResult.ok(1)


@dataclass(frozen=True)
class FaceSizeFilter:
    min_size: float  # face width in source pixels

    def __call__(self, clip: Clip) -> FilterResult:
        ok = clip.face_size >= self.min_size
        return FilterResult.ok(clip.face_size) if ok else FilterResult.reject("face_too_small", clip.face_size)


def mouth_sharpness(crops: np.ndarray, landmarks: np.ndarray, step: int = 5) -> float:
    """Median variance of Laplacian over the mouth box of every `step`-th crop [T, S, S, 3]."""
    values = []
    for crop, lm in zip(crops[::step], landmarks[::step], strict=True):
        lo, hi = lm[48:68].min(0), lm[48:68].max(0)
        pad = 0.25 * (hi - lo)
        x0, y0 = np.maximum((lo - pad).astype(int), 0)
        x1, y1 = np.minimum((hi + pad).astype(int) + 1, crop.shape[1::-1])
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        gray = cv2.cvtColor(crop[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        values.append(cv2.Laplacian(gray, cv2.CV_64F).var())
    return float(np.median(values)) if values else 0.0


@dataclass(frozen=True)
class BlurFilter:
    min_variance: float

    def __call__(self, clip: Clip) -> FilterResult:
        score = mouth_sharpness(clip.crops, clip.landmarks)
        return FilterResult.ok(score) if score >= self.min_variance else FilterResult.reject("blurry", score)


@dataclass(frozen=True)
class SilenceFilter:
    min_rms_db: float

    def __call__(self, clip: Clip) -> FilterResult:
        rms = float(np.sqrt(np.mean(np.square(clip.audio, dtype=np.float64)))) if clip.audio.size else 0.0
        db = 20 * np.log10(max(rms, 1e-10))
        return FilterResult.ok(db) if db >= self.min_rms_db else FilterResult.reject("silent_audio", db)


def clip_filters(cfg: FilterConfig, min_frames: int) -> list[tuple[str, ClipFilter]]:
    """Clip filters in cost order (cheap ones first). The sync filter runs later, with Whisper rows."""
    return [("length", ClipLengthFilter(min_frames)), ("face_count", FaceCountFilter(cfg.multiple_faces_min_share)),
            ("face_size", FaceSizeFilter(cfg.min_face_size)), ("audio_level", SilenceFilter(cfg.min_audio_rms_db)),
            ("blur", BlurFilter(cfg.min_blur))]


# --- A/V sync (needs Whisper rows: runs in the curation job after the feature actor pool) -----
class SyncFilter:
    """Reject clips whose lips do not follow the audio, using a trained SyncNet expert.

    Reads `clip.crops` and `clip.whisper` ([2T, D]); a clip without Whisper rows is unmeasurable.
    Score = LSE-C style confidence; the offset goes to `clip.scores["sync_offset"]`. The caller
    loads the expert (the curation job's Whisper actor, once per actor).
    """

    def __init__(self, syncnet: SyncNet, min_confidence: float = 0.25, max_offset: int = 3, search: int = 5):
        self.syncnet = syncnet.eval()
        self.min_confidence, self.max_offset, self.search = min_confidence, max_offset, search

    def measure(self, crops: np.ndarray, whisper_rows: np.ndarray) -> tuple[int, float]:
        """crops [T, S, S, 3] uint8 RGB, whisper_rows [2T, D] -> (offset in frames, confidence)."""
        import torch  # lazy: only this filter needs torch

        from iptalker_model.syncnet import sync_offset_confidence

        frames = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        rows = torch.from_numpy(np.asarray(whisper_rows, np.float32))
        return sync_offset_confidence(self.syncnet, frames, rows, max_offset=self.search)

    def __call__(self, clip: Clip) -> FilterResult:
        rows = clip.whisper
        needed = self.syncnet.cfg.sync_frames + 2 * self.search
        if rows is None or clip.n_frames < needed or len(rows) < 2 * clip.n_frames:
            return FilterResult.reject("sync_unmeasurable", clip.n_frames)
        offset, confidence = self.measure(clip.crops, rows[:2 * clip.n_frames])
        clip.scores["sync_offset"] = float(offset)
        if abs(offset) > self.max_offset:
            return FilterResult.reject("av_offset", confidence)
        if confidence < self.min_confidence:
            return FilterResult.reject("low_sync_confidence", confidence)
        return FilterResult.ok(confidence)
