"""The trainer's validation metrics: mouth-audio correlation and window LSE-D/C."""

import math

import torch

from iptalker_model import ModelConfig, SyncNet
from iptalker_model.batch import random_batch
from pipelines.train.val_metrics import DubbingMetrics, mouth_opening_proxy, pearson


def _mouths(cfg, openness: torch.Tensor):
    """Grey faces whose lips box is darkened by ``openness`` [N] (0 closed .. 1 open)."""
    lm = random_batch(cfg, b=1, t=len(openness))["landmarks"][0]        # [N, 68, 2]
    frames = torch.full((len(openness), 3, cfg.image_size, cfg.image_size), 0.4)
    s = cfg.image_size
    for i, o in enumerate(openness):
        rows = slice(int(0.7 * s), int(0.7 * s + o * 0.1 * s) + 1)
        frames[i, :, rows, int(0.4 * s):int(0.6 * s)] = -0.9             # dark interior
    return frames, lm


def test_mouth_proxy_follows_the_opening_and_metrics_correlate_with_loudness():
    cfg = ModelConfig.tiny()
    openness = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0, 0.3, 0.0, 0.7, 0.1, 0.6])
    frames, lm = _mouths(cfg, openness)
    proxy = mouth_opening_proxy(frames, lm, cfg)
    assert pearson(proxy, openness) > 0.95 and proxy[0] == 0
    metrics = DubbingMetrics(cfg, SyncNet(cfg))
    batch = random_batch(cfg, b=2)
    t = cfg.sync_frames
    batch["frames"], batch["landmarks"] = frames.reshape(2, t, *frames.shape[1:]), lm.reshape(2, t, 68, 2)
    batch["audio_rms"] = openness.reshape(2, t)                           # loud when open
    metrics.add(batch, batch["frames"])                                   # "generated" = real
    out = metrics.result()
    assert out["mouth_audio_r"] > 0.95 and out["mouth_audio_r_real"] > 0.95
    assert out["lse_d"] > 0 and math.isfinite(out["lse_c"])
    still = DubbingMetrics(cfg)                                           # a mouth that never moves
    still.add(batch, frames[:1].expand(2 * t, -1, -1, -1).reshape(batch["frames"].shape))
    assert "mouth_audio_r" not in still.result()                          # constant: no r, not 0
