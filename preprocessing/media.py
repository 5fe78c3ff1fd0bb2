"""Probe and decode one media file: video frames (decord, batched) and 16 kHz mono audio (ffmpeg).

Every failure a user's file can cause surfaces as `MediaError` with a machine-readable `reason`,
so the curation job can record it as a reject reason instead of crashing.
Encoding lives in `preprocessing/encode.py`.
"""

from __future__ import annotations

import json
import math
import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2  # noqa: F401  (before decord: with decord imported first, cv2.imread of a PNG fails)
import decord
import numpy as np

_PROBE_TIMEOUT_S = 60


class MediaError(Exception):
    """A media file that cannot be used; `reason` is a stable code, the message one human line."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    fps: float  # average frame rate of the video stream (0.0 without video)
    width: int  # display width (after rotation)
    height: int  # display height (after rotation)
    rotation: int  # degrees from the display matrix, one of 0/90/180/270
    n_frames: int  # source frames (stream count, or duration x fps when the container has none)
    has_video: bool
    has_audio: bool
    variable_fps: bool
    codec: str | None  # video codec name
    start_s: float = 0.0  # video stream start on the container timeline (iter_frames' time zero)


def _rate(text: str | None) -> float:
    try:
        value = Fraction(text or "0/1")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(value) if value.denominator else 0.0


def _rotation(stream: dict) -> int:
    rot = stream.get("tags", {}).get("rotate")
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            rot = side["rotation"]
    try:
        return int(round(float(rot or 0))) % 360
    except ValueError:
        return 0


def _ffprobe(path: Path) -> dict:
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaError("unreadable", f"{path}: ffprobe timed out") from exc
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown error"]
        raise MediaError("corrupt", f"{path}: not a readable media file ({detail[0][:160]})")
    return json.loads(proc.stdout or b"{}")


def probe(path: str | Path) -> MediaInfo:
    """Read container/stream metadata with ffprobe.

    Raises MediaError: "missing_file", "empty_file", "corrupt" (ffprobe cannot parse it) or
    "no_streams" (neither video nor audio). A file with audio only probes fine (has_video=False).
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError("missing_file", f"{path}: no such file")
    if path.stat().st_size == 0:
        raise MediaError("empty_file", f"{path}: file is empty (0 bytes)")
    meta = _ffprobe(path)
    streams = meta.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    if video is None and not has_audio:
        raise MediaError("no_streams", f"{path}: no video or audio stream")
    duration = float(meta.get("format", {}).get("duration") or 0.0)
    if video is None:
        return MediaInfo(duration, 0.0, 0, 0, 0, 0, False, True, False, None)
    avg, real = _rate(video.get("avg_frame_rate")), _rate(video.get("r_frame_rate"))
    fps = avg or real
    duration = float(video.get("duration") or duration)
    n_frames = int(video.get("nb_frames") or 0) or int(round(duration * fps))
    rotation = _rotation(video)
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if rotation in (90, 270):
        width, height = height, width
    variable = bool(avg and real and abs(avg - real) / real > 0.01)
    return MediaInfo(duration, fps, width, height, rotation, n_frames, True, has_audio, variable,
                     video.get("codec_name"), float(video.get("start_time") or 0.0))


def _decord_message(exc: Exception) -> str:
    """decord's error text without its '[hh:mm:ss] /src/file.cc:123: ' prefix, one line."""
    line = (str(exc).strip().splitlines() or ["unknown error"])[-1]
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", line)[:160]


def _open_reader(path: Path, info: MediaInfo, max_side: int | None, num_threads: int):
    """decord reader; decord applies the rotation itself and takes width/height after rotation."""
    width, height = -1, -1
    if max_side and max(info.width, info.height) > max_side:
        scale = max_side / max(info.width, info.height)
        width = max(2, int(round(info.width * scale / 2)) * 2)
        height = max(2, int(round(info.height * scale / 2)) * 2)
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height,
                                  num_threads=num_threads)
    except (RuntimeError, decord.DECORDError) as exc:
        raise MediaError("unreadable", f"{path}: video stream cannot be decoded ({_decord_message(exc)})") from exc


def resample_indices(timestamps_s: np.ndarray, fps: float, duration_s: float) -> np.ndarray:
    """Source frame index shown at each target time k / fps (the last frame with pts <= t).

    Works for constant and variable frame rate: duplicates frames to upsample, skips to downsample.
    Returns [N] int64 with N = floor(duration * fps).
    """
    n_target = int(math.floor(duration_s * fps + 1e-6))
    times = np.arange(n_target) / fps  # [N] seconds
    start = timestamps_s[0] if len(timestamps_s) else 0.0
    idx = np.searchsorted(timestamps_s - start, times + 1e-6, side="right") - 1
    return np.clip(idx, 0, max(len(timestamps_s) - 1, 0)).astype(np.int64)


def iter_frames(path: str | Path, *, fps: float = 25.0, batch_size: int = 32,
                max_side: int | None = None, num_threads: int = 0,
                info: MediaInfo | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (target indices [B] int64, frames [B, H, W, 3] uint8 RGB) resampled to `fps`.

    Only `batch_size` frames are decoded at a time (4K inputs stay bounded); `max_side` downscales
    inside the decoder. Raises MediaError ("no_video_stream", "unreadable", "decode_failed").
    """
    path = Path(path)
    info = info or probe(path)
    if not info.has_video:
        raise MediaError("no_video_stream", f"{path}: no video stream")
    reader = _open_reader(path, info, max_side, num_threads)
    n_src = len(reader)
    if n_src == 0:
        raise MediaError("unreadable", f"{path}: video stream has no frames")
    stamps = reader.get_frame_timestamp(np.arange(n_src)).astype(np.float64)  # [n_src, 2] start/end s
    span = float(stamps[-1, 1] - stamps[0, 0])  # the video stream's own duration
    src_idx = resample_indices(stamps[:, 0], fps, span)
    for start in range(0, len(src_idx), batch_size):
        wanted = src_idx[start:start + batch_size]
        unique, inverse = np.unique(wanted, return_inverse=True)
        try:
            decoded = reader.get_batch(unique.tolist()).asnumpy()  # [U, H, W, 3] uint8 RGB
        except (RuntimeError, decord.DECORDError) as exc:
            raise MediaError("decode_failed", f"{path}: decoding failed near frame {unique[0]} "
                                              f"({_decord_message(exc)})") from exc
        if len(unique) < len(wanted):  # upsampling: repeat frames (a copy only in this case)
            decoded = decoded[inverse]
        yield np.arange(start, start + len(wanted), dtype=np.int64), decoded


def load_audio(path: str | Path, sample_rate: int = 16000, info: MediaInfo | None = None) -> np.ndarray:
    """Decode the first audio stream to [N] float32 mono at `sample_rate` (ffmpeg resampler).

    Time zero is the first video frame, iter_frames' zero, whenever the streams start: an audio
    stream that starts late is preceded by silence (ffmpeg's aresample places the samples on
    the container timeline: `first_pts=0` pads the lead-in, `async` fills gaps), and the part
    before a late-starting video is dropped. Without this, audio starting 0.3 s after the video
    came out 0.3 s early, lips 7 frames behind their sound.
    Raises MediaError("no_audio_stream") or MediaError("audio_decode_failed").
    """
    path = Path(path)
    info = info or probe(path)
    if not info.has_audio:
        raise MediaError("no_audio_stream", f"{path}: no audio stream")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-vn",
           "-af", "aresample=async=1:first_pts=0", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaError("audio_decode_failed", f"{path}: audio decode timed out") from exc
    if proc.returncode != 0 and not proc.stdout:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown error"]
        raise MediaError("audio_decode_failed", f"{path}: audio cannot be decoded ({detail[0][:160]})")
    usable = len(proc.stdout) // 4 * 4
    audio = np.frombuffer(proc.stdout[:usable], dtype="<f4").astype(np.float32)
    return audio[max(0, round(info.start_s * sample_rate)):]  # [N] from the first video frame


def prefetch(batches: Iterator, depth: int = 2) -> Iterator:
    """Run `batches` in a background thread, `depth` items ahead (bounded memory).

    decord and ffmpeg release the GIL while decoding, so the next batch decodes while the caller
    tracks faces on the current one. Exceptions (MediaError...) are re-raised in the caller.
    """
    if depth <= 0:
        yield from batches
        return
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        items.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(("end", done))
        except BaseException as exc:  # noqa: BLE001  handed to the consumer
            items.put(("error", exc))

    thread = threading.Thread(target=work, name="decode-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=5)


class FrameReader:
    """Random access to a video's frames on a constant-rate grid of `fps` (dubbing reads frames
    in any order: ping-pong and loop timelines, reference frames).

    Frame k is the source frame shown at time k / fps (`resample_indices`), so variable-frame-rate
    inputs come out on a regular grid. Decoding is bounded by the indices asked for per call.
    """

    def __init__(self, path: str | Path, fps: float, *, max_side: int | None = None,
                 num_threads: int = 0, info: MediaInfo | None = None):
        self.path = Path(path)
        info = info or probe(self.path)
        if not info.has_video:
            raise MediaError("no_video_stream", f"{self.path}: no video stream")
        self._reader = _open_reader(self.path, info, max_side, num_threads)
        n_src = len(self._reader)
        if n_src == 0:
            raise MediaError("unreadable", f"{self.path}: video stream has no frames")
        stamps = self._reader.get_frame_timestamp(np.arange(n_src)).astype(np.float64)
        self._src = resample_indices(stamps[:, 0], fps, float(stamps[-1, 1] - stamps[0, 0]))

    def __len__(self) -> int:
        return len(self._src)

    @property
    def source_indices(self) -> np.ndarray:
        """[N] int64: the decoded frame (presentation order) shown at each grid index."""
        return self._src

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Frames at grid indices [B] (any order, repeats allowed) -> [B, H, W, 3] uint8 RGB."""
        wanted = self._src[np.asarray(indices, np.int64)]
        unique, inverse = np.unique(wanted, return_inverse=True)
        try:
            decoded = self._reader.get_batch(unique.tolist()).asnumpy()  # [U, H, W, 3]
        except (RuntimeError, decord.DECORDError) as exc:
            raise MediaError("decode_failed", f"{self.path}: decoding failed near frame {unique[0]} "
                                              f"({_decord_message(exc)})") from exc
        return decoded if len(unique) == len(wanted) and (np.diff(wanted) > 0).all() else decoded[inverse]
