"""One MLflow run per evaluation: params, finite metrics, the report files, and input lineage.

Lineage uses ``mlflow.log_input`` with two ``mlflow.data`` datasets: the curated dataset (digest =
sha256 of its dataset.json, context ``dataset``) and the frozen eval set (digest = its version,
context ``evalset``), so a registered model's metrics can be traced to the exact clips.
"""

from __future__ import annotations

import math

from pipelines import tracking
from pipelines.tracking import TrackingConfig

JOB_TAG, EVALSET_TAG, WEIGHTS_TAG = "iptalker.job", "evalset.version", "model.weights_sha256"


def _meta_dataset(source_uri: str, name: str, digest: str):
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    return MetaDataset(source=resolve_dataset_source(source_uri), name=name, digest=digest[:36])


def log_evaluation(report, es, lineage: dict, bundle, cfg, tracking_cfg: TrackingConfig, data_uri: str) -> str:
    """Log ``report`` as a new run; returns its id. NaN/inf metrics are left out (MLflow compares
    numbers; the JSON report keeps them)."""
    import mlflow

    tags = {JOB_TAG: "evaluate", EVALSET_TAG: es.version,
            "dataset.version": lineage.get("dataset.version", ""), "model.uri": report.model_uri,
            WEIGHTS_TAG: bundle.weights_sha256()}
    if mlflow.active_run() is not None:  # called inside a caller's run (e.g. promote): a child run
        run_id = mlflow.start_run(nested=True, run_name="evaluate", tags=tags).info.run_id
    else:
        run_id = tracking.start_run(tracking_cfg, tags=tags)
    try:
        tracking.log_params({"evaluate": cfg.to_dict(), "model_uri": report.model_uri,
                             "evalset.version": es.version, "evalset.clips": report.clips,
                             "whisper": bundle.whisper or {"identity": "unknown"}, **lineage})
        mlflow.log_metrics({k: v for k, v in report.metrics.items() if math.isfinite(v)})
        mlflow.log_input(_meta_dataset(data_uri, "dataset", lineage.get("dataset.sha256", "missing")),
                         context="dataset", tags={"version": lineage.get("dataset.version", "")})
        mlflow.log_input(_meta_dataset(str(report.evalset_path.resolve()), f"evalset-{es.version}", es.version),
                         context="evalset", tags={"version": es.version, "clips": str(report.clips)})
        for path in report.files():  # only what this evaluation wrote, not the whole --out folder
            mlflow.log_artifact(str(path), artifact_path="evaluation")
    except BaseException:
        tracking.end_run("FAILED")
        raise
    tracking.end_run()
    return run_id
