"""The promotion gate: MLflow's own ``validate_evaluation_results`` with ``MetricThreshold``s
from ``registry.thresholds``, fed plain metric dicts wrapped as ``EvaluationResult``s.

A first promotion (no champion yet) checks the absolute floors only: MLflow fails a relative
check whose baseline is missing, and there is nothing to improve on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.registry.config import GateThreshold


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str]                     # MLflow's failure messages, one per failing metric
    table: list[dict] = field(default_factory=list)  # one row per gated metric

    @property
    def reason(self) -> str:
        """One line: the first failure (and how many more)."""
        if not self.reasons:
            return ""
        more = f" (+{len(self.reasons) - 1} more)" if len(self.reasons) > 1 else ""
        return self.reasons[0] + more


def metric_thresholds(cfg: dict[str, GateThreshold], with_baseline: bool) -> dict:
    """name -> ``mlflow.models.MetricThreshold`` (change terms only when a baseline exists)."""
    from mlflow.models import MetricThreshold

    out = {}
    for name, t in cfg.items():
        abs_change = t.min_absolute_change if with_baseline else None
        rel_change = float(t.min_relative_change) if with_baseline and t.min_relative_change is not None else None
        floor = float(t.min_value) if t.min_value is not None else None
        if floor is None and abs_change is None and rel_change is None:
            continue  # an improvement-only metric has nothing to check without a champion
        out[name] = MetricThreshold(threshold=floor, min_absolute_change=abs_change,
                                    min_relative_change=rel_change, greater_is_better=t.greater_is_better)
    return out


def evaluate_gate(cfg: dict[str, GateThreshold], challenger: dict[str, float],
                  champion: dict[str, float] | None) -> GateDecision:
    """Validate ``challenger`` metrics against the floors and against ``champion`` (or None)."""
    import mlflow
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    thresholds = metric_thresholds(cfg, champion is not None)
    table = decision_table(cfg, challenger, champion)
    try:
        mlflow.validate_evaluation_results(
            thresholds, EvaluationResult(dict(challenger), {}, run_id=""),
            EvaluationResult(dict(champion), {}, run_id="") if champion is not None else None)
    except ModelValidationFailedException as e:
        return GateDecision(False, [line for line in str(e.message).splitlines() if line.strip()], table)
    return GateDecision(True, [], table)


def decision_table(cfg: dict[str, GateThreshold], challenger: dict, champion: dict | None) -> list[dict]:
    rows = []
    for name, t in cfg.items():
        rows.append({"metric": name, "challenger": challenger.get(name),
                     "champion": None if champion is None else champion.get(name),
                     "better": "higher" if t.greater_is_better else "lower", "floor": t.min_value,
                     "min_abs_change": t.min_absolute_change, "min_rel_change": t.min_relative_change})
    return rows


def render_table(decision: GateDecision) -> str:
    """The decision table as fixed-width text (``--dry-run`` prints it)."""
    def fmt(v):
        return "-" if v is None else f"{v:.4g}" if isinstance(v, float | int) else str(v)

    head = ("metric", "challenger", "champion", "better", "floor", "min_abs_change", "min_rel_change")
    lines = [head] + [tuple(fmt(r[h]) for h in head) for r in decision.table]
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines]
    verdict = "PASS" if decision.passed else f"REFUSE: {decision.reason}"
    return "\n".join(text + [f"decision: {verdict}"])
