"""The CPU recipe dubs: on held-out identities the mouth follows the driving audio, closes in
silence, matches the real mouth better than the lazy answers, and keeps the person.

Every bar is checked against the answers a model that learnt nothing would give, in the same
test: the untrained model, the mean of the references, a reference pasted as is, and the
untouched source. Figures: `python -m tests.learning.harness` (README, "Learning").
"""

import numpy as np
import pytest
import torch

from tests.learning.harness import (
    dlib_landmarks,
    opening,
    syncnet_figures,
    to_unit,
)

pytestmark = pytest.mark.slow
LAZY = ("untrained", "mean_reference", "copy_reference", "source")


def test_mouth_measures_agree_with_the_rendered_opening(trained):
    """The bars' measure (``harness.opening``: dlib landmarks on the hidden lower face drawn over
    a still closed-mouth frame, upscaled 64 px crops) sees the real mouth open: r 0.90-0.92 with
    the rendered opening on the turned held-out head (a 9 px wide mouth), 0.995 on the frontal
    one. And the trainer's pixel proxy agrees with dlib landmarks on real frames."""
    from pipelines.metrics.mouth import mouth_opening
    from pipelines.train.val_metrics import mouth_opening_proxy

    for clip in trained.test_clips:
        measured = opening(clip.frames, clip, trained.settings.model)
        assert np.corrcoef(measured, clip.mouth_open)[0, 1] > 0.85
        mar = mouth_opening(dlib_landmarks(clip.frames, clip.landmarks))
        size = clip.frames.shape[1]
        proxy = mouth_opening_proxy(to_unit(clip.frames), torch.from_numpy(clip.landmarks / size),
                                    trained.settings.model).numpy()
        assert np.corrcoef(proxy, mar)[0, 1] > 0.6  # 0.64-0.95 measured on the held-out people


# The held-out people, in identity order: t1_4 (a turned head, 9 px wide mouth at 64 px) and t1_5
# (frontal). Each is its own test, so a model that dubs one face and not the other fails by name.
PEOPLE = [pytest.param(0, id="t1_4-turned"), pytest.param(1, id="t1_5-frontal")]


def _person(figs, index: int) -> str:
    people = sorted(figs["model"]["cross_r"])
    assert len(people) == 2, people
    return people[index]


@pytest.mark.parametrize("index", PEOPLE)
def test_mouth_follows_another_clips_audio(figs, index):
    """Per held-out person: its clips dubbed with the other person's audio (played from its
    middle, so the source's own mouth does not follow it: r -0.05 to -0.02). The model: r 0.74-0.84
    over seeds 0-4 and 1234; the lazy answers -0.16 to 0.06."""
    person = _person(figs, index)
    assert figs["source_own_mouth_vs_driving_r"][person] < 0.2   # the source alone does not sync
    for lazy in LAZY:
        assert figs[lazy]["cross_r"][person] < 0.5, (person, lazy, figs[lazy])
    assert figs["model"]["cross_r"][person] >= 0.5, (person, figs["model"])


@pytest.mark.parametrize("index", PEOPLE)
def test_mouth_closes_in_silence(figs, index):
    """Per held-out person: opening over the driving audio's silences < half of that over its
    speech, and clearly lower than every lazy answer's ratio on the same pairs (they sit at
    0.86-1.50; the model at 0.04-0.29 over seeds 0-4 and 1234)."""
    person = _person(figs, index)
    ratio = figs["model"]["silence_ratio"][person]
    assert ratio < 0.5, (person, figs["model"])
    for lazy in LAZY:
        assert figs[lazy]["silence_ratio"][person] >= ratio + 0.05, (person, lazy, figs[lazy])


def test_mouth_psnr_beats_the_lazy_answers(figs):
    """Own audio: the real mouth is the target, so the untouched source is the answer key, not a
    baseline; every other lazy answer must trail the model by >= 1.5 dB. Margins over the best
    lazy answer, seeds 0-4 and 1234 of the recipe: +4.1 to +4.6 dB (README)."""
    ours = figs["model"]["psnr"]
    for lazy in ("untrained", "mean_reference", "copy_reference"):
        assert ours >= figs[lazy]["psnr"] + 1.5, (lazy, ours, figs[lazy]["psnr"])


def test_identity_is_kept(figs):
    """dlib descriptor distance to the source (same person < 0.6). Pixels copied from the person
    keep identity by construction, so the lazy answers pass this one: they fail the bars above."""
    assert figs["model"]["identity"] < 0.35, figs["model"]


def test_syncnet_is_an_expert_on_held_out_faces(trained):
    """The offset search (what LSE and the dub report use) finds every shift on every held-out
    clip, for every seed measured (untrained: 0-41 %), and the per-window accuracy on 512 held-out
    windows (in sync vs shifted) reaches the target 0.85: 0.856-0.886 over seeds 0-4 and 1234
    on two machines with the recipe's jitter, 0.83 without it (the untrained network: 0.50)."""
    s = syncnet_figures(trained)
    print("syncnet figures:", s)
    assert s["offset_within_1"] == 1.0                    # every shift in -5..5, every clip
    assert s["offset_within_1_untrained"] < 0.5
    assert s["val_accuracy"] >= 0.85, s
    assert s["val_accuracy_untrained"] < 0.6, s
