import pytest
import torch

from iptalker_model import IPTalker, LossConfig, ModelConfig, PatchDiscriminator, SyncNet
from iptalker_model.batch import random_batch
from iptalker_model.losses import (
    VGGPerceptual,
    flow_smoothness,
    load_perceptual,
    masked_l1,
    psnr,
    ssim,
    warp_loss,
)
from iptalker_model.mask import lower_face_mask, mouth_box, mouth_region
from iptalker_model.training import discriminator_losses, generator_losses, syncnet_losses


@pytest.fixture(scope="module")
def cfg():
    return ModelConfig.tiny()


def test_ssim_and_psnr_order_images_by_similarity():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    near, far = x + 0.05 * torch.randn(x.shape, generator=g), torch.rand(x.shape, generator=g) * 2 - 1
    assert torch.isclose(ssim(x, x), torch.tensor(1.0))
    assert ssim(x, near) > ssim(x, far)
    assert psnr(x, near) > psnr(x, far) and psnr(x, near) > 25


def test_flow_smoothness_is_zero_for_a_constant_flow():
    assert flow_smoothness(torch.full((1, 5, 2, 16, 16), 3.0)) == 0
    assert flow_smoothness(torch.randn(1, 5, 2, 16, 16)) > 0


def test_mouth_region_follows_the_landmarks_not_the_mask(cfg):
    """An error on the cheek (inside the mask, outside the lips) moves the frame L1 but not the
    mouth L1; the same error on the lips moves the mouth L1 far more: two different terms."""
    lm = random_batch(cfg)["landmarks"][0, :1]                           # [1, 68, 2]
    region = mouth_region(lm, cfg)                                      # [1, 1, S, S]
    hidden = lower_face_mask(cfg)
    assert 0 < region.sum() < 0.5 * (hidden > 0.5).sum()
    target = torch.zeros(1, 3, cfg.image_size, cfg.image_size)
    cheek = target.clone()
    cheek[..., -3:, :3] = 1.0                                           # bottom-left corner
    lips = target + region                                              # the lips box only
    assert masked_l1(cheek, target, region) == 0 and masked_l1(lips, target, region) == 1.0
    rows, cols = mouth_box(cfg, lm)
    assert region[0, 0, rows, cols].all() and region.sum() == region[0, 0, rows, cols].sum()


def test_warp_loss_follows_the_confidences():
    """A reference the model does not trust (confidence ~0) costs nothing; a trusted one does."""
    target = torch.zeros(1, 3, 8, 8)
    warped = torch.stack([target, target + 1.0], 1)                    # [1, K=2, 3, 8, 8]
    hidden = torch.ones(1, 1, 8, 8)
    trust_good = torch.stack([torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)], 1)
    assert warp_loss(warped, trust_good, target, hidden) < 1e-3
    assert warp_loss(warped, trust_good.flip(1), target, hidden) > 0.99


def test_generator_losses_terms_and_weighted_total(cfg):
    torch.manual_seed(0)
    lc = LossConfig(perceptual_weight=0.0)
    losses = generator_losses(IPTalker(cfg), PatchDiscriminator(cfg), SyncNet(cfg), random_batch(cfg), lc)
    terms = {k: v for k, v in losses.items() if k.endswith("_loss") and k != "total_loss"}
    assert set(terms) == {"l1_loss", "ssim_loss", "mouth_l1_loss", "mouth_ssim_loss", "warp_loss",
                          "pyramid_warp_loss", "flow_smooth_loss", "gan_loss", "sync_loss"}
    total = sum(lc.weight(k) * v for k, v in terms.items())
    assert torch.allclose(losses["total_loss"], total)
    assert losses["output"].shape == random_batch(cfg)["frames"].shape


def test_generator_losses_skip_missing_networks_and_warn_without_vgg(cfg):
    with pytest.warns(UserWarning, match="perceptual loss skipped"):
        load_perceptual.cache_clear()
        losses = generator_losses(IPTalker(cfg), None, None, random_batch(cfg), LossConfig())
    assert "gan_loss" not in losses and "sync_loss" not in losses and "perceptual_loss" not in losses
    losses["total_loss"].backward()


def test_perceptual_loss_loads_weights_from_a_path(cfg, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "vgg19.pth"
    reference = VGGPerceptual()
    torch.save({**reference.state_dict(), "classifier.0.weight": torch.zeros(1)}, path)
    loaded = load_perceptual(str(path))
    assert torch.equal(loaded.features[0].weight, reference.features[0].weight)
    losses = generator_losses(IPTalker(cfg), None, None, random_batch(cfg),
                              LossConfig(perceptual_weights=str(path)))
    assert losses["perceptual_loss"] > 0
    with pytest.raises(FileNotFoundError, match="perceptual_weights"):
        load_perceptual(str(tmp_path / "missing.pth"))


def test_discriminator_and_syncnet_losses(cfg):
    b = random_batch(cfg)
    d = discriminator_losses(PatchDiscriminator(cfg), b["frames"], b["frames"].flip(0).requires_grad_())
    assert set(d) == {"real_loss", "fake_loss", "total_loss"}
    d["total_loss"].backward()
    s = syncnet_losses(SyncNet(cfg), b)
    assert s["total_loss"] > 0 and isinstance(s["accuracy"], float) and 0 <= s["accuracy"] <= 1


def test_bf16_training_step_runs(cfg):
    """DeepSpeed trains in bf16: every step of the task layer must run and stay finite there."""
    torch.manual_seed(0)
    b = {k: v.bfloat16() for k, v in random_batch(cfg).items()}
    model, disc, syncnet = IPTalker(cfg).bfloat16(), PatchDiscriminator(cfg).bfloat16(), SyncNet(cfg).bfloat16()
    g = generator_losses(model, disc, syncnet, b, LossConfig(perceptual_weight=0.0))
    g["total_loss"].backward()
    d = discriminator_losses(disc, b["frames"], g["output"])
    s = syncnet_losses(syncnet, b)
    assert all(torch.isfinite(x["total_loss"].float()) for x in (g, d, s))
