"""Training-window augmentation: a mirrored window is still a consistent face (landmarks follow),
recolouring keeps frames and references alike, validation windows are never altered."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipelines.data.augment import (
    MIRROR_68,
    Augment,
    augment_window,
    mirror_landmarks,
    similarity,
    warp_landmarks,
)
from pipelines.data.loader import build_train_loader, build_val_loader
from pipelines.train.config import TrainConfig
from tests.fixtures.corpus import SPEC, write_corpus


def test_mirror_table_is_a_permutation_that_undoes_itself():
    assert sorted(MIRROR_68) == list(range(68))
    assert (MIRROR_68[MIRROR_68] == np.arange(68)).all()
    assert MIRROR_68[48] == 54 and MIRROR_68[36] == 45 and MIRROR_68[0] == 16  # mouth, eye, jaw corners
    assert MIRROR_68[51] == 51 and MIRROR_68[57] == 57 and MIRROR_68[30] == 30  # midline points stay


def test_mirrored_landmarks_are_what_dlib_finds_on_the_mirrored_face():
    """The iBUG order after mirroring is dlib's own on the flipped photo (not just x -> 1 - x)."""
    import skimage.data

    from preprocessing.faces import DlibHogDetector, LandmarkPredictor68

    image = np.ascontiguousarray(skimage.data.astronaut())
    flipped = np.ascontiguousarray(image[:, ::-1])
    size = np.array([image.shape[1], image.shape[0]], np.float32)

    def landmarks(img):
        box = max(DlibHogDetector().detect(img), key=lambda b: b.size)
        return torch.from_numpy(LandmarkPredictor68().predict(img, box) / size)

    original, on_flipped = landmarks(image), landmarks(flipped)
    err = (mirror_landmarks(original) - on_flipped).norm(dim=-1) * size[0]     # pixels
    naive = original.clone()
    naive[:, 0] = 1 - naive[:, 0]                                             # order not mirrored
    assert float(err.median()) < 4.0
    assert float(((naive - on_flipped).norm(dim=-1) * size[0]).median()) > 4 * float(err.median())


def _window(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"frames": torch.rand(5, 3, 8, 8, generator=g) * 2 - 1,
            "references": torch.rand(3, 3, 8, 8, generator=g) * 2 - 1,
            "landmarks": torch.rand(5, 68, 2, generator=g),
            "audio": torch.randn(5, 10, 4, generator=g)}


def test_a_mirrored_window_flips_frames_references_and_landmarks_together():
    w = _window()
    out = augment_window(dict(w), Augment(flip=1.0), np.random.default_rng(0))
    assert torch.equal(out["frames"], w["frames"].flip(-1))
    assert torch.equal(out["references"], w["references"].flip(-1))
    assert torch.allclose(out["landmarks"], mirror_landmarks(w["landmarks"]))
    assert out["audio"] is w["audio"]                                          # speech untouched


def _pixels(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) index of every pixel: two [size, size] float tensors."""
    ramp = torch.arange(size, dtype=torch.float32)
    return torch.meshgrid(ramp, ramp, indexing="ij")


def _dots(points: torch.Tensor, size: int) -> torch.Tensor:
    """[3, size, size] in [-1, 1]: black, with a soft white dot on each point [P, 2] (fractions)."""
    yy, xx = _pixels(size)
    img = sum(torch.exp(-((xx - x * size) ** 2 + (yy - y * size) ** 2) / 2.0) for x, y in points.tolist())
    return (img.clamp(0, 1) * 2 - 1).expand(3, size, size)


def _centroids(img: torch.Tensor, near: torch.Tensor, size: int) -> torch.Tensor:
    """Intensity centroid (fractions) of the image within 4 px of each point of near [P, 2]."""
    w = (img[0] + 1) / 2
    yy, xx = _pixels(size)
    out = []
    for x, y in (near * size).tolist():
        m = w * (((xx - x) ** 2 + (yy - y) ** 2) < 16)
        out.append([float((m * xx).sum() / m.sum()) / size, float((m * yy).sum() / m.sum()) / size])
    return torch.tensor(out)


def test_jitter_moves_landmarks_where_it_moves_the_pixels():
    """Dots drawn at landmark positions end up where the warped landmarks say (< 0.3 px), for
    frames and references alike, and audio is untouched."""
    size = 64
    points = torch.tensor([[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
    frame = _dots(points, size)
    w = {"frames": frame.expand(5, 3, size, size).clone(), "references": frame.expand(3, 3, size, size).clone(),
         "landmarks": points.expand(5, 5, 2).clone(), "audio": torch.randn(5, 10, 4)}
    moved = 0.0
    for seed in range(6):
        out = augment_window(dict(w), Augment(jitter=0.15), np.random.default_rng(seed))
        lm = out["landmarks"][0]
        moved = max(moved, float((lm - points).norm(dim=-1).max()) * size)
        for img in (out["frames"][2], out["references"][1]):
            err = (_centroids(img, lm, size) - lm).norm(dim=-1).max() * size
            assert err < 0.3, f"seed {seed}: a dot is {err:.2f} px from its warped landmark"
        assert out["audio"] is w["audio"]
    assert moved > 2.0                                                       # it does move things
    ident = warp_landmarks(points, similarity(1.0, 0.0, 0.0, 0.0), size)
    assert torch.allclose(ident, points, atol=1e-6)


def test_recolouring_maps_frames_and_references_alike_and_sometimes_to_grey():
    w = _window()
    w["references"][0] = w["frames"][0]                        # one pixel-identical pair
    w = {k: v * 0.3 if k in ("frames", "references") else v for k, v in w.items()}  # no clamping
    outs = [augment_window(dict(w), Augment(colour=0.5), np.random.default_rng(s)) for s in range(12)]
    greys = 0
    for out in outs:
        assert torch.equal(out["frames"][0], out["references"][0])   # one colour map per window
        assert not torch.allclose(out["frames"], w["frames"], atol=1e-3)
        r = np.corrcoef(out["frames"][:, 0].flatten(), out["frames"][:, 1].flatten())[0, 1]
        greys += r > 0.999                 # grey: every channel an affine map of one luminance
        assert r > 0.999 or abs(r) < 0.2   # else the random channels stay independent
    assert 0 < greys < len(outs)


def test_off_by_default_and_bad_settings_name_their_key():
    assert not TrainConfig().augment.active
    with pytest.raises(ValueError, match="train.augment_flip"):
        TrainConfig(augment_flip=1.5)
    with pytest.raises(ValueError, match="train.augment_colour"):
        TrainConfig(augment_colour=1.0)
    with pytest.raises(ValueError, match="train.augment_jitter"):
        TrainConfig(augment_jitter=0.5)
    assert TrainConfig(augment_jitter=0.1).augment.active


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("corpus")))


def test_training_windows_are_augmented_and_validation_windows_never(corpus):
    aug = dataclasses.replace(SPEC, augment=Augment(flip=1.0, colour=0.3))

    def first_train(spec):
        return next(iter(build_train_loader(corpus, spec, batch_size=2, rank=0, seed=3, num_workers=0,
                                            shuffle_buffer=1, windows_per_clip=1, epoch_batches=1)))

    plain, altered = first_train(SPEC), first_train(aug)
    assert torch.equal(plain["sync_audio"], altered["sync_audio"])            # the same windows
    assert torch.allclose(altered["landmarks"], mirror_landmarks(plain["landmarks"]))
    assert not torch.allclose(altered["frames"], plain["frames"].flip(-1))    # recoloured as well
    val = [list(build_val_loader(corpus, s, batch_size=2, max_batches=2)) for s in (SPEC, aug)]
    assert all(torch.equal(a["frames"], b["frames"]) for a, b in zip(*val))
