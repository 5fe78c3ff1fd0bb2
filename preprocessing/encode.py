"""Write media: the one place that runs ffmpeg to encode mp4/m4a, plus in-memory FLAC and WAV.

Curation's shard writer, the dubbing step and the synthetic generator all encode through here so
that codec settings (H.264 yuv420p + faststart, AAC) and failure handling live in one spot.
Outputs are written to a temporary name in the destination folder and renamed, so a reader never
sees a half-written file and a failure leaves nothing behind.
"""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

_STDERR_LINES = 15  # how much of ffmpeg's stderr a RuntimeError quotes


def _check_frame(frame: np.ndarray, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """Validate one [H, W, 3] uint8 frame; even sizes are required by yuv420p."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frames must be [H, W, 3] uint8 RGB, got {frame.shape} {frame.dtype}")
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even frame sizes, got {w}x{h}")
    if shape is not None and frame.shape != shape:
        raise ValueError(f"all frames must share one size: {frame.shape} != {shape}")
    return frame.shape


def _audio_pcm(audio: np.ndarray) -> np.ndarray:
    """float [-1, 1] mono -> int16 little-endian samples (what ffmpeg's s16le reader expects)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [N], got shape {audio.shape}")
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(
        "<i2"
    )  # readers divide by 32768


def _temp_path(out_path: Path) -> Path:
    fd, name = tempfile.mkstemp(
        prefix=f".{out_path.stem}.", suffix=out_path.suffix, dir=out_path.parent
    )
    os.close(fd)
    return Path(name)


def _run_ffmpeg(
    args: list[str], tmp: Path, out_path: Path, feed: Iterator[bytes] | None = None
) -> None:
    """Run ffmpeg writing `tmp`, stream `feed` to its stdin, then rename `tmp` to `out_path`."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args, str(tmp)]
    if feed is not None:
        cmd.remove("-nostdin")
    err_file = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if feed is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
        )
        try:
            if feed is not None:
                assert proc.stdin is not None
                try:
                    for chunk in feed:
                        proc.stdin.write(chunk)
                except BrokenPipeError:
                    pass  # ffmpeg died; its stderr says why
                finally:
                    proc.stdin.close()
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if rc != 0:
            err_file.seek(0)
            tail = err_file.read().decode(errors="replace").strip().splitlines()[-_STDERR_LINES:]
            raise RuntimeError(f"ffmpeg failed (exit {rc}) writing {out_path}:\n" + "\n".join(tail))
        os.replace(tmp, out_path)
    finally:
        err_file.close()
        tmp.unlink(missing_ok=True)


def encode_mp4(
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    out_path: Path | str,
    *,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    crf: int = 20,
    preset: str = "veryfast",
    audio_codec: str = "aac",
    setpts: str | None = None,
    audio_delay_s: float = 0.0,
) -> None:
    """Encode RGB frames (+ optional mono audio) to an H.264 yuv420p mp4 with faststart.

    frames: [T, H, W, 3] uint8 RGB, or an iterable of [H, W, 3] frames streamed to ffmpeg
    (bounded memory). H and W must be even (ValueError). audio: [N] float32 in [-1, 1] at
    `sample_rate`, muxed as `audio_codec`. setpts: optional ffmpeg setpts expression that retimes
    frames (used to write variable-frame-rate test inputs). audio_delay_s: the audio stream starts
    this long after the video (its first sample plays then; test inputs for A/V timing). Raises RuntimeError with ffmpeg's last
    stderr lines on failure; the output appears atomically or not at all.
    """
    out_path = Path(out_path)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    frame_iter = iter(frames)
    first = next(frame_iter, None)
    if first is None:
        raise ValueError("encode_mp4 needs at least one frame")
    shape = _check_frame(np.asarray(first), None)
    h, w = shape[:2]

    tmp = _temp_path(out_path)
    audio_file: Path | None = None
    try:
        if audio is not None:
            # A temp WAV input (not a second pipe) keeps this a single-stdin, deadlock-free call.
            audio_file = tmp.with_name(tmp.name + ".wav")
            write_wav(audio_file, audio, sample_rate)
        args = _mp4_args(w, h, fps, audio_file, crf, preset, audio_codec, setpts, audio_delay_s)
        _run_ffmpeg(args, tmp, out_path, _frame_bytes(first, frame_iter, shape))
    finally:
        tmp.unlink(missing_ok=True)
        if audio_file is not None:
            audio_file.unlink(missing_ok=True)


def _mp4_args(
    w: int,
    h: int,
    fps: float,
    audio_file: Path | None,
    crf: int,
    preset: str,
    audio_codec: str,
    setpts: str | None,
    audio_delay_s: float = 0.0,
) -> list[str]:
    """ffmpeg arguments: raw RGB on stdin (+ a WAV file) -> H.264 yuv420p (+ audio) faststart mp4."""
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", _rate(fps)]
    args += ["-i", "pipe:0"]
    if audio_file is not None:
        args += ["-itsoffset", f"{audio_delay_s:.6f}"] if audio_delay_s else []
        args += ["-i", str(audio_file)]
    args += ["-map", "0:v:0"]
    if setpts is not None:
        # A fine time base first, so fractional timestamps survive rounding.
        args += ["-vf", f"settb=1/90000,setpts='{setpts}'", "-fps_mode", "passthrough"]
    args += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]
    if audio_file is not None:
        args += ["-map", "1:a:0", "-c:a", audio_codec, "-b:a", "96k"]
    return args + ["-movflags", "+faststart", "-f", "mp4"]


def _rate(fps: float) -> str:
    """fps as an exact ffmpeg rational: 29.97002997 -> '30000/1001', 25.0 -> '25/1'."""
    frac = Fraction(fps).limit_denominator(1001)
    return f"{frac.numerator}/{frac.denominator}"


def _frame_bytes(
    first: np.ndarray, rest: Iterator[np.ndarray], shape: tuple[int, ...]
) -> Iterator[bytes]:
    """Raw rgb24 bytes of each frame, checking that the size never changes mid-stream."""
    for frame in itertools.chain([first], rest):
        frame = np.asarray(frame)
        _check_frame(frame, shape)
        yield np.ascontiguousarray(frame).tobytes()


def encode_m4a(
    audio: np.ndarray, out_path: Path | str, sample_rate: int = 16000, audio_codec: str = "aac"
) -> None:
    """Write an audio-only AAC file (.m4a / .mp4 container) atomically. audio: [N] float32 mono."""
    out_path = Path(out_path)
    tmp = _temp_path(out_path)
    wav = tmp.with_name(tmp.name + ".wav")
    try:
        write_wav(wav, audio, sample_rate)
        _run_ffmpeg(
            [
                "-i",
                str(wav),
                "-map",
                "0:a:0",
                "-c:a",
                audio_codec,
                "-b:a",
                "96k",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
            ],
            tmp,
            out_path,
        )
    finally:
        wav.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


def write_wav(path: Path | str, audio: np.ndarray, sample_rate: int) -> None:
    """Write [N] float32 mono in [-1, 1] as 16-bit PCM WAV."""
    sf.write(str(path), _audio_pcm(audio), int(sample_rate), subtype="PCM_16", format="WAV")


def encode_flac(audio: np.ndarray, sample_rate: int = 16000) -> bytes:
    """[N] float32 mono in [-1, 1] -> FLAC bytes (16-bit, lossless for the shard's audio)."""
    buf = io.BytesIO()
    sf.write(buf, _audio_pcm(audio), int(sample_rate), subtype="PCM_16", format="FLAC")
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    """FLAC bytes -> ([N] float32 mono in [-1, 1], sample_rate); multichannel is averaged."""
    audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return audio.mean(axis=1).astype(np.float32), int(sr)


def mux_audio(video_path: Path | str, audio_path: Path | str, out_path: Path | str, duration_s: float,
              *, audio_codec: str = "aac", bitrate: str = "160k") -> None:
    """Copy the video stream of `video_path` and add the first audio stream of `audio_path`, cut or
    silence-padded to exactly `duration_s`, into an mp4 (faststart), atomically.

    The audio is read by ffmpeg from the file itself (its own rate and channels, no 16 kHz round
    trip) and never held in Python memory, whatever its length.
    """
    out_path = Path(out_path)
    tmp = _temp_path(out_path)
    args = ["-i", str(video_path), "-i", str(audio_path), "-map", "0:v:0", "-map", "1:a:0",
            "-c:v", "copy", "-af", "apad", "-c:a", audio_codec, "-b:a", bitrate,
            "-t", f"{duration_s:.6f}", "-movflags", "+faststart", "-f", "mp4"]
    _run_ffmpeg(args, tmp, out_path)
