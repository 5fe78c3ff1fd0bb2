"""encode_mp4 writes what a player and our decoders expect, refuses what H.264 cannot hold, and
never leaves half-written files behind; FLAC/WAV helpers round-trip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from preprocessing.encode import decode_flac, encode_flac, encode_m4a, encode_mp4, write_wav
from tests.fixtures.ffprobe import ffprobe_streams


def _probe(path: Path) -> dict:
    entries = "codec_type,codec_name,width,height,r_frame_rate,nb_read_frames,pix_fmt,duration,sample_rate"
    return {s["codec_type"]: s for s in ffprobe_streams(path, entries, count_frames=True)}


def _frames(n: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    """[n, h, w, 3] uint8 RGB: flat colours that change per frame (easy to check after H.264)."""
    t = np.arange(n, dtype=np.float32)[:, None, None, None]
    base = np.array([200.0, 60.0, 30.0], np.float32)
    return np.broadcast_to(np.clip(base + 4 * t, 0, 255), (n, h, w, 3)).astype(np.uint8)


def test_mp4_round_trip(tmp_path: Path) -> None:
    frames = _frames()
    audio = (0.3 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000)).astype(np.float32)  # 0.5 s
    out = tmp_path / "clip.mp4"
    encode_mp4(frames, 25, out, audio=audio)
    streams = _probe(out)
    video, sound = streams["video"], streams["audio"]
    assert (video["codec_name"], video["pix_fmt"], video["width"], video["height"]) == (
        "h264",
        "yuv420p",
        64,
        48,
    )
    assert video["r_frame_rate"] == "25/1" and int(video["nb_read_frames"]) == 12
    assert sound["codec_name"] == "aac" and float(sound["duration"]) == pytest.approx(0.5, abs=0.05)
    cap = cv2.VideoCapture(str(out))
    ok, first = cap.read()
    cap.release()
    assert ok and np.abs(first[..., ::-1].astype(int) - frames[0]).mean() < 4  # RGB in, RGB out
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temp files left


def test_streams_frames_from_an_iterator(tmp_path: Path) -> None:
    out = tmp_path / "stream.mp4"
    encode_mp4((f for f in _frames(30)), 30.0, out)
    streams = _probe(out)
    assert set(streams) == {"video"}
    assert (
        int(streams["video"]["nb_read_frames"]) == 30 and streams["video"]["r_frame_rate"] == "30/1"
    )


def test_odd_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        encode_mp4(_frames(h=47), 25, tmp_path / "odd.mp4")
    with pytest.raises(ValueError, match="uint8"):
        encode_mp4(_frames().astype(np.float32), 25, tmp_path / "float.mp4")
    assert list(tmp_path.iterdir()) == []


def test_failures_leave_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="ffmpeg failed"):
        encode_mp4(
            _frames(),
            25,
            tmp_path / "bad_codec.mp4",
            audio=np.zeros(800, np.float32),
            audio_codec="no_such_codec",
        )
    mixed = [*_frames(3), np.zeros((50, 64, 3), np.uint8)]  # size changes mid-stream
    with pytest.raises(ValueError, match="one size"):
        encode_mp4(iter(mixed), 25, tmp_path / "mixed.mp4")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_an_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "keep.mp4"
    encode_mp4(_frames(), 25, out)
    before = out.read_bytes()
    with pytest.raises(RuntimeError):
        encode_mp4(_frames(), 25, out, audio=np.zeros(800, np.float32), audio_codec="no_such_codec")
    assert out.read_bytes() == before


def test_audio_only_m4a(tmp_path: Path) -> None:
    out = tmp_path / "speech.m4a"
    encode_m4a(np.zeros(16000, np.float32), out)
    assert set(_probe(out)) == {"audio"}


def test_flac_and_wav_round_trip(tmp_path: Path) -> None:
    audio = np.random.default_rng(0).uniform(-0.9, 0.9, 4000).astype(np.float32)
    decoded, sr = decode_flac(encode_flac(audio, 16000))
    assert sr == 16000 and decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, audio, atol=0.5 / 32768 + 1e-7)
    write_wav(tmp_path / "a.wav", audio, 22050)
    wav, wav_sr = sf.read(str(tmp_path / "a.wav"), dtype="float32")
    assert wav_sr == 22050
    np.testing.assert_allclose(wav, audio, atol=0.5 / 32768 + 1e-7)
