"""MLflow for every job: ``TrackingConfig``, start-or-resume a run, params, metrics, artifacts, lineage.

Why one module: training, evaluation and the registry all log to the same place the same way.
The embedded default is a sqlite store in the working directory (no server); a ``file:`` URI
uses MLflow's file store; point ``tracking_uri`` at ``http://host:5000`` for a shared
``mlflow server``. Callers make sure only
rank 0 calls in here; this module does not know about ranks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from iptalker_model.config import build_dataclass

MAX_PARAM_LEN = 6000  # MLflow rejects longer param values
PARAM_BATCH = 100  # MLflow's per-request param limit


@dataclass
class TrackingConfig:
    tracking_uri: str = ""          # "" -> sqlite:///<cwd>/mlruns.db (embedded default)
    experiment: str = "iptalker"
    artifact_location: str = ""     # "" -> the store's default (./mlartifacts or the server's)
    run_name: str = ""              # "" -> MLflow picks one
    enabled: bool = True

    def resolved_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{Path.cwd() / 'mlruns.db'}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrackingConfig:
        return build_dataclass(cls, d, label="tracking")


def _mlflow(cfg: TrackingConfig):
    import mlflow

    uri = cfg.resolved_uri()
    if "://" not in uri or uri.startswith("file:"):
        # MLflow 3 refuses the (maintenance-mode) file store unless asked; a file URI is asking
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    return mlflow


def experiment_id(cfg: TrackingConfig) -> str:
    """Get or create the experiment (with ``artifact_location`` when set)."""
    mlflow = _mlflow(cfg)
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    return mlflow.create_experiment(cfg.experiment, artifact_location=cfg.artifact_location or None)


def start_run(cfg: TrackingConfig, run_id: str = "", tags: dict | None = None) -> str:
    """Start a new run, or reopen ``run_id`` (a resumed job keeps its run). Returns the run id."""
    mlflow = _mlflow(cfg)
    if run_id:
        run = mlflow.start_run(run_id=run_id)
    else:
        run = mlflow.start_run(experiment_id=experiment_id(cfg), run_name=cfg.run_name or None,
                               tags=tags)
    return run.info.run_id


def end_run(status: str = "FINISHED") -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.end_run(status=status)


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """{"train": {"lr": 1e-4}} -> {"train.lr": "0.0001"} (values as strings, clipped to MLflow's limit)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = (json.dumps(v) if isinstance(v, list | tuple | dict) else str(v))[:MAX_PARAM_LEN]
    return out


def log_params(params: dict) -> None:
    """Log a (nested) dict as flat params, in MLflow-sized batches."""
    import mlflow

    items = list(flatten(params).items())
    for i in range(0, len(items), PARAM_BATCH):
        mlflow.log_params(dict(items[i:i + PARAM_BATCH]))


def log_metrics(metrics: dict[str, float], step: int) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_dict(d: dict, artifact_file: str) -> None:
    import mlflow

    mlflow.log_dict(d, artifact_file)


def dataset_lineage(data_root: str, storage=None) -> dict[str, str]:
    """Path, sha256 and version of ``<root>/dataset.json``: what exactly this run trained on."""
    from pipelines.data import shards as contract
    from pipelines.data.storage import Storage, join

    storage = storage or Storage()
    uri = join(data_root, contract.DATASET_JSON)
    if not storage.exists(uri):
        return {"dataset.path": data_root, "dataset.json": "missing"}
    raw = storage.read_bytes(uri)
    info = json.loads(raw)
    return {"dataset.path": data_root, "dataset.json": uri,
            "dataset.sha256": hashlib.sha256(raw).hexdigest(),
            "dataset.version": str(info.get("version", ""))}


def log_dataset_lineage(data_root: str, storage=None) -> dict[str, str]:
    """Log the lineage as params and tags (searchable either way) and keep ``dataset.json`` as an
    artifact. Call once per run: params cannot change on a reopened run."""
    import mlflow

    from pipelines.data.storage import Storage

    storage = storage or Storage()
    lineage = dataset_lineage(data_root, storage)
    mlflow.log_params(lineage)
    mlflow.set_tags(lineage)
    if "dataset.sha256" in lineage:
        mlflow.log_dict(json.loads(storage.read_bytes(lineage["dataset.json"])), "lineage/dataset.json")
    return lineage
