"""``iptalker register --run RUN_ID [--evaluation EVAL_RUN_ID]``: package the run's bundle as a
pyfunc model version, tag its lineage and metrics, and make it the ``challenger``.

Metrics come from ``--evaluation`` (an ``iptalker evaluate`` run of this very bundle: its weights'
sha256 must match) or else from the training run itself. Tagged metrics on a named eval set let
``promote`` gate without evaluating the model a second time."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines import tracking
from pipelines.data.bundle import ARTIFACT_KEY, resolve_bundle
from pipelines.errors import UserError
from pipelines.registry import audit, packaging, versions
from pipelines.tracking import TrackingConfig

CHALLENGER = "challenger"


@dataclass
class Registered:
    name: str
    version: str
    run_id: str
    tags: dict

    def render(self) -> str:
        metrics = {k: v for k, v in self.tags.items() if k.startswith(versions.METRIC_PREFIX)}
        return (f"Registered {self.name} version {self.version} from run {self.run_id} as "
                f"{self.name}@{CHALLENGER} (dataset {self.tags.get('dataset.version') or '?'}, "
                f"code {self.tags.get('git.commit', '?')[:12]}, {len(metrics)} metrics tagged"
                f"{', eval set ' + self.tags[versions.EVAL_SET_TAG] if versions.EVAL_SET_TAG in self.tags else ''}).")


def lineage_tags(run, bundle_meta: dict) -> dict[str, str]:
    """Dataset, eval-set and code identity of the version, from the bundle and the run."""
    dataset = bundle_meta.get("dataset", {})
    tags = {"train.run_id": run.info.run_id,
            "dataset.version": dataset.get("dataset.version") or run.data.tags.get("dataset.version", ""),
            "dataset.sha256": dataset.get("dataset.sha256") or run.data.tags.get("dataset.sha256", ""),
            "git.commit": versions.git_commit(packaging.REPO_ROOT),
            "train.git_commit": run.data.tags.get("mlflow.source.git.commit", "")}
    eval_set = run.data.tags.get(versions.EVAL_SET_TAG) or run.data.params.get(versions.EVAL_SET_TAG, "")
    metrics = versions.eval_metrics(run.data.metrics)
    tags.update(versions.metric_tags(metrics, eval_set) if metrics else {})
    return {k: v for k, v in tags.items() if v}


def evaluation_tags(client, evaluation_run_id: str, bundle) -> dict[str, str]:
    """Metric tags from an evaluation run, refused (one line) unless it measured ``bundle``."""
    from mlflow.exceptions import MlflowException

    from pipelines.evaluate.mlflow_run import EVALSET_TAG, JOB_TAG, WEIGHTS_TAG

    try:
        ev = client.get_run(evaluation_run_id)
    except MlflowException:
        raise UserError(f"no MLflow run {evaluation_run_id!r} (--evaluation)") from None
    tags = ev.data.tags
    if tags.get(JOB_TAG) != "evaluate":
        raise UserError(f"run {evaluation_run_id} is not an `iptalker evaluate` run (--evaluation)")
    if tags.get(WEIGHTS_TAG) != bundle.weights_sha256():
        raise UserError(f"evaluation run {evaluation_run_id} measured another model (weights sha256 "
                        f"{tags.get(WEIGHTS_TAG, 'unknown')[:12]}), not this run's bundle")
    return versions.metric_tags(ev.data.metrics, tags.get(EVALSET_TAG, ""))


def register_run(run_id: str, name: str, tracking_cfg: TrackingConfig,
                 serving_config: dict | None = None, evaluation_run_id: str = "") -> Registered:
    """Log the pyfunc from ``runs:/RUN_ID/bundle``, register a version of ``name``, tag it, and
    point ``name@challenger`` at it. ``serving_config`` (``{"dub": ..., "preprocess": ...}``)
    becomes the pyfunc's ``model_config``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = tracking.client(tracking_cfg)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(f"no MLflow run {run_id!r} at {tracking_cfg.resolved_uri()}") from None
    with tempfile.TemporaryDirectory(prefix="iptalker-register-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=ARTIFACT_KEY,
                                                        dst_path=tmp)
        except MlflowException:
            raise UserError(f"run {run_id} has no {ARTIFACT_KEY}/ artifact; write and log one with "
                            "`iptalker export --run-dir RUN_DIR --out DIR --bundle`") from None
        bundle = resolve_bundle(local)  # a malformed bundle fails here, before anything registers
        measured = evaluation_tags(client, evaluation_run_id, bundle) if evaluation_run_id else {}
        version = packaging.log_model_in_run(client, run_id, Path(local), name, serving_config or {})
    tags = lineage_tags(run, bundle.meta)
    if measured:  # the evaluation's metrics replace any the training run carried
        tags = {k: v for k, v in tags.items() if not k.startswith(versions.METRIC_PREFIX)} | measured
        tags["evaluation.run_id"] = evaluation_run_id
    versions.set_tags(client, name, str(version.version), tags)
    client.set_registered_model_alias(name, CHALLENGER, str(version.version))
    audit.record_event(client, name, {"event": "register", "challenger": str(version.version),
                                      "run_id": run_id})
    return Registered(name, str(version.version), run_id, tags)
