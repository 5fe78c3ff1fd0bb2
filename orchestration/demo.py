"""``iptalker demo``: the whole pipeline, locally, on a generated corpus.

Each step calls the same library function as its CLI verb, so the demo exercises what users run:
synthetic talking heads -> curate (Ray in-process) -> train the SyncNet expert -> export it ->
train IPTalker against the frozen expert -> export it. Evaluation, registry/promotion and dubbing
are later issues; the demo lists them as still to come rather than faking them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestration.settings import Settings

STILL_TO_COME = ("evaluate", "register", "promote", "dub")


def run_demo(settings: Settings, out_dir: str | Path, *, videos: int = 6, seed: int = 0,
             steps: int = 30, log: Callable[[str], None] = print) -> dict[str, str]:
    """Run every step that exists; returns the paths it wrote, keyed by step."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}

    def step(n: int, name: str, fn: Callable[[], str]) -> None:
        t0 = time.monotonic()
        log(f"[{n}/6] {name} ...")
        paths[name] = fn()
        log(f"[{n}/6] {name} done in {time.monotonic() - t0:.0f} s -> {paths[name]}")

    step(1, "synth", lambda: _synth(out / "raw", videos, seed))
    step(2, "curate", lambda: _curate(settings, out / "raw", out / "dataset"))
    step(3, "train-syncnet", lambda: _train(settings, out, "syncnet", steps, ""))
    step(4, "export-syncnet", lambda: _export(out / "runs" / "syncnet", out / "models" / "syncnet.pt"))
    step(5, "train-iptalker", lambda: _train(settings, out, "iptalker", steps, paths["export-syncnet"]))
    step(6, "export-iptalker", lambda: _export(out / "runs" / "iptalker", out / "models" / "iptalker.pt"))
    log(f"still to come (later issues, not faked here): {', '.join(STILL_TO_COME)}")
    return paths


def _synth(raw: Path, videos: int, seed: int) -> str:
    from preprocessing.synthetic.corpus import generate_corpus, write_bad_inputs

    generate_corpus(raw, videos, seed=seed)
    write_bad_inputs(raw / "bad", seed=seed)
    return str(raw)


def _curate(settings: Settings, raw: Path, dataset: Path) -> str:
    from pipelines.curate.job import run_curation

    curate = settings.curate
    if not curate.val_identities:  # a hash split of 3 identities may leave val empty: pin one
        curate = dataclasses.replace(curate, val_identities=("id01",))
    summary = run_curation([str(raw)], str(dataset), curate, settings.preprocess,
                           settings.storage, ray_address=settings.ray.address,
                           ray_temp_dir=settings.ray.temp_dir, model=settings.model)
    print(summary.render())
    if not summary.counts["clips"]:
        raise RuntimeError("curation accepted no clips; nothing to train on")
    return str(dataset)


def _train(settings: Settings, out: Path, stage: str, steps: int, syncnet: str) -> str:
    from orchestration.launch import launch_training

    settings = dataclasses.replace(settings)
    t = settings.train
    if stage == "syncnet":  # a recipe's syncnet_* values (0 = as the iptalker stage)
        t = dataclasses.replace(t, max_steps=t.syncnet_max_steps or steps, lr=t.syncnet_lr or t.lr,
                                batch_size=t.syncnet_batch_size or t.batch_size)
    settings.train = dataclasses.replace(
        t, data=str(out / "dataset"), stage=stage, out_dir=str(out / "runs" / stage),
        max_steps=t.max_steps if stage == "syncnet" and t.syncnet_max_steps else steps,
        syncnet_checkpoint=syncnet or t.syncnet_checkpoint)
    settings.tracking = dataclasses.replace(
        settings.tracking, tracking_uri=settings.tracking.tracking_uri or f"sqlite:///{out / 'mlruns.db'}")
    summary = launch_training(settings, launcher="local")
    return f"{summary.get('out_dir')} (MLflow run {summary.get('mlflow_run_id')})"


def _export(run_dir: Path, out_path: Path) -> str:
    from pipelines.train.export import export_checkpoint

    return str(export_checkpoint(run_dir, out_path))
