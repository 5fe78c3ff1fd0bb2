"""``iptalker evaluate``: the model beside its baselines on a frozen eval set (see ``job``)."""

from pipelines.evaluate.config import EvaluateConfig
from pipelines.evaluate.job import EvalReport, run_evaluation

__all__ = ["EvalReport", "EvaluateConfig", "run_evaluation"]
