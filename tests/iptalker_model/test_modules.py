"""Shapes of every module at the tiny and paper configs, and gradients reaching every parameter."""

import pytest
import torch

from iptalker_model import IPTalker, ModelConfig, PatchDiscriminator, SyncNet, mask_source
from iptalker_model.batch import random_batch
from iptalker_model.mask import lower_face_mask


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return ModelConfig.tiny()


def assert_all_parameters_get_gradients(module, loss):
    loss.backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


def test_iptalker_window_shapes_and_aux(tiny):
    b = random_batch(tiny, b=2, t=3)
    out, aux = IPTalker(tiny)(mask_source(b["frames"], tiny), b["references"], b["audio"])
    s, k, g = tiny.image_size, tiny.num_references, tiny.token_grid
    assert out.shape == (2, 3, 3, s, s) and out.abs().max() <= 1
    assert aux["flows"].shape == (6, k, 2, s, s)
    assert aux["masks"].shape == (6, k, 1, s, s) and 0 < aux["masks"].min() and aux["masks"].max() < 1
    assert torch.allclose(aux["masks"].sum(1), torch.ones(6, 1, s, s))   # weights over the K references
    assert aux["selection"].shape == (6, k)
    assert aux["warped"].shape == (6, k, 3, s, s)
    assert aux["embedding"].shape == (6, tiny.embed_dim, g, g)
    assert len(aux["pyramid_flows"]) == tiny.flow_scales


def test_iptalker_frames_equal_folded_window(tiny):
    """A [B, T] window gives the same frames as the B*T frames run one by one."""
    model = IPTalker(tiny)
    b = random_batch(tiny, b=1, t=2)
    masked = mask_source(b["frames"], tiny)
    window, _ = model(masked, b["references"], b["audio"])
    for t in range(2):
        frame, _ = model(masked[:, t], b["references"], b["audio"][:, t])
        assert torch.allclose(window[:, t], frame, atol=1e-5)


def test_only_the_masked_region_changes(tiny):
    b = random_batch(tiny, b=1, t=2)
    out, _ = IPTalker(tiny)(mask_source(b["frames"], tiny), b["references"], b["audio"])
    outside = (lower_face_mask(tiny) == 0).expand_as(out)
    assert torch.equal(out[outside], b["frames"][outside])
    inside = (lower_face_mask(tiny) == 1).expand_as(out)
    assert not torch.allclose(out[inside], b["frames"][inside])


def test_iptalker_gradients_reach_every_parameter(tiny):
    model = IPTalker(tiny)
    b = random_batch(tiny, b=1, t=2)
    out, aux = model(mask_source(b["frames"], tiny), b["references"], b["audio"])
    assert_all_parameters_get_gradients(model, out.square().mean() + aux["warped"].mean())


def test_syncnet_shapes_and_gradients(tiny):
    net = SyncNet(tiny)
    b = random_batch(tiny, b=3)
    v, a = net(net.lower_face(b["frames"]), b["sync_audio"])
    assert v.shape == a.shape == (3, tiny.syncnet_embed)
    assert torch.allclose(v.norm(dim=-1), torch.ones(3)) and torch.allclose(a.norm(dim=-1), torch.ones(3))
    p = net.sync_probability(net.lower_face(b["frames"]), b["sync_audio"])
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
    assert_all_parameters_get_gradients(net, -p.log().mean())


def test_discriminator_shapes_and_gradients(tiny):
    d = PatchDiscriminator(tiny)
    logits = d(random_batch(tiny, b=2, t=2)["frames"])
    side = tiny.image_size // 2**tiny.disc_layers
    assert logits.shape == (4, 1, side, side)
    assert_all_parameters_get_gradients(d, logits.mean())


def test_paper_config_builds_and_runs_one_frame():
    """Paper size: 256 px, K=5, Whisper-tiny width. Parameter counts are quoted in the README."""
    torch.manual_seed(0)
    cfg = ModelConfig.paper()
    model, syncnet, disc = IPTalker(cfg), SyncNet(cfg), PatchDiscriminator(cfg)
    counts = {"iptalker": n_params(model), "alignment": n_params(model.alignment),
              "syncnet": n_params(syncnet), "discriminator": n_params(disc)}
    assert 10e6 < counts["iptalker"] < 60e6, counts
    b = random_batch(cfg, b=1, t=1)
    with torch.no_grad():
        out, aux = model(mask_source(b["frames"][:, 0], cfg), b["references"], b["audio"][:, 0])
        v, a = syncnet(syncnet.lower_face(random_batch(cfg, b=1)["frames"]), random_batch(cfg, b=1)["sync_audio"])
        logits = disc(out)
    assert out.shape == (1, 3, 256, 256) and aux["flows"].shape == (1, 5, 2, 256, 256)
    assert v.shape == a.shape == (1, cfg.syncnet_embed)
    assert logits.shape == (1, 1, 32, 32)
