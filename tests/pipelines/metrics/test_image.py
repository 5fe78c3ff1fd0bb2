"""PSNR / SSIM known answers: identical inputs, a known error, regions, and scikit-image's SSIM."""

import math

import numpy as np
import pytest
from skimage import data as skdata
from skimage.metrics import structural_similarity

from pipelines.metrics import psnr, ssim


@pytest.fixture(scope="module")
def video():
    a = skdata.astronaut()[::4, ::4]                     # [128, 128, 3] uint8
    return np.stack([a, np.roll(a, 3, axis=1), a[::-1]])  # [3, 128, 128, 3]


def test_identical_videos_give_inf_psnr_and_ssim_one(video):
    assert psnr(video, video) == math.inf
    assert ssim(video, video) == pytest.approx(1.0, abs=1e-12)
    unit = video.astype(np.float32) / 127.5 - 1.0         # the model's [-1, 1] range
    assert psnr(unit, unit) == math.inf and ssim(unit, unit) == pytest.approx(1.0, abs=1e-12)


def test_psnr_of_a_known_error(video):
    brighter = video.astype(np.int16) + 5
    brighter = brighter.clip(0, 255).astype(np.uint8)
    exact = brighter.astype(np.int16) - video                   # clipping makes some errors < 5
    mse = float((exact.astype(np.float64) ** 2).mean())
    assert psnr(video, brighter) == pytest.approx(10 * math.log10(255 ** 2 / mse), rel=1e-9)
    assert ssim(video, brighter) < 1.0


def test_region_by_box_and_by_mask_sees_only_that_region(video):
    changed = video.copy()
    changed[:, :40] = 0                                    # rows 0-39 destroyed
    box = (64, 128, 32, 96)
    assert psnr(changed, video, box=box) == math.inf and ssim(changed, video, box=box) == pytest.approx(1.0)
    assert psnr(changed, video) < 15
    mask = np.zeros(video.shape[1:3])
    mask[64:128, 32:96] = 1
    assert psnr(changed, video, mask=mask) == math.inf
    mask[30:40] = 1                                        # now the region includes damage
    assert psnr(changed, video, mask=mask) < 20


def test_ssim_agrees_with_scikit_image_and_falls_with_noise():
    img = skdata.astronaut()[::2, ::2]
    rng = np.random.default_rng(0)
    scores = []
    for sigma in (5, 20, 60):
        noisy = (img + rng.normal(0, sigma, img.shape)).clip(0, 255).astype(np.uint8)
        ref = structural_similarity(img, noisy, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=255)
        interior = np.zeros(img.shape[:2])
        interior[5:-5, 5:-5] = 1                           # scikit-image leaves out a 5 px border
        assert ssim(img, noisy, mask=interior) == pytest.approx(ref, abs=1e-6)
        ours = ssim(img, noisy)
        scores.append(ours)
    assert scores[0] > scores[1] > scores[2]


def test_mismatched_shapes_and_empty_regions_are_errors(video):
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(video, video[:2])
    with pytest.raises(ValueError, match="empty region"):
        ssim(video, video, mask=np.zeros(video.shape[1:3]))
