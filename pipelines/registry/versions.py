"""What a model version carries: tags for lineage and metrics, and reading them back.

Tags (``iptalker register`` writes them, ``promote`` reads them): ``dataset.version``,
``dataset.sha256``, ``eval_set.version``, ``git.commit`` (the packaged code), ``train.run_id``,
``metric.<name>`` (evaluation metrics, flat names such as ``self.mouth_psnr``), ``evaluation.run_id``
(the ``iptalker evaluate`` run they came from, with ``register --evaluation``).
"""

from __future__ import annotations

import subprocess

from pipelines.errors import UserError

METRIC_PREFIX = "metric."
# the model's own evaluation metrics (the report's baseline.* numbers describe the data, not the
# version: they stay in the evaluation run)
EVAL_PREFIXES = ("self.", "cross.")
EVAL_SET_TAG = "eval_set.version"


def git_commit(repo) -> str:
    """HEAD of the checkout being packaged (``-dirty`` with uncommitted changes), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def eval_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The evaluation metrics among a run's metrics (training losses are not comparable)."""
    return {k: float(v) for k, v in metrics.items() if k.startswith(EVAL_PREFIXES)}


def metric_tags(metrics: dict[str, float], eval_set: str) -> dict[str, str]:
    tags = {METRIC_PREFIX + k: repr(float(v)) for k, v in eval_metrics(metrics).items()}
    return {**tags, EVAL_SET_TAG: eval_set} if eval_set else tags


def tagged_metrics(version) -> tuple[dict[str, float], str]:
    """(metrics, eval-set version) recorded on a ModelVersion."""
    tags = version.tags or {}
    metrics = {k[len(METRIC_PREFIX):]: float(v) for k, v in tags.items() if k.startswith(METRIC_PREFIX)}
    return metrics, tags.get(EVAL_SET_TAG, "")


def set_tags(client, name: str, version: str, tags: dict[str, str]) -> None:
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, str(v))


def alias_version(client, name: str, alias: str):
    """The ModelVersion behind ``name@alias``, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(e, "error_code", "")) or "not found" in str(e).lower():
            return None
        raise


def registered_model(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise UserError(f"no registered model {name!r}; register a run first with "
                        f"`iptalker register --run RUN_ID --name {name}`") from None
