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
    rest_ratio,
    syncnet_figures,
    to_unit,
)

pytestmark = pytest.mark.slow
LAZY = ("untrained", "mean_reference", "copy_reference", "source")


def test_mouth_measures_agree_with_the_rendered_opening(trained):
    """dlib landmarks on upscaled 64 px crops see the mouth open (so the bars below can use them),
    and the trainer's pixel proxy agrees with those landmarks on real frames."""
    from pipelines.metrics.mouth import mouth_opening
    from pipelines.train.val_metrics import mouth_opening_proxy

    for clip in trained.test_clips:
        measured = opening(clip.frames, clip.landmarks, rest_ratio(clip))
        assert np.corrcoef(measured, clip.mouth_open)[0, 1] > 0.85
        mar = mouth_opening(dlib_landmarks(clip.frames, clip.landmarks))
        size = clip.frames.shape[1]
        proxy = mouth_opening_proxy(to_unit(clip.frames), torch.from_numpy(clip.landmarks / size),
                                    trained.settings.model).numpy()
        assert np.corrcoef(proxy, mar)[0, 1] > 0.6  # 0.71-0.92 measured on the held-out people


def test_mouth_follows_another_clips_audio(figs):
    """Per held-out person: each one's clips dubbed with the other's audio."""
    people = figs["model"]["cross_r"]
    assert len(people) == 2, people
    for person, r in people.items():
        assert figs["source_own_mouth_vs_driving_r"][person] < 0.2   # the source alone does not sync
        assert r >= 0.5, (person, figs["model"])
        for lazy in LAZY:
            assert figs[lazy]["cross_r"][person] < 0.5, (person, lazy, figs[lazy])


def test_mouth_closes_in_silence(figs):
    """Per held-out person: opening over the driving audio's silences < half of that over its
    speech, and clearly lower than every lazy answer's ratio on the same pairs. The still mouths
    (untrained, mean, pasted reference) sit at 0.50-0.72; the untouched source at 0.38-0.45, not
    because it follows the driving audio but because the clips share a rhythm (each starts in
    silence and pauses between its two sentences at about the same time), so 0.5 alone would not
    fail it."""
    for person, ratio in figs["model"]["silence_ratio"].items():
        assert ratio < 0.5, (person, figs["model"])
        for lazy in LAZY:
            assert figs[lazy]["silence_ratio"][person] >= ratio + 0.05, (person, lazy, figs[lazy])


def test_mouth_psnr_beats_the_lazy_answers(figs):
    """Own audio: the real mouth is the target, so the untouched source is the answer key, not a
    baseline; every other lazy answer must trail the model by >= 1.5 dB. Margins over the best
    lazy answer, seeds 0 / 1 / 2 / 4 / 1234 of the recipe: +2.5 / +2.7 / +2.75 / +2.4 / +3.2 dB
    (seeds 3 and 5 did not learn one held-out person's mouth: +1.3 / +1.2 dB; README)."""
    ours = figs["model"]["psnr"]
    for lazy in ("untrained", "mean_reference", "copy_reference"):
        assert ours >= figs[lazy]["psnr"] + 1.5, (lazy, ours, figs[lazy]["psnr"])


def test_identity_is_kept(figs):
    """dlib descriptor distance to the source (same person < 0.6). Pixels copied from the person
    keep identity by construction, so the lazy answers pass this one: they fail the bars above."""
    assert figs["model"]["identity"] < 0.35, figs["model"]


def test_syncnet_is_an_expert_on_held_out_faces(trained):
    """The offset search (what LSE and the dub report use) finds every shift on every held-out
    clip, for every seed measured (untrained: 2-18 %). Per-window accuracy on 512 held-out
    windows is 0.73-0.84 across seeds and settings measured (target 0.85; the same networks fit
    their six training faces to ~0.91): asserted well above the untrained network's (0.50) on the
    same windows, not at the target."""
    s = syncnet_figures(trained)
    print("syncnet figures:", s)
    assert s["offset_within_1"] == 1.0                    # every shift in -5..5, every clip
    assert s["offset_within_1_untrained"] < 0.5
    assert s["val_accuracy"] >= s["val_accuracy_untrained"] + 0.15, s
