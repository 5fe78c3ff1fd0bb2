"""One video -> aligned, filtered face clips: the per-video recipe the curation job calls.

    1. probe            media.probe + video filters (duration, fps, resolution, audio stream)
    2. decode           media.iter_frames: 25 fps, batched, downscaled to media.max_side
    3. shots            split at scene cuts and every clips.max_frames; keep face regions only
    4. track            faces.FaceTracker: detector on keyframes, 68 landmarks on every frame
    5. align            align.estimate_transforms + warp_to_crop per run of tracked frames
    6. filter           filters.clip_filters (length, one face, face size, audio level, blur)

Scene cuts: scenes.is_cut; the `Clip` record: clip.py.

Nothing raises for a bad input: every failure ends as a reject reason in `VideoOutcome`.
Whisper features and the A/V sync filter run later, in the curation job's actor pool.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from preprocessing.align import (
    crop_bounds,
    estimate_transforms,
    shift_affine,
    transform_points,
    warp_to_crop,
)
from preprocessing.clip import Clip
from preprocessing.config import PreprocessConfig
from preprocessing.faces import (
    FaceDetector,
    FaceTrack,
    FaceTracker,
    concat_tracks,
    smooth_track,
    valid_runs,
)
from preprocessing.filters import clip_filters, run_filters, video_filters
from preprocessing.media import MediaError, MediaInfo, iter_frames, load_audio, prefetch, probe
from preprocessing.scenes import content_scores, is_cut

__all__ = ["Clip", "VideoOutcome", "extract_clips", "iter_shots", "stream_clips"]

log = logging.getLogger(__name__)


@dataclass
class VideoOutcome:
    info: MediaInfo | None
    clips: list[Clip]
    rejected_clips: list[tuple[str, str]]  # (reason, message) per rejected clip candidate
    status: str  # "accepted" | "rejected"
    reason: str | None  # why the whole video was rejected
    message: str | None  # one human line


@dataclass
class _Shot:
    """A run of frames without a cut; keeps only the face region of each frame (not whole frames)."""

    start: int  # first frame index at 25 fps
    track: FaceTrack
    regions: list[np.ndarray | None]  # per frame: [h, w, 3] uint8 RGB copy around the face, or None
    origins: np.ndarray  # [T, 2] float, source (x0, y0) of each region

    def __len__(self) -> int:
        return len(self.track)


def _face_regions(frames: np.ndarray, track: FaceTrack, cfg: PreprocessConfig) -> tuple[list, np.ndarray]:
    """Copy out the part of each frame that its (unsmoothed) crop would sample, with a margin.

    The smoothed transform is only known once the shot ends; holding these regions instead of
    whole frames cuts memory and copy traffic several times (a 720p frame is 2.7 MB).
    """
    raw = estimate_transforms(track.landmarks, dataclasses.replace(cfg.align, smooth_sigma=0.0), track.valid)
    regions, origins = [], np.zeros((len(frames), 2))
    for i, (frame, affine) in enumerate(zip(frames, raw, strict=True)):
        if not track.valid[i]:
            regions.append(None)
            continue
        x0, y0, x1, y1 = crop_bounds(affine, cfg.align.size, frame.shape[:2])
        regions.append(frame[y0:y1, x0:x1].copy())
        origins[i] = x0, y0
    return regions, origins


def _split_points(scores: np.ndarray, start: int, shot_start: int, last_cut: int, cfg: PreprocessConfig) -> list[int]:
    """Offsets inside a batch where a new shot starts: scene cuts and the max clip length."""
    points, shot = [], shot_start
    for i, score in enumerate(scores):
        frame = start + i
        cut = is_cut(score, frame, last_cut, cfg.filters.scene_threshold)
        if cut or frame - shot >= cfg.clips.max_frames:
            points.append(i)
            shot = frame
            last_cut = frame if cut else last_cut
    return points


def decode_scale(info: MediaInfo, cfg: PreprocessConfig) -> float:
    """Decoded pixels per original pixel (media.max_side downscales large inputs)."""
    if cfg.media.max_side and max(info.width, info.height) > cfg.media.max_side:
        return cfg.media.max_side / max(info.width, info.height)
    return 1.0


def iter_shots(path: Path, info: MediaInfo, cfg: PreprocessConfig,
               detector: FaceDetector | None = None) -> Iterator[_Shot]:
    """Decode + track, yielding shots of <= clips.max_frames frames (only one shot in memory)."""
    tracker = FaceTracker(cfg.face, detector, min_face_px=cfg.filters.min_face_size * decode_scale(info, cfg))
    prev_small, shot_start, last_cut = None, 0, -10**9
    tracks: list[FaceTrack] = []
    regions: list[np.ndarray | None] = []
    origins: list[np.ndarray] = []

    def shot() -> _Shot:
        return _Shot(shot_start, concat_tracks(tracks), regions, np.concatenate(origins))

    batches = iter_frames(path, fps=cfg.media.fps, batch_size=cfg.media.batch_size, max_side=cfg.media.max_side,
                          num_threads=cfg.media.num_threads, info=info)
    for idx, frames in prefetch(batches, cfg.media.prefetch_batches):
        scores, prev_small = content_scores(frames, prev_small)  # [B]
        points = _split_points(scores, int(idx[0]), shot_start, last_cut, cfg)
        for a, b in zip([0, *points], [*points, len(frames)], strict=True):
            if a in points:  # a new shot starts at batch offset a
                if tracks:
                    yield shot()
                tracks, regions, origins = [], [], []
                shot_start = int(idx[a])
                if scores[a] > cfg.filters.scene_threshold:
                    last_cut = shot_start
                    tracker.restart()
            if b > a:
                tracks.append(tracker.track(frames[a:b]))
                part_regions, part_origins = _face_regions(frames[a:b], tracks[-1], cfg)
                regions.extend(part_regions)
                origins.append(part_origins)
    if tracks:
        yield shot()


def _audio_slice(audio: np.ndarray, start: int, end: int, fps: float, sr: int) -> np.ndarray:
    a, b = round(start / fps * sr), round(end / fps * sr)
    out = audio[a:b]
    return np.pad(out, (0, (b - a) - len(out))).astype(np.float32)  # [N] zero-padded past the end


def _make_clip(shot: _Shot, a: int, b: int, audio: np.ndarray, cfg: PreprocessConfig, video_id: str,
               scale: float) -> Clip:
    track = smooth_track(shot.track.slice(a, b), cfg.face.smooth_sigma)
    affine = estimate_transforms(track.landmarks, cfg.align, track.valid)  # [T, 2, 3]
    crops = np.stack([warp_to_crop(shot.regions[t], shift_affine(affine[t - a], *shot.origins[t]),
                                   cfg.align.size, cfg.align.interpolation)
                      for t in range(a, b)])  # [T, S, S, 3]
    landmarks = np.stack([transform_points(lm, m) for lm, m in zip(track.landmarks, affine, strict=True)])
    start = shot.start + a
    original = affine.copy()
    original[:, :, :2] *= scale  # crop <- decoded becomes crop <- original pixels
    return Clip(video_id, -1, start, start + (b - a), crops, landmarks.astype(np.float32), original,
                _audio_slice(audio, start, start + (b - a), cfg.media.fps, cfg.media.sample_rate),
                float(np.median(track.face_size)) / scale, cfg.media.fps, track.face_counts, scale)


def stream_clips(path: str | Path, cfg: PreprocessConfig, video_id: str, info: MediaInfo,
                 audio: np.ndarray | Future, detector: FaceDetector | None = None) -> Iterator[Clip | tuple[str, str]]:
    """Yield accepted Clips (numbered 0, 1, ...) and (reason, message) for rejected candidates.

    `audio` is the whole [N] float32 16 kHz track, or a Future of it (decoded while frames decode).
    Memory stays at one decoded batch, one shot of face regions and one clip of crops, whatever
    the video length.
    May raise MediaError (decode failure); extract_clips turns it into a reject.
    """
    filters = clip_filters(cfg.filters, cfg.clips.min_frames)
    scale = decode_scale(info, cfg)
    index = 0
    for shot in iter_shots(Path(path), info, cfg, detector):
        runs = valid_runs(shot.track.valid)
        if not runs:
            yield "no_face", f"frames {shot.start}-{shot.start + len(shot)}: no face found"
        for a, b in runs:
            audio = audio.result() if isinstance(audio, Future) else audio
            clip = _make_clip(shot, a, b, audio, cfg, video_id, scale)
            verdict, clip.scores = run_filters(filters, clip)
            if not verdict.keep:
                yield verdict.reason, f"frames {clip.start_frame}-{clip.end_frame}: {verdict.reason} ({verdict.score:.3g})"
                continue
            clip.index, index = index, index + 1
            yield clip


def _rejected(info: MediaInfo | None, reason: str, message: str, rejected=()) -> VideoOutcome:
    return VideoOutcome(info, [], list(rejected), "rejected", reason, message)


def extract_clips(path: str | Path, cfg: PreprocessConfig, video_id: str,
                  detector: FaceDetector | None = None) -> VideoOutcome:
    """probe -> decode -> track -> align -> split -> filter, for one video. Never raises for bad media.

    The accepted clips are returned in memory (fine for the few-minute videos of a talking-head
    corpus); for hour-long inputs use `stream_clips`, which holds one shot at a time.
    """
    try:
        info = probe(path)
    except MediaError as exc:
        return _rejected(None, exc.reason, str(exc))
    if not info.has_video:
        return _rejected(info, "no_video_stream", f"{path}: no video stream")
    verdict, _ = run_filters(video_filters(cfg.filters), info)
    if not verdict.keep:
        return _rejected(info, verdict.reason, f"{path}: {verdict.reason} ({verdict.score:.3g})")
    clips, rejected = [], []
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="audio") as pool:  # ffmpeg decodes audio meanwhile
            audio = pool.submit(load_audio, path, cfg.media.sample_rate, info)
            for item in stream_clips(path, cfg, video_id, info, audio, detector):
                (clips if isinstance(item, Clip) else rejected).append(item)
    except MediaError as exc:
        return _rejected(info, exc.reason, str(exc), rejected)
    except Exception as exc:  # noqa: BLE001  a curation job must survive any one video
        log.exception("unexpected failure on %s", path)
        detail = " ".join(str(exc).split())[:200]  # one line
        return _rejected(info, "processing_error", f"{path}: {type(exc).__name__}: {detail}", rejected)
    if not clips:
        counts = collections.Counter(reason for reason, _ in rejected)
        reason = counts.most_common(1)[0][0] if counts else "no_clips"
        return _rejected(info, reason, f"{path}: no usable clip ({dict(counts)})", rejected)
    return VideoOutcome(info, clips, rejected, "accepted", None, None)
