"""IPTalker forward and forward+backward cost per generated frame, tiny and paper configs.

Each config runs one training window (B clips x T frames, K references, references encoded once
per clip) and reports ms per frame for the forward pass and for forward+backward of the full
``generator_losses`` step (reconstruction, warp, flow, GAN and sync terms, no VGG). The same-run
baseline is the forward alone: the printed ratio (fwd+bwd)/fwd is typically 2-3 for convnets.
Figures are the best of ``--repeats`` runs (the machine is shared). Runs on CUDA when available
(``--device`` to force), and says which device gave the numbers.

    .venv/bin/python benchmarks/model_bench.py [--configs tiny,paper] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from iptalker_model import (
    IPTalker,
    LossConfig,
    ModelConfig,
    PatchDiscriminator,
    SyncNet,
    mask_source,
)
from iptalker_model.batch import random_batch
from iptalker_model.training import generator_losses


def best_seconds(fn, repeats: int, device) -> float:
    fn()  # warm-up (allocator, cuDNN autotune, lazy init)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def bench(name: str, b: int, repeats: int, device) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.preset(name)
    model, disc, syncnet = IPTalker(cfg).to(device), PatchDiscriminator(cfg).to(device), SyncNet(cfg).to(device)
    syncnet.requires_grad_(False)
    t = cfg.sync_frames
    batch = random_batch(cfg, b, t, device=device)
    loss_cfg = LossConfig(perceptual_weight=0.0)

    def forward():
        with torch.no_grad():
            model(mask_source(batch["frames"], cfg), batch["references"], batch["audio"])

    def train_step():
        model.zero_grad(set_to_none=True)
        generator_losses(model, disc, syncnet, batch, loss_cfg)["total_loss"].backward()

    frames = b * t
    fwd = best_seconds(forward, repeats, device) / frames * 1e3
    step = best_seconds(train_step, repeats, device) / frames * 1e3
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{name:6s} {cfg.image_size:4d}px  {params:6.2f}M params  window {b}x{t} frames  "
          f"fwd {fwd:8.1f} ms/frame  fwd+bwd {step:8.1f} ms/frame  ratio {step / fwd:4.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="tiny,paper")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} torch threads")
    print(f"device: {where}; torch {torch.__version__}")
    for name in args.configs.split(","):
        # paper size on CPU: one clip keeps the run short; on a GPU use a realistic batch
        b = 2 if name == "tiny" or device.type == "cuda" else 1
        bench(name, b, args.repeats, device)


if __name__ == "__main__":
    main()
