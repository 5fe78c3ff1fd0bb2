"""extract_clips end to end on the synthetic corpus and on every bad/edge input kind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from preprocessing.align import five_points, invert_affine, template_points, transform_points
from preprocessing.clips import Clip, extract_clips
from preprocessing.config import AlignConfig, ClipConfig, PreprocessConfig
from preprocessing.synthetic.bad import BAD_KINDS, EDGE_KINDS, write_bad_inputs
from preprocessing.synthetic.corpus import generate_corpus

EXPECTED_REJECT = {
    "empty": {"empty_file"},
    "random_bytes": {"corrupt"},
    "truncated": {"unreadable", "decode_failed"},
    "no_audio": {"no_audio_stream"},
    "audio_only": {"no_video_stream"},
    "no_face": {"no_face"},
    "too_short": {"too_short"},
    "two_faces": {"multiple_faces"},
    "tiny_face": {"face_too_small"},
    "silent": {"silent_audio"},  # useless for lip-sync training
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two talking videos of one identity: the first at 25 fps, the second at 30 fps."""
    return generate_corpus(tmp_path_factory.mktemp("corpus"), 2, seed=0, n_identities=1, seconds=(3.0, 3.5))


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    return write_bad_inputs(tmp_path_factory.mktemp("bad"), seed=0)


@pytest.fixture(scope="module")
def outcomes(corpus):
    return [extract_clips(p, PreprocessConfig(), p.stem) for p in corpus]


def test_talking_videos_give_aligned_clips(corpus, outcomes):
    for path, outcome in zip(corpus, outcomes, strict=True):
        assert outcome.status == "accepted", outcome.message
        truth = json.loads(path.with_suffix(".json").read_text())
        clip = outcome.clips[0]
        assert isinstance(clip, Clip) and clip.key == f"{path.stem}-0000" and clip.fps == 25.0
        t = clip.n_frames
        assert t >= 25 and clip.start_frame == 0
        assert clip.crops.shape == (t, 256, 256, 3) and clip.crops.dtype == np.uint8
        assert clip.landmarks.shape == (t, 68, 2) and clip.landmarks.dtype == np.float32
        assert clip.affine.shape == (t, 2, 3) and clip.affine.dtype == np.float32
        assert clip.audio.dtype == np.float32 and len(clip.audio) == t * 640  # 16 kHz / 25 fps
        assert abs(t - truth["n_frames"] * 25 / truth["fps"]) <= 2
        eyes = five_points(clip.landmarks)[:, :2]
        assert np.abs(eyes - template_points(AlignConfig())[:2]).max() < 15


def test_landmarks_match_the_generator_ground_truth(corpus, outcomes):
    """Back in source pixels, tracked landmarks sit within a few pixels of the drawn face."""
    path, outcome = corpus[0], outcomes[0]  # 25 fps: frame t of the clip is source frame t
    truth = np.array(json.loads(path.with_suffix(".json").read_text())["landmarks"], np.float32)
    clip = outcome.clips[0]
    source = np.stack([transform_points(lm, invert_affine(a)) for lm, a in zip(clip.landmarks, clip.affine)])
    err = np.linalg.norm(source - truth[clip.start_frame:clip.end_frame], axis=-1)  # [T, 68] px
    face = np.linalg.norm(truth[:, 16] - truth[:, 0], axis=-1).mean()
    assert np.median(err) < 0.05 * face, (np.median(err), face)


def test_long_shots_are_split_at_max_frames(corpus):
    cfg = PreprocessConfig(clips=ClipConfig(min_frames=10, max_frames=30))
    outcome = extract_clips(corpus[0], cfg, "v")
    bounds = [(c.start_frame, c.end_frame) for c in outcome.clips]
    assert len(bounds) >= 3 and all(b - a <= 30 for a, b in bounds)
    assert all(bounds[i][1] == bounds[i + 1][0] for i in range(len(bounds) - 1))
    assert [c.index for c in outcome.clips] == list(range(len(bounds)))


@pytest.mark.parametrize("kind", sorted(EXPECTED_REJECT))
def test_bad_inputs_end_as_reject_reasons(bad_inputs, kind):
    outcome = extract_clips(bad_inputs[kind], PreprocessConfig(), kind)
    assert outcome.status == "rejected" and outcome.clips == []
    assert outcome.reason in EXPECTED_REJECT[kind], (outcome.reason, outcome.message)
    assert outcome.message and "\n" not in outcome.message


def test_variable_frame_rate_is_resampled_and_kept(bad_inputs):
    outcome = extract_clips(bad_inputs["vfr"], PreprocessConfig(), "vfr")
    assert outcome.status == "accepted", outcome.message
    assert outcome.info.variable_fps
    assert all(c.fps == 25.0 and len(c.audio) == c.n_frames * 640 for c in outcome.clips)


def test_4k_is_decoded_downscaled(bad_inputs):
    outcome = extract_clips(bad_inputs["huge"], PreprocessConfig(), "huge")
    assert outcome.info.width == 3840
    assert outcome.status == "accepted", outcome.message
    clip = outcome.clips[0]
    assert clip.source_scale == pytest.approx(1280 / 3840)
    assert clip.crops.shape[1:] == (256, 256, 3)
    assert clip.face_size > 300  # reported in original 4K pixels
    # the affine maps original 4K pixels: crop landmarks map back onto the drawn face
    truth = np.array(json.loads(bad_inputs["huge"].with_suffix(".json").read_text())["landmarks"], np.float32)
    source = np.stack([transform_points(lm, invert_affine(a)) for lm, a in zip(clip.landmarks, clip.affine)])
    err = np.linalg.norm(source - truth[clip.start_frame:clip.end_frame], axis=-1)
    assert np.median(err) < 0.05 * clip.face_size


def test_every_kind_is_covered():
    assert set(BAD_KINDS) | set(EDGE_KINDS) == set(EXPECTED_REJECT) | {"vfr", "huge"}


class _BrokenDetector:
    def detect(self, frame_rgb):
        raise RuntimeError("detector crashed")


def test_unexpected_failures_become_a_reject(corpus):
    outcome = extract_clips(corpus[0], PreprocessConfig(), "v", detector=_BrokenDetector())
    assert outcome.status == "rejected" and outcome.reason == "processing_error"
    assert "detector crashed" in outcome.message


def test_crops_equal_a_full_frame_warp(corpus, outcomes):
    """Shots keep only face regions; the crops must be exactly what warping whole frames gives."""
    from preprocessing.align import warp_to_crop
    from preprocessing.media import iter_frames

    frames = np.concatenate([f for _, f in iter_frames(corpus[1])])  # the 30 fps video, resampled
    clip = outcomes[1].clips[0]
    for t in (0, clip.n_frames // 2, clip.n_frames - 1):
        expected = warp_to_crop(frames[clip.start_frame + t], clip.affine[t], 256)
        np.testing.assert_array_equal(clip.crops[t], expected)
