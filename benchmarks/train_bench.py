"""Training throughput and memory: is the loader fast enough, and what does each ZeRO stage save?

1. Loader windows/s alone (shard read + mp4 decode + window cutting, DataLoader workers) vs the
   training step's samples/s (iptalker stage, G + D, one rank, batch preloaded): the ratio should
   be >= 5 so data never limits training. Both on the same synthetic shards in the same run.
2. Memory per rank for ZeRO-0/1/2/3 with 2 ranks under torchrun on the paper network
   (paper widths; on CPU the frames are 64 px so a step takes seconds, which changes activations
   but not the parameter/gradient/optimizer state ZeRO partitions). CPU: peak RSS over the
   baseline after imports, and the RSS still held after the steps (model + optimizer state, the
   part ZeRO partitions); GPU: ``torch.cuda.max_memory_allocated`` too.

  .venv/bin/python benchmarks/train_bench.py            # CPU: tiny for (1), paper@64px for (2)
  .venv/bin/python benchmarks/train_bench.py --preset paper --zero 2 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("DS_BUILD_OPS", "0")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))

import torch  # noqa: E402


def job_dict(data: str, out_dir: str, preset: str, image_size: int | None, zero: int, batch: int,
             precision: str = "auto") -> dict:
    model = {"preset": preset, **({"image_size": image_size} if image_size else {})}
    return {"train": {"data": data, "stage": "iptalker", "out_dir": out_dir, "zero_stage": zero,
                      "batch_size": batch, "num_workers": 0, "max_steps": 1000, "precision": precision},
            "model": model, "tracking": {"enabled": False}}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ 1. loader vs step
def loader_windows_per_s(data: str, spec, batch: int, workers: int, batches: int) -> float:
    from pipelines.data.loader import build_train_loader

    loader = build_train_loader(data, spec, batch_size=batch, rank=0, seed=0, num_workers=workers,
                                shuffle_buffer=32, windows_per_clip=4, epoch_batches=batches + 3)
    it = iter(loader)
    for _ in range(3):  # start workers, fill the shuffle buffer
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t0)


def train_samples_per_s(job: dict, steps: int) -> tuple[float, int]:
    from pipelines.train.trainer import Trainer, TrainJob

    trainer = Trainer(TrainJob.from_dict(job))
    batch = next(iter(trainer.train_loader))
    trainer.train_step([batch])  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step([batch])
    return steps * job["train"]["batch_size"] / (time.perf_counter() - t0), trainer.world


def throughput(args, data: str, tmp: str) -> dict:
    from iptalker_model import ModelConfig
    from pipelines.data.loader import WindowSpec

    cfg = ModelConfig.preset(args.preset, **({"image_size": args.image_size} if args.image_size else {}))
    loader = loader_windows_per_s(data, WindowSpec.from_model(cfg), args.batch, args.workers, args.batches)
    job = job_dict(data, f"{tmp}/throughput", args.preset, args.image_size, 2, args.batch)
    step, _ = train_samples_per_s(job, args.steps)
    return {"preset": args.preset, "image_size": cfg.image_size, "loader_windows_per_s": loader,
            "loader_workers": args.workers, "train_samples_per_s": step, "ratio": loader / step}


# ------------------------------------------------------------------ 2. memory per ZeRO stage
def memory_worker(args) -> None:
    """One rank (under torchrun): build the trainer, run steps on a random batch, report peaks."""
    from iptalker_model.batch import random_batch
    from pipelines.train import engines
    from pipelines.train.known_warnings import filter_known_warnings
    from pipelines.train.trainer import Trainer, TrainJob

    filter_known_warnings()
    engines.init_distributed()
    base = rss_mb()
    trainer = Trainer(TrainJob.from_dict(json.loads(Path(args.job).read_text())))
    cfg, b = trainer.job.model, trainer.cfg.batch_size
    batch = {**random_batch(cfg, b, seed=trainer.rank), "corrupt_skipped": torch.tensor(0)}
    for _ in range(args.steps):
        trainer.train_step([batch])
    out = {"rank": trainer.rank, "zero": trainer.cfg.zero_stage, "baseline_rss_mb": base,
           "peak_rss_mb": peak_rss_mb(), "peak_over_baseline_mb": peak_rss_mb() - base,
           "held_after_step_mb": rss_mb() - base}  # params/grads/optimizer state, activations freed
    if torch.cuda.is_available():
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    Path(f"{args.out}.rank{trainer.rank}.json").write_text(json.dumps(out))
    sys.stdout.flush()
    os._exit(0)


def memory(args, data: str, tmp: str) -> list[dict]:
    from orchestration.launch import worker_env

    image = args.image_size or (None if torch.cuda.is_available() else 64)
    rows = []
    for z in args.zero:
        job_path = Path(tmp) / f"mem{z}.json"
        job_path.write_text(json.dumps(job_dict(data, f"{tmp}/mem{z}", "paper", image, z, 1,
                                                args.precision)))
        out = Path(tmp) / f"mem{z}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               __file__, "--memory-worker", "--job", str(job_path), "--out", str(out), "--steps", "2"]
        subprocess.run(cmd, env=worker_env(), check=True, stdout=subprocess.DEVNULL)
        rows += [json.loads(p.read_text()) for p in sorted(Path(tmp).glob(f"mem{z}.rank*.json"))]
    return rows


def main() -> None:
    from pipelines.train.known_warnings import filter_known_warnings

    filter_known_warnings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper" if torch.cuda.is_available() else "tiny")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--zero", type=int, nargs="*", default=[0, 1, 2, 3])
    p.add_argument("--precision", default="auto", help="memory runs: auto (GPU bf16, CPU fp32) or bf16")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--memory-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--job", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_worker:
        return memory_worker(args)
    from tests.fixtures.corpus import write_corpus

    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        data = write_corpus(f"{tmp}/corpus", videos=6, clips=2, frames=50, size=256)
        if not args.skip_throughput:
            res = throughput(args, data, tmp)
            print(f"loader {res['loader_windows_per_s']:.1f} windows/s ({args.workers} workers) vs "
                  f"train step {res['train_samples_per_s']:.1f} samples/s ({res['preset']} "
                  f"{res['image_size']}px, iptalker G+D, 1 rank): ratio {res['ratio']:.1f}x (target >= 5x)")
        for row in memory(args, data, tmp):
            gpu = f", cuda max {row['cuda_max_allocated_mb']:.0f} MB" if "cuda_max_allocated_mb" in row else ""
            print(f"ZeRO-{row['zero']} ({args.precision}) rank {row['rank']}: peak RSS {row['peak_rss_mb']:.0f} MB "
                  f"(+{row['peak_over_baseline_mb']:.0f} MB over baseline), held after the step "
                  f"+{row['held_after_step_mb']:.0f} MB{gpu}")


if __name__ == "__main__":
    main()
