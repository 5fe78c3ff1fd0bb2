"""Mouth opening, mouth box, audio envelope, speech mask and mouth activity: known answers, and
the opening measured by dlib on real rendered faces following the renderer's own mouth curve."""

import math

import numpy as np
import pytest

from pipelines.metrics import (
    audio_envelope,
    landmarks_of,
    mouth_activity,
    mouth_box,
    mouth_opening,
    speech_mask,
)


def lips(gap: np.ndarray, width: float = 40.0) -> np.ndarray:
    """[T, 68, 2] landmarks with only the mouth placed: corners ``width`` apart, inner lips ``gap``."""
    lm = np.zeros((len(gap), 68, 2), np.float32)
    lm[:, 48:68] = (120, 150)
    lm[:, 48] = (100, 150)
    lm[:, 54] = (100 + width, 150)
    for up, low in zip((61, 62, 63), (67, 66, 65), strict=True):
        lm[:, up] = (120, 150)
        lm[:, low, 0] = 120
        lm[:, low, 1] = 150 + gap
    return lm


def test_mouth_opening_is_the_inner_gap_over_the_width():
    gap = np.array([0.0, 4.0, 10.0])
    assert mouth_opening(lips(gap)) == pytest.approx(gap / 40.0)
    assert mouth_opening(lips(gap, width=80)) == pytest.approx(gap / 80.0)   # scale-free
    nan = lips(gap)
    nan[1] = np.nan
    assert np.isnan(mouth_opening(nan)[1])


def test_mouth_box_covers_the_mouth_with_a_margin_and_stays_inside():
    lm = lips(np.array([4.0, 6.0, 8.0]))
    y0, y1, x0, x1 = mouth_box(lm, 256, margin=0.25)
    assert (x0, x1) == (90, 150) and (y0, y1) == (140, 166)
    assert mouth_box(lm, (160, 130), margin=0.25)[3] == 130     # clipped to the frame
    with pytest.raises(ValueError, match="no frame has landmarks"):
        mouth_box(np.full((2, 68, 2), np.nan), 64)


def test_audio_envelope_is_the_rms_under_each_frame():
    sr, fps = 16000, 25
    audio = np.zeros(sr, np.float32)                             # 1 s = 25 frames
    t = np.arange(640 * 10) / sr
    audio[640 * 5:640 * 15] = 0.5 * np.sin(2 * np.pi * 400 * t)  # frames 5-14: a tone
    env = audio_envelope(audio, fps, 30)                         # 5 frames past the end: silence
    assert env[5:15] == pytest.approx(0.5 / math.sqrt(2), rel=1e-3)
    assert np.all(env[:5] == 0) and np.all(env[15:] == 0)
    assert speech_mask(env).tolist() == [False] * 5 + [True] * 10 + [False] * 15
    assert not speech_mask(np.full(10, 1e-4)).any()              # -80 dBFS hiss is not speech


def test_mouth_activity_separates_a_mouth_that_closes_in_pauses_from_one_that_does_not():
    env = np.r_[np.zeros(10), np.linspace(0.1, 0.3, 10), np.zeros(10)].astype(np.float32)
    follows = 0.05 + env                                          # opens with the voice
    keeps_moving = 0.2 + 0.1 * np.sin(np.arange(30))              # ignores the audio
    good, bad = mouth_activity(follows, env), mouth_activity(keeps_moving, env)
    assert good["corr"] > 0.95 and good["silence_ratio"] < 0.3
    assert bad["silence_ratio"] > 0.7 and abs(bad["corr"]) < 0.3
    assert math.isnan(mouth_activity(follows, np.zeros(30))["speech_mean"])  # no speech at all


@pytest.mark.slow
def test_dlib_opening_on_rendered_faces_follows_the_renderer(talking_clips):
    """64 px crops of the synthetic faces (upscaled for dlib): the measured opening tracks the
    mouth-opening curve the renderer drew, and silence in the audio shows as a closed mouth."""
    from preprocessing.synthetic.corpus import render_clip

    clip = talking_clips[3]
    truth = render_clip(3, seconds=3.0, size=(192, 192), fps=25.0).mouth_open
    opening = mouth_opening(landmarks_of(clip["uint8"]))
    ok = np.isfinite(opening)
    assert ok.mean() > 0.9
    assert np.corrcoef(opening[ok], truth[ok])[0, 1] > 0.8
    act = mouth_activity(opening, audio_envelope(clip["audio"], 25, len(opening)))
    assert act["corr"] > 0.5 and act["silence_ratio"] < 0.8, act
