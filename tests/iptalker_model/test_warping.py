import torch
import torch.nn.functional as F

from iptalker_model.warping import upsample_flow, warp


def test_zero_flow_returns_input_exactly():
    x = torch.randn(2, 5, 96, 80, generator=torch.Generator().manual_seed(0))
    assert torch.equal(warp(x, torch.zeros(2, 2, 96, 80)), x)


def test_translation_moves_a_pattern_by_that_many_pixels():
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 10:14, 20:23] = 1.0                          # a bright block at rows 10-13, cols 20-22
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 0], flow[:, 1] = 5.0, -3.0                    # sample from 5 px right, 3 px up
    y = warp(x, flow)                                     # so the block moves 5 left, 3 down
    expected = torch.zeros_like(x)
    expected[0, 0, 13:17, 15:18] = 1.0
    assert torch.equal(y, expected)


def test_half_pixel_flow_interpolates():
    x = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 4, 8).contiguous()
    flow = torch.zeros(1, 2, 4, 8)
    flow[:, 0] = 0.5
    assert torch.allclose(warp(x, flow)[0, 0, 0, :7], torch.arange(7.0) + 0.5)


def test_matches_grid_sample_for_random_flows_and_passes_gradients():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 24, 24, generator=g)
    flow = (torch.randn(2, 2, 24, 24, generator=g) * 4).requires_grad_()
    h = w = 24
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    grid = torch.stack([(xs + flow[:, 0]) * 2 / (w - 1) - 1, (ys + flow[:, 1]) * 2 / (h - 1) - 1], -1)
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    ours = warp(x, flow)
    assert torch.allclose(ours, ref, atol=1e-4)
    ours.sum().backward()
    assert flow.grad is not None and flow.grad.abs().sum() > 0


def test_upsample_flow_rescales_pixel_units():
    flow = torch.full((1, 2, 8, 8), 1.5)
    assert torch.allclose(upsample_flow(flow, 32), torch.full((1, 2, 32, 32), 6.0))
