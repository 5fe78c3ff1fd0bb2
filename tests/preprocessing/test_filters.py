"""Filters on real media: probes of ffmpeg/synthetic files and clips from extract_clips."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from preprocessing.clips import extract_clips
from preprocessing.config import FilterConfig, PreprocessConfig
from preprocessing.encode import encode_mp4
from preprocessing.filters import (
    BlurFilter,
    DurationFilter,
    FaceCountFilter,
    FaceSizeFilter,
    FilterResult,
    FpsFilter,
    ResolutionFilter,
    SilenceFilter,
    SyncFilter,
    run_filters,
    video_filters,
)
from preprocessing.media import iter_frames, probe
from preprocessing.scenes import content_scores, find_scene_cuts
from preprocessing.synthetic.corpus import render_clip
from tests.fixtures.media import ffmpeg, make_testsrc_clip


@pytest.fixture(scope="module")
def talking(tmp_path_factory):
    """Two synthetic talking clips (different identities) and their concatenation (one hard cut)."""
    d = tmp_path_factory.mktemp("filters")
    a = render_clip(11, seconds=2.0, size=(640, 360), fps=25, identity=0)
    b = render_clip(12, seconds=2.0, size=(640, 360), fps=25, identity=1)
    encode_mp4(a.frames, 25, d / "a.mp4", audio=a.audio)
    encode_mp4(np.concatenate([a.frames, b.frames]), 25, d / "cut.mp4", audio=np.concatenate([a.audio, b.audio]))
    ffmpeg("-i", str(d / "a.mp4"), "-vf", "gblur=sigma=8", "-c:a", "copy", str(d / "blurry.mp4"))
    return {"dir": d, "a": d / "a.mp4", "cut": d / "cut.mp4", "blurry": d / "blurry.mp4", "n_a": len(a.frames)}


@pytest.fixture(scope="module")
def clip(talking):
    outcome = extract_clips(talking["a"], PreprocessConfig(), "a")
    assert outcome.status == "accepted", outcome.message
    return outcome.clips[0]


def test_video_filters_on_probed_files(tmp_path):
    low_fps = make_testsrc_clip(tmp_path / "low_fps.mp4", rate=8, seconds=2)
    tiny = make_testsrc_clip(tmp_path / "tiny.mp4", size="96x64", rate=25, seconds=2)
    short = make_testsrc_clip(tmp_path / "short.mp4", rate=25, seconds=0.4)
    ok = make_testsrc_clip(tmp_path / "ok.mp4", rate=25, seconds=2)
    filters = video_filters(FilterConfig())
    verdicts = {name: run_filters(filters, probe(p))[0] for name, p in
                [("low_fps", low_fps), ("tiny", tiny), ("short", short), ("ok", ok)]}
    assert verdicts["low_fps"] == FilterResult(False, "bad_fps", 8.0)
    assert verdicts["tiny"].reason == "low_resolution" and verdicts["tiny"].score == 64
    assert verdicts["short"].reason == "too_short"
    assert verdicts["ok"].keep and verdicts["ok"].reason is None
    info = probe(ok)
    assert ResolutionFilter(128, max_pixels=200 * 200)(info).reason == "resolution_too_high"
    assert DurationFilter(1.0, max_s=1.5)(info).reason == "too_long"
    assert FpsFilter(15, 120)(info).score == 25.0


def test_clip_filters_keep_a_good_talking_clip(clip):
    assert clip.scores["face_count"] == 1 and clip.scores["face_size"] > 100
    assert clip.scores["blur"] > FilterConfig().min_blur
    assert -40 < clip.scores["audio_level"] < 0


def test_face_size_and_count_reject_with_reasons(clip):
    assert FaceSizeFilter(clip.face_size + 1)(clip) == FilterResult(False, "face_too_small", clip.face_size)
    two = dataclasses.replace(clip, face_counts=np.array([1, 2, 2, 1]))
    once = dataclasses.replace(clip, face_counts=np.array([1, 2, 1, 1, 1]))  # one keyframe: noise
    none = dataclasses.replace(clip, face_counts=np.array([1, 0]))
    assert FaceCountFilter()(two) == FilterResult(False, "multiple_faces", 2)
    assert FaceCountFilter()(once).keep
    assert FaceCountFilter(min_share=0.5)(dataclasses.replace(clip, face_counts=np.array([2, 2, 1, 1, 1, 1]))).keep
    assert FaceCountFilter()(none).reason == "no_face"


def test_blur_filter_sees_a_blurred_mouth(clip, talking):
    sharp = BlurFilter(FilterConfig().min_blur)(clip)
    blurred = dataclasses.replace(clip, crops=np.stack([cv2.GaussianBlur(c, (0, 0), 3) for c in clip.crops]))
    soft = BlurFilter(FilterConfig().min_blur)(blurred)
    assert sharp.keep and not soft.keep and soft.reason == "blurry" and soft.score < sharp.score / 4
    outcome = extract_clips(talking["blurry"], PreprocessConfig(), "blurry")  # blurred by ffmpeg
    assert outcome.status == "rejected" and outcome.reason == "blurry"


def test_silence_filter(clip):
    assert SilenceFilter(-50)(clip).keep
    quiet = dataclasses.replace(clip, audio=clip.audio * 1e-4)
    assert SilenceFilter(-50)(quiet).reason == "silent_audio"


def test_scene_cut_found_at_the_concatenation(talking):
    frames = np.concatenate([f for _, f in iter_frames(talking["cut"])])
    assert find_scene_cuts(frames, threshold=30.0) == [talking["n_a"]]
    scores, _ = content_scores(frames)
    assert find_scene_cuts(scores, threshold=30.0) == [talking["n_a"]]
    # streaming in batches gives the same scores as one pass
    parts, prev = [], None
    for _, batch in iter_frames(talking["cut"], batch_size=7):
        s, prev = content_scores(batch, prev)
        parts.append(s)
    np.testing.assert_allclose(np.concatenate(parts), scores)


def test_extract_clips_splits_at_the_cut(talking):
    outcome = extract_clips(talking["cut"], PreprocessConfig(), "cut")
    assert outcome.status == "accepted"
    bounds = [(c.start_frame, c.end_frame) for c in outcome.clips]
    assert bounds == [(0, talking["n_a"]), (talking["n_a"], 2 * talking["n_a"])]


def _tiny_syncnet():
    import torch

    from iptalker_model.config import ModelConfig
    from iptalker_model.syncnet import SyncNet

    torch.manual_seed(0)
    return SyncNet(ModelConfig.tiny())


def test_sync_filter_from_a_checkpoint(tmp_path, clip):
    from iptalker_model.checkpoint import save_weights
    from pipelines.curate.stages import load_sync_filter
    from preprocessing.audio_features import WhisperFeatureExtractor
    from preprocessing.config import WhisperConfig

    net = _tiny_syncnet()
    path = tmp_path / "syncnet.pt"
    save_weights(path, net, net.cfg)
    assert load_sync_filter(FilterConfig()) is None  # no checkpoint configured: the filter does not run
    flt = load_sync_filter(FilterConfig(syncnet_checkpoint=str(path), min_sync_confidence=-1e9, max_sync_offset=5))
    rows = WhisperFeatureExtractor(WhisperConfig(allow_random=True))(clip.audio, clip.n_frames)
    heard = dataclasses.replace(clip, whisper=rows, scores={})  # the curation job attaches the rows
    result = flt(heard)
    assert result.keep and np.isfinite(result.score) and abs(heard.scores["sync_offset"]) <= 5
    strict = SyncFilter(net, min_confidence=1e9, max_offset=5)  # any offset of the search passes: only confidence rejects
    assert strict(heard).reason == "low_sync_confidence"
    short = dataclasses.replace(heard, end_frame=clip.start_frame + 8, crops=clip.crops[:8], whisper=rows[:16])
    assert strict(short).reason == "sync_unmeasurable"
    assert strict(clip).reason == "sync_unmeasurable"  # no Whisper rows attached: nothing to measure
