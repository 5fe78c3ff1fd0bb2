"""Alignment on real decoded frames: stable crops, a feathered mask, exact paste-back."""

from __future__ import annotations

import numpy as np
import pytest

from iptalker_model.config import ModelConfig
from iptalker_model.mask import lower_face_mask
from preprocessing.align import (
    estimate_transforms,
    five_points,
    invert_affine,
    paste_back,
    template_points,
    transform_points,
    warp_to_crop,
)
from preprocessing.config import AlignConfig, FaceConfig
from preprocessing.faces import track_faces
from preprocessing.media import iter_frames
from tests.fixtures.media import astronaut_frame, still_clip


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    path = still_clip(tmp_path_factory.mktemp("align") / "one.mp4", astronaut_frame(face_height=360),
                      seconds=2, motion_px=20)
    frames = np.concatenate([f for _, f in iter_frames(path)])  # [T, 720, 1280, 3]
    return frames, track_faces([frames], FaceConfig())


def _psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / max(np.mean((a.astype(float) - b.astype(float)) ** 2), 1e-12))


def test_face_lands_on_the_template(tracked):
    frames, track = tracked
    cfg = AlignConfig(size=256)
    affines = estimate_transforms(track.landmarks, cfg, track.valid)
    assert affines.shape == (len(frames), 2, 3) and affines.dtype == np.float32
    crop_pts = five_points(np.stack([transform_points(lm, a) for lm, a in zip(track.landmarks, affines)]))
    assert crop_pts.shape == (len(frames), 5, 2)
    assert np.abs(crop_pts[:, :3] - template_points(cfg)[:3]).max() < 12  # eyes + nose, px in a 256 crop


def test_crop_is_stable_while_the_head_moves(tracked):
    """The head pans +-20 px in the source; in the crop the eyes barely move."""
    frames, track = tracked
    affines = estimate_transforms(track.landmarks, AlignConfig(), track.valid)
    eyes_src = five_points(track.landmarks)[:, :2]
    eyes_crop = np.stack([transform_points(p, a) for p, a in zip(eyes_src, affines)])
    assert np.ptp(eyes_src[:, 0, 0]) > 20
    assert np.ptp(eyes_crop[:, 0, 0]) < 5  # smoothing lags fast motion by a pixel or two
    assert np.abs(np.diff(eyes_crop, axis=0)).mean() < 0.5


def test_transform_smoothing_removes_per_frame_shake(tracked):
    _, track = tracked
    rng = np.random.default_rng(0)
    noisy = track.landmarks + rng.normal(0, 1.5, track.landmarks.shape).astype(np.float32)
    raw = estimate_transforms(noisy, AlignConfig(smooth_sigma=0.0))
    smooth = estimate_transforms(noisy, AlignConfig(smooth_sigma=2.0))
    shake = lambda a: np.abs(np.diff(a[:, :, 2], axis=0)).mean()  # noqa: E731  translation change per frame
    assert shake(smooth) < 0.5 * shake(raw)


def test_align_then_inverse_warp_reproduces_the_face(tracked):
    frames, track = tracked
    cfg = AlignConfig(size=256)
    affines = estimate_transforms(track.landmarks, cfg, track.valid)
    ones = np.ones((cfg.size, cfg.size), np.float32)
    for t in (0, 17, 49):
        crop = warp_to_crop(frames[t], affines[t], cfg.size)
        assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
        back = paste_back(frames[t], crop, affines[t], ones)
        x0, y0 = track.landmarks[t].min(0).astype(int)
        x1, y1 = track.landmarks[t].max(0).astype(int)
        assert _psnr(back[y0:y1, x0:x1], frames[t][y0:y1, x0:x1]) > 30


def test_paste_back_only_touches_the_mask(tracked):
    frames, track = tracked
    cfg = AlignConfig()
    affine = estimate_transforms(track.landmarks[:1], cfg)[0]
    mask = lower_face_mask(ModelConfig.tiny(), size=cfg.size)[0, 0].numpy()  # the model's mask at crop size
    grey = np.full((cfg.size, cfg.size, 3), 128, np.uint8)
    out = paste_back(frames[0], grey, affine, mask)
    changed = np.abs(out.astype(int) - frames[0]).sum(-1) > 0
    ys, xs = np.nonzero(changed)
    mouth = track.landmarks[0, 48:68]
    assert changed.any()
    assert ys.min() > track.landmarks[0, 36:48, 1].max()  # nothing above the eyes changes
    assert xs.min() < mouth[:, 0].min() and xs.max() > mouth[:, 0].max()  # the mouth is covered
    np.testing.assert_allclose(invert_affine(invert_affine(affine)), affine, atol=1e-4)


def test_lower_face_mask_is_feathered():
    """The model's mask at the full crop size, as paste-back uses it: soft, and nothing above mask_top."""
    cfg = ModelConfig.tiny(mask_top=0.5, mask_feather=0.04)
    mask = lower_face_mask(cfg, size=256)[0, 0].numpy()
    assert mask.shape == (256, 256) and mask.dtype == np.float32
    assert mask[:128].max() == 0.0 and mask[185, 128] > 0.95
    assert ((mask > 0.05) & (mask < 0.95)).sum() > 1000  # a soft edge, not a hard cut


def test_warping_a_region_equals_warping_the_frame(tracked):
    from preprocessing.align import crop_bounds, shift_affine

    frames, track = tracked
    affine = estimate_transforms(track.landmarks[:1], AlignConfig())[0]
    x0, y0, x1, y1 = crop_bounds(affine, 256, frames[0].shape[:2])
    assert 0 <= x0 < x1 <= 1280 and 0 <= y0 < y1 <= 720 and (x1 - x0) * (y1 - y0) < 0.3 * 1280 * 720
    region = frames[0][y0:y1, x0:x1].copy()
    np.testing.assert_array_equal(warp_to_crop(region, shift_affine(affine, x0, y0), 256),
                                  warp_to_crop(frames[0], affine, 256))
