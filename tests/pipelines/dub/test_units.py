"""Fast unit tests of the dub's pure parts: timeline, references, audio windows, fades, checks."""

from __future__ import annotations

import numpy as np
import pytest

from iptalker_model.config import ModelConfig
from pipelines.data.bundle import Bundle
from pipelines.data.loader import _rows
from pipelines.dub.checks import check_bundle
from pipelines.dub.generate import audio_windows
from pipelines.dub.references import dub_references
from pipelines.dub.render import fade_weights
from pipelines.dub.timeline import plan_timeline
from pipelines.errors import UserError
from preprocessing.audio_features import encoder_identity
from preprocessing.references import mouth_aspect_ratio
from tests.fixtures.whisper import random_preprocess, random_whisper


def test_timeline_modes():
    assert plan_timeline(5, 3, "bounce").source.tolist() == [0, 1, 2]
    assert plan_timeline(5, 3, "bounce").mode == "cut-video"
    assert plan_timeline(4, 10, "bounce").source.tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert plan_timeline(4, 7, "loop").source.tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert plan_timeline(4, 6, "freeze").source.tolist() == [0, 1, 2, 3, 3, 3]
    cut = plan_timeline(4, 6, "cut-audio")
    assert cut.source.tolist() == [0, 1, 2, 3] and cut.mode == "cut-audio"
    assert plan_timeline(1, 3, "bounce").source.tolist() == [0, 0, 0]
    assert plan_timeline(3, 3, "loop").mode == "exact"


def test_audio_windows_at_25fps_are_the_training_windows():
    """At 25 fps the dub feeds the model exactly the rows the training loader cuts per frame."""
    rows = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    c, frames = 2, np.arange(100)
    dub = audio_windows(rows, frames / 25.0, c)
    train = np.stack([_rows(rows, f - c, 2 * c + 1) for f in frames])
    np.testing.assert_array_equal(dub, train)


def test_audio_windows_follow_time_at_30fps():
    """At 30 fps a frame gets the rows of its own time (not of frame index x 2 rows)."""
    rows = np.repeat(np.arange(300, dtype=np.float32)[:, None], 2, 1)  # row r holds r
    win = audio_windows(rows, np.array([30, 90]) / 30.0, 2)  # t = 1 s and 3 s
    assert win[:, 4, 0].tolist() == [50.0, 150.0]  # first row of the frame itself: t x 50 Hz


def _landmarks(openness: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    lm = np.zeros((len(openness), 68, 2))
    lm[:, 36:42] = [30.0, 40.0]
    lm[:, 42:48] = [70.0, 40.0]
    lm[:, 30, 0], lm[:, 30, 1] = 50.0 + 20 * yaw, 60.0
    lm[:, 48], lm[:, 54] = [35.0, 80.0], [65.0, 80.0]
    lm[:, [61, 62, 63], 1] = 78.0
    lm[:, [67, 66, 65], 1] = 78.0 + 30.0 * openness[:, None]
    return lm


def test_references_spread_over_mouth_openness_at_the_typical_pose():
    rng = np.random.default_rng(0)
    n = 200
    openness, yaw = rng.random(n), np.where(np.arange(n) < 150, rng.normal(0, 0.02, n), 0.8)
    usable = np.ones(n, bool)
    usable[::7] = False
    lm = _landmarks(openness, yaw)
    refs = dub_references(lm, usable, 5)
    assert len(set(refs.tolist())) == 5 and usable[refs].all()
    assert (refs < 150).all()  # turned-away frames are never references
    opened = np.sort(mouth_aspect_ratio(lm[refs]))
    assert opened[0] < 0.2 and opened[-1] > 0.8  # closed ... open
    with pytest.raises(ValueError):
        dub_references(lm, np.zeros(n, bool), 5)
    assert len(dub_references(lm[:3], np.ones(3, bool), 5)) == 5  # fewer frames than K: repeats
    assert len(dub_references(lm[:1], np.ones(1, bool), 5)) == 5


def test_fades_ramp_at_passed_through_frames_only():
    usable = np.array([1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1], bool)
    w = fade_weights(usable, 2)
    assert w[0] == 1.0 and w[-1] == 1.0  # the video's own ends do not fade
    assert w[4] == 0.0 and w[5] == 0.0
    assert w[3] < w[2] < w[1] <= 1.0 and w[6] < w[7] < w[8] == 1.0


def _bundle(whisper: dict, geometry: dict | None = None) -> Bundle:
    meta = {"whisper": whisper, "model": ModelConfig.tiny().to_dict()}
    if geometry:
        meta["geometry"] = geometry
    return Bundle(root=".", iptalker=None, syncnet=None, meta=meta)


def test_bundle_checks_refuse_another_encoder_or_geometry():
    pre = random_preprocess()
    mine = encoder_identity(pre.whisper)
    check_bundle(_bundle(mine), pre, 384, 384)  # the same random-init encoder: fine
    with pytest.raises(UserError, match="seed 1"):
        check_bundle(_bundle(encoder_identity(random_whisper(seed=1))), pre, 384, 384)
    with pytest.raises(UserError, match="sha256"):
        check_bundle(_bundle({"name": "other", "sha256": "ab" * 32, "random_init": False}), pre, 384, 384)
    with pytest.raises(UserError, match="records no Whisper encoder"):
        check_bundle(_bundle({}), pre, 384, 384)
    with pytest.raises(UserError, match="width 512"):
        check_bundle(_bundle(mine), pre, 384, 512)
    with pytest.raises(UserError, match="template_scale"):
        check_bundle(_bundle(mine, {"template": {"scale": 0.9, "shift_y": -0.07}}), pre, 384, 384)
