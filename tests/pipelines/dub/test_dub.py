"""End to end: ``dub_video`` on real decoded synthetic media with a tiny random-weight bundle.

These check the pipeline's contract (size, frame rate, duration, audio, untouched pixels,
pass-through, length modes), not learning: the learned-sync test needs the trained demo model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.dub.config import DubConfig
from pipelines.dub.job import dub_video
from preprocessing.media import probe
from tests.fixtures.ffprobe import ffprobe_streams
from tests.fixtures.whisper import random_preprocess
from tests.pipelines.dub.conftest import psnr, read_all

pytestmark = pytest.mark.slow


def face_region(sidecar: dict, shape: tuple[int, int], grow: float = 0.5) -> np.ndarray:
    """[H, W] bool: the union over frames of the face box grown by ``grow`` x its size each side."""
    boxes = np.asarray(sidecar["face_box"])  # [T, 4] brows-to-chin landmark boxes
    lo, hi = boxes[:, :2].min(0), boxes[:, 2:].max(0)
    pad = grow * (hi - lo)
    (x0, y0), (x1, y1) = np.floor(lo - pad).astype(int), np.ceil(hi + pad).astype(int)
    region = np.zeros(shape, bool)
    region[max(y0, 0):y1, max(x0, 0):x1] = True
    return region


@pytest.fixture(scope="module")
def main_dub(tmp_path_factory, video_30fps, new_speech, tiny_bundle):
    out = tmp_path_factory.mktemp("main") / "dubbed.mp4"
    report = dub_video(str(video_30fps), str(new_speech), str(out), tiny_bundle,
                       DubConfig(debug_video=True), random_preprocess())
    return out, report


def test_output_keeps_size_and_frame_rate_and_takes_the_new_audio(main_dub, video_30fps, new_speech):
    out, report = main_dub
    src, speech = probe(video_30fps), probe(new_speech)
    video, = ffprobe_streams(out, "codec_type,width,height,avg_frame_rate,nb_frames", count_frames=False)[:1]
    streams = ffprobe_streams(out, "codec_type,duration")
    assert (video["width"], video["height"]) == (src.width, src.height) == (640, 360)
    assert video["avg_frame_rate"] == "30/1"  # a 30 fps input stays 30 fps
    assert [s["codec_type"] for s in streams] == ["video", "audio"]
    for s in streams:  # the new speech's duration, within one frame
        assert abs(float(s["duration"]) - speech.duration_s) <= 1 / 30 + 1e-3
    assert report.length_mode == "cut-video"  # the speech is shorter than the 3 s video
    assert report.frames == round(speech.duration_s * 30) and report.source_frames == 90


def test_only_the_face_changes(main_dub, video_30fps):
    out, report = main_dub
    sidecar = json.loads(video_30fps.with_suffix(".json").read_text())
    src, dub = read_all(video_30fps, 30.0)[: report.frames], read_all(out, 30.0)
    assert dub.shape == src.shape
    face = face_region(sidecar, src.shape[1:3])
    assert psnr(dub, src, ~face) > 40.0  # every pixel outside the face region is the source's
    # ... and the face did change (a pass-through would pass the check above trivially)
    assert psnr(dub, src, face) < 35.0
    assert report.face_coverage > 0.9 and report.dubbed_frames == report.frames


def test_report_and_debug_video(main_dub):
    out, report = main_dub
    saved = json.loads(out.with_suffix(".report.json").read_text())
    assert saved["length_mode"] == "cut-video" and saved["face_coverage"] == report.face_coverage
    assert saved["sync"]["lse_d"] is not None and saved["sync"]["windows"] > 0
    assert 0.0 <= saved["identity"]["identity_distance"] < 2.0 and saved["identity"]["frames"] > 0
    assert {"decode", "faces", "features", "model", "paste", "encode"} <= set(saved["timings"])
    assert len(saved["references"]) == 5
    for who in ("output", "source"):  # mouth activity against the new audio, with the source as baseline
        assert {"silent_mean", "speech_mean", "silence_ratio", "corr"} <= set(saved["mouth"][who])
        assert saved["mouth"][who]["speech_mean"] is not None
    debug = probe(report.debug_video)
    assert debug.n_frames == report.frames and debug.width == 640


def test_faceless_stretch_passes_through_and_the_face_reenters(tmp_path, video_with_gap, new_speech, tiny_bundle):
    path, (g0, g1) = video_with_gap
    out = tmp_path / "gap.mp4"
    report = dub_video(str(path), str(new_speech), str(out), tiny_bundle, DubConfig(identity_samples=2),
                       random_preprocess())
    src, dub = read_all(path, 25.0)[: report.frames], read_all(out, 25.0)
    # the faceless frames are passed through (a cut each side is not a face either)
    assert psnr(dub[g0 + 1:g1 - 1], src[g0 + 1:g1 - 1]) > 40.0
    assert report.passed_through.get("no_face", 0) >= g1 - g0 - 2
    assert report.shot_changes >= 2
    # the face is dubbed before the gap and again after it (the track re-enters)
    lower = np.zeros(src.shape[1:3], bool)
    lower[180:300, 220:420] = True
    assert psnr(dub[5:g0 - 4], src[5:g0 - 4], lower) < 35.0
    assert psnr(dub[g1 + 6:], src[g1 + 6:], lower) < 35.0


def test_wholly_faceless_video_passes_through(tmp_path, video_no_face, new_speech, tiny_bundle):
    out = tmp_path / "noface.mp4"
    report = dub_video(str(video_no_face), str(new_speech), str(out), tiny_bundle, DubConfig(), random_preprocess())
    assert report.face_coverage == 0.0 and report.passed_through == {"no_face": report.frames}
    assert report.references == [] and report.sync["windows"] == 0
    src, dub = read_all(video_no_face, 25.0), read_all(out, 25.0)
    n = min(len(src), len(dub))
    assert psnr(dub[:n], src[:n]) > 40.0
    assert [s["codec_type"] for s in ffprobe_streams(out, "codec_type")] == ["video", "audio"]


@pytest.mark.parametrize("mode", ["bounce", "loop", "freeze", "cut-audio"])
def test_longer_audio_length_modes(tmp_path, mode, video_1s, long_speech, tiny_bundle):
    out = tmp_path / f"{mode}.mp4"
    report = dub_video(str(video_1s), str(long_speech), str(out), tiny_bundle,
                       DubConfig(length_mode=mode, report=False), random_preprocess())
    n_video, n_audio = 25, 40  # 1 s video, 1.6 s speech at 25 fps
    expected = n_video if mode == "cut-audio" else n_audio
    assert report.length_mode == mode and report.frames == expected
    streams = ffprobe_streams(out, "codec_type,duration")
    for s in streams:
        assert abs(float(s["duration"]) - expected / 25) <= 1 / 25 + 1e-3
    src, dub = read_all(video_1s, 25.0), read_all(out, 25.0)
    assert len(dub) == expected
    # which source frame each output frame shows (compared above the mouth, which the dub keeps)
    upper = np.zeros(src.shape[1:3], bool)
    upper[:120] = True
    source_of = {"bounce": {25: 23, 30: 18, 39: 9}, "loop": {25: 0, 30: 5, 39: 14},
                 "freeze": {25: 24, 30: 24, 39: 24}, "cut-audio": {24: 24}}[mode]
    for o, s in source_of.items():
        others = [psnr(dub[o], src[k], upper) for k in range(n_video) if abs(k - s) > 3]
        assert psnr(dub[o], src[s], upper) > max(others), (mode, o, s)


def test_chunk_size_leaves_no_seam(tmp_path, video_1s, new_speech, tiny_bundle):
    """Chunks are a memory bound only: 7-frame and 16-frame chunks give the same video."""
    outs = []
    for chunk in (7, 16):
        out = tmp_path / f"chunk{chunk}.mp4"
        dub_video(str(video_1s), str(new_speech), str(out), tiny_bundle,
                  DubConfig(chunk_frames=chunk, model_batch=chunk, report=False), random_preprocess())
        outs.append(read_all(out, 25.0))
    assert outs[0].shape == outs[1].shape
    assert psnr(outs[0], outs[1]) > 45.0


def test_inputs_and_output_on_s3(s3_bucket, tmp_path, video_1s, new_speech, tiny_bundle):
    """URIs on S3 (moto on loopback): inputs are fetched, output and report uploaded."""
    from pipelines.data.storage import Storage

    storage = Storage()
    storage.put(video_1s, f"{s3_bucket}/in/talk.mp4")
    storage.put(new_speech, f"{s3_bucket}/in/speech.wav")
    report = dub_video(f"{s3_bucket}/in/talk.mp4", f"{s3_bucket}/in/speech.wav", f"{s3_bucket}/out/dub.mp4",
                       tiny_bundle, DubConfig(identity_samples=1), random_preprocess(), storage)
    assert report.out == f"{s3_bucket}/out/dub.mp4" and report.report_path == f"{s3_bucket}/out/dub.report.json"
    storage.get(report.out, tmp_path / "dub.mp4")
    assert [s["codec_type"] for s in ffprobe_streams(tmp_path / "dub.mp4", "codec_type")] == ["video", "audio"]
    assert json.loads(storage.read_bytes(report.report_path))["frames"] == report.frames


def test_rotated_input_comes_out_upright_at_its_display_size(tmp_path, new_speech, tiny_bundle):
    """A phone video stored 320x240 with a 90 degree rotation tag is shown 240x320: so is the dub."""
    from tests.fixtures.media import ffmpeg, make_testsrc_clip

    plain = make_testsrc_clip(tmp_path / "plain.mp4", size="320x240", rate=24, seconds=1.0)
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    out = tmp_path / "dub.mp4"
    report = dub_video(str(rotated), str(new_speech), str(out), tiny_bundle, DubConfig(report=False),
                       random_preprocess())
    video = ffprobe_streams(out, "codec_type,width,height,avg_frame_rate")[0]
    assert (video["width"], video["height"]) == (240, 320) and video["avg_frame_rate"] == "24/1"
    assert probe(out).rotation == 0 and report.passed_through == {"no_face": report.frames}
    src, dub = read_all(rotated, 24.0), read_all(out, 24.0)
    assert psnr(dub[: len(src)], src) > 35.0  # the same upright picture (then bounced: speech is longer)
