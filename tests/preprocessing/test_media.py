"""Probe/decode on real ffmpeg-made files: every bad input is a typed MediaError."""

from __future__ import annotations

import cv2  # noqa: F401  (before decord)
import decord
import numpy as np
import pytest

from preprocessing.media import MediaError, iter_frames, load_audio, probe, resample_indices
from tests.fixtures.media import ffmpeg, make_testsrc_clip


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    make_testsrc_clip(d / "ok.mp4")
    make_testsrc_clip(d / "silent_video.mp4", audio=False)
    make_testsrc_clip(d / "big.mp4", size="1920x1080", rate=25, seconds=0.4, audio=False)
    ffmpeg("-i", str(d / "ok.mp4"), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(d / "rot.mp4"))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=1.5", "-c:a", "aac",
           str(d / "audio_only.m4a"))
    make_testsrc_clip(d / "vfr.mp4", audio=False,
                 extra=("-vf", "setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'", "-fps_mode", "passthrough"))
    (d / "empty.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    (d / "truncated.mp4").write_bytes((d / "ok.mp4").read_bytes()[:20_000])
    return d


def test_probe_reads_stream_facts(media_dir):
    info = probe(media_dir / "ok.mp4")
    assert (info.width, info.height, info.fps, info.n_frames) == (320, 240, 30.0, 60)
    assert info.has_video and info.has_audio and not info.variable_fps
    assert info.codec == "h264" and info.rotation == 0
    assert info.duration_s == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("name, reason", [("empty.mp4", "empty_file"), ("random.mp4", "corrupt"),
                                          ("truncated.mp4", "corrupt"), ("nope.mp4", "missing_file")])
def test_bad_files_raise_typed_errors(media_dir, name, reason):
    with pytest.raises(MediaError) as err:
        probe(media_dir / name)
    assert err.value.reason == reason
    assert "\n" not in str(err.value)


def test_audio_only_has_no_video_stream(media_dir):
    info = probe(media_dir / "audio_only.m4a")
    assert not info.has_video and info.has_audio
    with pytest.raises(MediaError) as err:
        next(iter_frames(media_dir / "audio_only.m4a"))
    assert err.value.reason == "no_video_stream"


def test_missing_audio_is_typed(media_dir):
    with pytest.raises(MediaError) as err:
        load_audio(media_dir / "silent_video.mp4")
    assert err.value.reason == "no_audio_stream"


def test_resample_30_to_25_maps_indices_without_reencode(media_dir):
    path = media_dir / "ok.mp4"
    source = decord.VideoReader(str(path)).get_batch(list(range(60))).asnumpy()  # [60, H, W, 3]
    batches = list(iter_frames(path, fps=25.0, batch_size=8))
    assert all(len(idx) <= 8 for idx, _ in batches)
    idx = np.concatenate([i for i, _ in batches])
    frames = np.concatenate([f for _, f in batches])
    assert frames.dtype == np.uint8 and frames.shape == (50, 240, 320, 3)
    np.testing.assert_array_equal(idx, np.arange(50))
    expected = source[np.floor(np.arange(50) * 30 / 25 + 1e-6).astype(int)]
    np.testing.assert_array_equal(frames, expected)


def test_rotation_is_applied_and_reported(media_dir):
    info = probe(media_dir / "rot.mp4")
    assert info.rotation in (90, 270) and (info.width, info.height) == (240, 320)
    _, frames = next(iter_frames(media_dir / "rot.mp4", batch_size=4))
    assert frames.shape == (4, 320, 240, 3)


def test_max_side_downscales_inside_the_decoder(media_dir):
    _, frames = next(iter_frames(media_dir / "big.mp4", batch_size=4, max_side=640))
    assert frames.shape == (4, 360, 640, 3)


def test_variable_fps_is_resampled_on_timestamps(media_dir):
    info = probe(media_dir / "vfr.mp4")
    assert info.variable_fps
    n = sum(len(i) for i, _ in iter_frames(media_dir / "vfr.mp4", fps=25.0))
    # 30 frames over 1 s then 30 frames at 10 fps: ~4 s of video -> ~100 frames at 25 fps
    assert 95 <= n <= 101


def test_load_audio_is_16k_mono_float32(media_dir):
    audio = load_audio(media_dir / "ok.mp4")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 32000) < 1600
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.fft.rfftfreq(len(audio), 1 / 16000)[spectrum.argmax()] == pytest.approx(440, abs=5)


def test_resample_indices_up_and_down():
    stamps = np.arange(50) / 50.0  # 50 fps source, 1 s
    np.testing.assert_array_equal(resample_indices(stamps, 25.0, 1.0), np.arange(0, 50, 2))
    stamps = np.arange(10) / 10.0  # 10 fps source: each frame shown 2-3 times
    idx = resample_indices(stamps, 25.0, 1.0)
    assert len(idx) == 25 and idx[0] == 0 and idx[-1] == 9 and np.all(np.diff(idx) >= 0)


def test_prefetch_yields_the_same_batches_and_reraises(media_dir):
    from preprocessing.media import prefetch

    direct = [f for _, f in iter_frames(media_dir / "ok.mp4", batch_size=8)]
    ahead = [f for _, f in prefetch(iter_frames(media_dir / "ok.mp4", batch_size=8), depth=2)]
    assert len(direct) == len(ahead)
    for a, b in zip(direct, ahead, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(MediaError) as err:
        list(prefetch(iter_frames(media_dir / "audio_only.m4a"), depth=2))
    assert err.value.reason == "no_video_stream"
    stream = prefetch(iter_frames(media_dir / "ok.mp4", batch_size=4), depth=1)
    next(stream)
    stream.close()  # stopping early must not hang on the full queue
