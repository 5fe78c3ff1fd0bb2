"""``iptalker export --bundle``: a training run -> the model bundle folder, logged to its MLflow run.

The bundle (``pipelines.data.bundle``) holds what serving needs and nothing it must guess:
the consolidated fp32 IPTalker weights, the SyncNet expert this run was trained against (the
``train.syncnet_checkpoint`` saved beside the checkpoint), the identity of the Whisper encoder the
training data was featurised with, and the dataset lineage. Logging it as the run's ``bundle/``
artifact is what lets ``iptalker register --run RUN_ID`` package it later, on any machine.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.data import bundle as contract
from pipelines.data.storage import Storage, StorageConfig
from pipelines.errors import UserError
from pipelines.train.export import MODEL_STATES, _safe_globals, export_checkpoint, resolve_save_dir

BUNDLE_ARTIFACT = "bundle"  # the run artifact folder `iptalker register` packages


@dataclass
class BundleExport:
    path: Path
    run_id: str           # the training run's MLflow run ("" when the run was not tracked)
    tracking_uri: str
    logged: bool          # whether the bundle was logged to that run as ``bundle/``


def client_state(save_dir: Path, tag: str) -> dict:
    """The trainer's client state saved in DeepSpeed's model states (step, run id, job config);
    read with ``weights_only=True`` and only DeepSpeed's plain state classes allowed."""
    with torch.serialization.safe_globals(_safe_globals()):
        state = torch.load(save_dir / tag / MODEL_STATES, map_location="cpu", weights_only=True)
    return {k: state[k] for k in ("step", "mlflow_run_id", "config") if k in state}


def dataset_record(data_root: str, storage: Storage) -> tuple[dict, dict]:
    """(lineage of the training data, the Whisper encoder identity its ``dataset.json`` records;
    ``{}`` for data curated before encoders were recorded: dubbing then refuses the bundle)."""
    from pipelines import tracking
    from pipelines.data.encoder import recorded_encoder

    return tracking.dataset_lineage(data_root, storage), recorded_encoder(data_root, storage) or {}


def export_bundle(run_dir: str | Path, out_dir: str | Path, *, tag: str | None = None,
                  log_to_run: bool = True) -> BundleExport:
    """Write the bundle of an ``iptalker``-stage run to ``out_dir`` and log it to the run."""
    save_dir, newest = resolve_save_dir(run_dir)
    tag = tag or newest
    state = client_state(save_dir, tag)
    job = state.get("config") or json.loads((save_dir / tag / "config.json").read_text())
    train = job["train"]
    if train["stage"] != "iptalker":
        raise UserError(f"{save_dir} holds a {train['stage']!r} run; a bundle is exported from an "
                        "iptalker-stage run (its SyncNet expert goes into the bundle)")
    expert = train.get("syncnet_checkpoint") or ""
    if not expert or not Path(expert).is_file():
        raise UserError(f"the run's SyncNet expert train.syncnet_checkpoint={expert!r} is not a "
                        "readable file; a bundle carries the expert the model was trained against")
    storage = Storage(StorageConfig(**job.get("storage", {})))
    lineage, whisper = dataset_record(train["data"], storage)
    run_id = state.get("mlflow_run_id") or ""
    tracking_uri = job.get("tracking", {}).get("tracking_uri") or ""
    with tempfile.TemporaryDirectory(prefix="iptalker-bundle-") as tmp:
        weights = export_checkpoint(save_dir, Path(tmp) / contract.IPTALKER_WEIGHTS, tag=tag)
        out = contract.write_bundle(out_dir, weights, expert, whisper=whisper, dataset=lineage,
                                    extra={"source": {"checkpoint": str(save_dir), "tag": tag,
                                                      "step": state.get("step"), "run_id": run_id}})
    logged = False
    if log_to_run and run_id and tracking_uri:
        from pipelines import tracking

        cfg = tracking.TrackingConfig(tracking_uri=tracking_uri)
        tracking.client(cfg).log_artifacts(run_id, str(out), BUNDLE_ARTIFACT)
        logged = True
    return BundleExport(Path(out), run_id, tracking_uri, logged)
