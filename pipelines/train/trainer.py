"""``iptalker train``: one DeepSpeed loop for both stages, readable top to bottom.

  --stage syncnet   trains the lip-sync expert (one engine)
  --stage iptalker  trains the generator and the patch discriminator (one engine each, so each
                    has its own ZeRO-partitioned optimizer, LR schedule and checkpoint) against
                    the frozen expert (a plain module, replicated: it is never updated)

The per-step losses come from the model package's task layer (``iptalker_model.training``); this
file only moves batches, calls ``backward``/``step`` on the engines, and schedules logging,
validation, samples and checkpoints. Every rank-0 side effect sits behind ``self.is_main()``;
everything that runs a forward pass (validation, samples) runs on all ranks, since ZeRO-3 gathers
parameters collectively.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from iptalker_model import IPTalker, LossConfig, ModelConfig, PatchDiscriminator, SyncNet
from iptalker_model import training as task
from iptalker_model.checkpoint import load_syncnet
from pipelines import tracking
from pipelines.data.loader import WindowSpec, build_train_loader, build_val_loader, has_split
from pipelines.data.storage import Storage, StorageConfig
from pipelines.tracking import TrackingConfig
from pipelines.train import checkpointing, engines
from pipelines.train.config import TrainConfig
from pipelines.train.samples import write_sample_grid, write_sample_video
from pipelines.train.val_metrics import DubbingMetrics

log = logging.getLogger(__name__)


@dataclass
class TrainJob:
    """The fully resolved job: what the launcher writes to ``<out_dir>/resolved_config.json``."""

    train: TrainConfig
    model: ModelConfig
    loss: LossConfig = field(default_factory=LossConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def to_dict(self) -> dict:
        return {"train": self.train.to_dict(), "model": self.model.to_dict(),
                "loss": self.loss.to_dict(), "tracking": self.tracking.to_dict(),
                "storage": self.storage.public_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainJob:
        train = TrainConfig.from_dict(d.get("train", {}))
        # `model:` = fields over a named preset ({"preset": "paper", "image_size": 128}); a full
        # ModelConfig dict (what the settings loader and to_dict produce) works as is
        model = dict(d.get("model") or {})
        preset = ModelConfig.preset(model.pop("preset", "tiny")).to_dict()
        model = ModelConfig.from_dict({**preset, **model})
        loss = LossConfig.from_dict({"sync_window": model.sync_frames, **d.get("loss", {})})
        return cls(train, model, loss, TrackingConfig.from_dict(d.get("tracking", {})),
                   StorageConfig(**d.get("storage", {})))


class Trainer:
    def __init__(self, job: TrainJob):
        self.job, self.cfg = job, job.train
        self.rank, self.local_rank, self.world = engines.init_distributed()
        self.device = engines.device()
        self.precision = engines.resolve_precision(self.cfg.precision)
        self.dtype = engines.dtype_of(self.precision)
        self.step, self.epoch, self.data_seed, self.run_id = 0, 0, self.cfg.seed, ""
        self.build_engines()
        if self.cfg.resume:
            self.resume()
        self.start_tracking()
        self.build_loaders()

    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ setup
    def build_engines(self) -> None:
        """syncnet stage: {model: SyncNet}; iptalker stage: {model: IPTalker, discriminator}."""
        cfg, model_cfg = self.cfg, self.job.model
        ds = engines.deepspeed_config(cfg, self.precision)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        main = SyncNet(model_cfg) if cfg.stage == "syncnet" else IPTalker(model_cfg)
        engine = engines.build_engine(main, cfg.lr, cfg.weight_decay, ds, cfg.beta1)[0]
        self.engines = {checkpointing.MODEL: engine}
        self.syncnet = None
        if cfg.stage == "iptalker":
            disc = PatchDiscriminator(model_cfg)
            self.engines[checkpointing.DISCRIMINATOR] = engines.build_engine(
                disc, cfg.disc_lr, cfg.weight_decay, ds, engines.DISCRIMINATOR_BETA1)[0]
            self.syncnet = self.load_expert()

    def load_expert(self):
        """The frozen SyncNet (eval mode, no grads), or None: the sync loss is then skipped."""
        if not self.cfg.syncnet_checkpoint:
            log.warning("train.syncnet_checkpoint is empty: training without the sync loss")
            return None
        expert = load_syncnet(self.cfg.syncnet_checkpoint).to(self.device, self.dtype).eval()
        engines.set_requires_grad(expert, False)
        return expert

    def build_loaders(self) -> None:
        cfg, spec = self.cfg, WindowSpec.from_model(self.job.model, self.cfg.reference, self.cfg.augment)
        storage = Storage(self.job.storage)
        # a resumed job continues with a fresh stream instead of replaying the first batches
        seed = self.data_seed * 100_003 + self.step
        self.train_loader = build_train_loader(
            cfg.data, spec, batch_size=cfg.batch_size, rank=self.rank, seed=seed,
            num_workers=cfg.num_workers, shuffle_buffer=cfg.shuffle_buffer,
            windows_per_clip=cfg.windows_per_clip, epoch_batches=cfg.epoch_batches, storage=storage)
        self.val_loader = None
        if has_split(cfg.data, "val", storage):
            self.val_loader = build_val_loader(cfg.data, spec, batch_size=cfg.batch_size,
                                               max_batches=cfg.val_batches, seed=cfg.seed, storage=storage)
        elif self.is_main():
            print(f"no validation samples in {cfg.data} (its val shard set is empty): training without "
                  "validation; curate with curate.val_fraction > 0 or curate.val_identities to get them",
                  file=sys.stderr, flush=True)

    def start_tracking(self) -> None:
        """Rank 0 opens (or reopens, on resume) the MLflow run; all ranks learn its id."""
        if self.is_main() and self.job.tracking.enabled:
            new = not self.run_id
            self.run_id = tracking.start_run(self.job.tracking, self.run_id,
                                             tags={"stage": self.cfg.stage})
            if new:
                tracking.log_params(self.job.to_dict())
                tracking.log_params({"world_size": self.world, "precision": self.precision})
                tracking.log_dataset_lineage(self.cfg.data, Storage(self.job.storage))
                tracking.log_dict(self.job.to_dict(), "config/resolved_config.json")
        self.run_id = engines.broadcast_str(self.run_id)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        """Train until ``max_steps``; returns the last logged metrics."""
        cfg, window, last = self.cfg, defaultdict(list), {}
        batches, busy, wait = self.batches(), 0.0, 0.0  # busy: data + step time, not val/save
        self.bar = self.progress_bar()
        while self.step < cfg.max_steps:
            t0 = time.perf_counter()
            micro = [next(batches) for _ in range(cfg.grad_accum)]
            t1 = time.perf_counter()
            terms = self.train_step(micro)
            for k, v in terms.items():
                window[k].append(v)
            self.step += 1
            busy, wait = busy + time.perf_counter() - t0, wait + t1 - t0
            self.tick(terms, time.perf_counter() - t0)
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                last = self.log_train(window, busy, wait)
                window, busy, wait = defaultdict(list), 0.0, 0.0
            if self.step % cfg.val_every == 0 or self.step == cfg.max_steps:
                last.update(self.evaluate())
            if self.step % cfg.save_every == 0 or self.step == cfg.max_steps:
                self.save()
        if self.bar is not None:
            self.bar.close()
        return last

    def batches(self):
        """Endless batches; ``with_epoch`` ends a pass over the (resampled) stream, we count epochs."""
        while True:
            yield from self.train_loader
            self.epoch += 1

    def to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, dtype=self.dtype if v.is_floating_point() else v.dtype,
                        non_blocking=True) for k, v in batch.items() if k != "corrupt_skipped"}

    def train_step(self, micro_batches: list[dict]) -> dict[str, float]:
        """One optimizer step (``grad_accum`` micro-batches); returns this rank's mean terms."""
        sums: dict[str, float] = defaultdict(float)
        for raw in micro_batches:
            batch = self.to_device(raw)
            terms = self.syncnet_step(batch) if self.cfg.stage == "syncnet" else self.gan_step(batch)
            terms["corrupt_skipped"] = float(raw["corrupt_skipped"]) * len(micro_batches)
            for k, v in terms.items():
                sums[k] += v / len(micro_batches)
        return dict(sums)

    def syncnet_step(self, batch: dict) -> dict[str, float]:
        engine = self.engines[checkpointing.MODEL]
        out = task.syncnet_losses(engine, batch)
        engine.backward(out["total_loss"])
        engine.step()
        return scalars(out)

    def gan_step(self, batch: dict) -> dict[str, float]:
        """Generator step (D frozen, gradients reach G through D), then discriminator step."""
        gen, disc = self.engines[checkpointing.MODEL], self.engines[checkpointing.DISCRIMINATOR]
        engines.set_requires_grad(disc.module, False)
        g = task.generator_losses(gen, disc.module, self.syncnet, batch, self.job.loss)
        gen.backward(g["total_loss"])
        gen.step()
        engines.set_requires_grad(disc.module, True)
        d = task.discriminator_losses(disc, batch["frames"], g["output"].detach())
        disc.backward(d["total_loss"])
        disc.step()
        return {**scalars(g), **{f"disc_{k}": v for k, v in scalars(d).items()}}

    # ------------------------------------------------------------------ reporting
    @property
    def samples_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.grad_accum * self.world

    def progress_bar(self):
        """Rank 0 at a terminal: a per-step tqdm bar (ETA included); elsewhere log lines only."""
        if not (self.is_main() and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=self.cfg.max_steps, initial=self.step, unit="step", file=sys.stderr)

    def tick(self, terms: dict, seconds: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{terms.get('total_loss', float('nan')):.4f}",
                                 samples_s=f"{self.samples_per_step / max(seconds, 1e-9):.1f}")

    def log_train(self, window: dict, elapsed: float, wait: float) -> dict:
        """Average the window over steps and ranks; rank 0 prints progress and logs to MLflow."""
        metrics = {k: sum(v) / len(v) for k, v in window.items()}
        metrics["corrupt_skipped"] = sum(window.get("corrupt_skipped", [0.0]))
        metrics = engines.mean_over_ranks(metrics)
        metrics["corrupt_skipped"] *= self.world  # a total over ranks, not a mean
        steps = len(next(iter(window.values())))
        samples = steps * self.samples_per_step
        metrics.update({"lr": self.lr(), "samples_per_s": samples / max(elapsed, 1e-9),
                        "data_wait_fraction": min(1.0, wait / max(elapsed, 1e-9)), "epoch": self.epoch})
        if self.is_main():
            eta = (self.cfg.max_steps - self.step) * elapsed / max(steps, 1)
            line = progress_line(self.step, self.cfg.max_steps, metrics, eta)
            if self.bar is not None:
                self.bar.write(line)  # above the bar
            else:
                print(line, file=sys.stderr, flush=True)
            if self.run_id:
                tracking.log_metrics(metrics, step=self.step)
        return metrics

    def lr(self) -> float:
        return float(self.engines[checkpointing.MODEL].get_lr()[0])

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean losses on the identity-disjoint val split (all ranks), plus a sample grid; for
        IPTalker also mouth-audio correlation and LSE-D/C of the generated windows."""
        if self.val_loader is None:
            return {}
        main = self.engines[checkpointing.MODEL]
        main.eval()
        sums, n, first = defaultdict(float), 0, None
        dubbing = DubbingMetrics(self.job.model, self.syncnet)
        for raw in self.val_loader:
            batch = self.to_device(raw)
            if self.cfg.stage == "syncnet":
                out = task.syncnet_losses(main, batch)
            else:
                out = task.generator_losses(main, None, self.syncnet, batch, self.job.loss)
                dubbing.add(batch, out["output"])
            if first is None:
                first = (batch, out.get("output"))
            for k, v in scalars(out).items():
                sums[f"val_{k}"] += v
            n += 1
        main.train()
        means = {k: v / n for k, v in sums.items()}
        means.update({f"val_{k}": v for k, v in dubbing.result().items()})
        metrics = engines.mean_over_ranks(means) if n else {}
        if self.is_main() and first is not None:
            self.log_samples(*first)
            if self.run_id and metrics:
                tracking.log_metrics(metrics, step=self.step)
        return metrics

    def log_samples(self, batch: dict, generated) -> None:
        """reference | generated | ground truth: a grid of the first window, a video of all (rank 0)."""
        base = Path(self.cfg.out_dir) / "samples" / f"step_{self.step:08d}"
        gen = None if generated is None else generated.detach()
        paths = [write_sample_grid(base.with_suffix(".png"), batch["references"][0],
                                   batch["frames"][0], None if gen is None else gen[0]),
                 write_sample_video(base.with_suffix(".mp4"), batch["references"], batch["frames"], gen)]
        if self.run_id:
            for path in paths:
                tracking.log_artifact(path, "samples")

    # ------------------------------------------------------------------ checkpoints
    def client_state(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "data_seed": self.data_seed,
                "mlflow_run_id": self.run_id, "config": self.job.to_dict()}

    def save(self) -> None:
        """All ranks: ZeRO shards live on every rank."""
        tag = checkpointing.save(self.engines, self.cfg.out_dir, self.step, self.client_state(),
                                 is_main=self.is_main())
        if self.is_main():
            print(f"saved checkpoint {tag} under {checkpointing.checkpoint_root(self.cfg.out_dir)}",
                  file=sys.stderr, flush=True)

    def resume(self) -> None:
        """Continue from the newest complete checkpoint: weights, optimizer, LR schedule, step, data seed, run id."""
        state = checkpointing.load(self.engines, self.cfg.out_dir, self.cfg.stage)
        if state is None:
            if self.is_main():
                print("resume: no checkpoint yet, starting from step 0", file=sys.stderr)
            return
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.data_seed, self.run_id = int(state["data_seed"]), state.get("mlflow_run_id", "")
        if self.is_main():
            print(f"resumed at step {self.step} (MLflow run {self.run_id})", file=sys.stderr)

    def close(self, status: str = "FINISHED", metrics: dict | None = None) -> None:
        """Rank 0: end the MLflow run and write ``<out_dir>/summary.json`` for the launcher."""
        if not self.is_main():
            return
        if self.run_id:
            tracking.end_run(status)
        summary = {"status": status, "stage": self.cfg.stage, "step": self.step,
                   "mlflow_run_id": self.run_id, "tracking_uri": self.job.tracking.resolved_uri(),
                   "out_dir": self.cfg.out_dir,
                   "checkpoints": str(checkpointing.checkpoint_root(self.cfg.out_dir)),
                   "metrics": metrics or {}}
        (Path(self.cfg.out_dir) / "summary.json").write_text(json.dumps(summary, indent=2))


def scalars(out: dict) -> dict[str, float]:
    """Loss/metric floats of a task-layer result (tensors with a graph and images dropped)."""
    return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()
            if isinstance(v, float | int) or (torch.is_tensor(v) and v.numel() == 1)}


def progress_line(step: int, total: int, metrics: dict, eta_s: float) -> str:
    loss = metrics.get("total_loss", float("nan"))
    eta = time.strftime("%H:%M:%S", time.gmtime(max(0, eta_s))) if math.isfinite(eta_s) else "?"
    return (f"step {step}/{total} | loss {loss:.4f} | lr {metrics['lr']:.2e} | "
            f"{metrics['samples_per_s']:.1f} samples/s | data wait {metrics['data_wait_fraction']:.0%}"
            f" | eta {eta}")


def train(job: TrainJob) -> dict:
    """Run one training job in this process (one rank); returns the last metrics."""
    trainer = Trainer(job)
    try:
        metrics = trainer.fit()
    except BaseException:
        trainer.close("FAILED")
        raise
    trainer.close(metrics=metrics)
    return metrics
