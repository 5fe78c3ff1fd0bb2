"""``iptalker promote`` / ``rollback`` / ``registry history``: move the ``champion`` alias through
the gate, under the promotion lease, and keep the audit record.

promote: metrics of challenger and champion on one frozen eval set (tagged, else evaluated now)
-> the gate (``gate.evaluate_gate``: MLflow's ``validate_evaluation_results``) -> under the lease,
check the aliases still point where the gate looked (compare-and-set) -> pass: ``previous`` = old
champion, ``champion`` = challenger; refuse: ``rejected_reason`` on the challenger, exit 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines import tracking
from pipelines.errors import UserError
from pipelines.registry import audit, versions
from pipelines.registry.config import RegistryConfig
from pipelines.registry.gate import GateDecision, evaluate_gate, render_table
from pipelines.registry.lease import promotion_lease
from pipelines.tracking import TrackingConfig

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
# model_uri -> (metrics, eval-set version); see ``evaluator``
Evaluator = Callable[[str], tuple[dict[str, float], str]]


@dataclass
class Outcome:
    name: str
    event: str                  # promote | refuse | dry-run | rollback
    passed: bool
    challenger: str | None = None
    champion: str | None = None  # the champion after this call
    previous: str | None = None
    decision: GateDecision | None = None
    messages: list[str] = field(default_factory=list)

    def render(self) -> str:
        """A refusal is its one line; otherwise the decision table (if any) and what changed."""
        if self.event in ("refuse", "conflict"):
            return self.messages[-1]
        table = render_table(self.decision) + "\n" if self.decision else ""
        return table + "\n".join(self.messages)


def evaluator(data_uri: str, eval_cfg, storage_cfg, tracking_cfg: TrackingConfig, out_dir: str) -> Evaluator:
    """Evaluate a model URI on the frozen eval set ``data_uri`` with ``pipelines.evaluate``."""

    def evaluate(model_uri: str) -> tuple[dict[str, float], str]:
        from pipelines.data.storage import Storage
        from pipelines.evaluate import EvaluateConfig, run_evaluation

        safe = model_uri.replace(":/", "-").replace("/", "-").replace("@", "-")
        report = run_evaluation(model_uri, data_uri, eval_cfg or EvaluateConfig(), Storage(storage_cfg), tracking_cfg,
                                f"{out_dir}/{safe}")
        return dict(report.metrics), str(report.evalset_version)

    return evaluate


def gate_metrics(client, name: str, cands: dict, cfg: RegistryConfig,
                 evaluate: Evaluator | None) -> dict[str, dict[str, float]]:
    """alias -> metrics, all on one eval set: the tagged ones when every version has all gated
    metrics on the same eval-set version, otherwise (re)evaluated on ``registry.eval_data``."""
    needed = set(cfg.thresholds)
    tagged = {alias: versions.tagged_metrics(v) for alias, v in cands.items()}
    sets = {ev for _, ev in tagged.values()}
    if len(sets) == 1 and "" not in sets and all(needed <= set(m) for m, _ in tagged.values()):
        return {alias: m for alias, (m, _) in tagged.items()}
    if evaluate is None or not cfg.eval_data:
        lacking = ", ".join(f"v{v.version} ({alias})" for alias, v in cands.items())
        raise UserError(f"{lacking} of {name!r} have no metrics {sorted(needed)} on one common eval "
                        "set; set registry.eval_data to the frozen eval set so promote evaluates them")
    complete = {a for a, (m, ev) in tagged.items() if needed <= set(m) and ev}
    order = [a for a in cands if a not in complete] or list(cands)  # evaluate these first
    out, eval_set = {}, None
    for alias in order + [a for a in cands if a not in order]:
        metrics, ev = tagged[alias]
        if alias in order or ev != eval_set:
            metrics, ev = evaluate(f"models:/{name}/{cands[alias].version}")
            versions.set_tags(client, name, str(cands[alias].version), versions.metric_tags(metrics, ev))
        if eval_set is not None and ev != eval_set:
            raise UserError(f"the eval set changed between two evaluations ({eval_set} vs {ev}); "
                            "rerun promote")
        out[alias], eval_set = metrics, ev
    return out


def promote(name: str, cfg: RegistryConfig, tracking_cfg: TrackingConfig, *, dry_run: bool = False,
            evaluate: Evaluator | None = None) -> Outcome:
    """Gate ``name@challenger`` against ``name@champion``; move the aliases when it passes."""
    client = tracking.client(tracking_cfg)
    versions.registered_model(client, name)
    challenger = versions.alias_version(client, name, CHALLENGER)
    if challenger is None:
        raise UserError(f"{name!r} has no {CHALLENGER} alias; register a run with "
                        f"`iptalker register --run RUN_ID --name {name}`")
    champion = versions.alias_version(client, name, CHAMPION)
    if champion is not None and str(champion.version) == str(challenger.version):
        raise UserError(f"{name} v{challenger.version} is already the {CHAMPION}")
    cands = {CHALLENGER: challenger, **({CHAMPION: champion} if champion else {})}
    metrics = gate_metrics(client, name, cands, cfg, evaluate)
    decision = evaluate_gate(cfg.thresholds, metrics[CHALLENGER], metrics.get(CHAMPION))
    base = Outcome(name, "dry-run", decision.passed, str(challenger.version),
                   str(champion.version) if champion else None, decision=decision)
    if dry_run:
        base.messages.append("dry run: nothing changed")
        return base
    with promotion_lease(client, name, seconds=cfg.lease_seconds, wait_seconds=cfg.lease_wait_seconds):
        return apply_decision(client, name, cfg, challenger, champion, metrics, decision)


def apply_decision(client, name, cfg: RegistryConfig, challenger, champion, metrics: dict,
                   decision: GateDecision) -> Outcome:
    """Under the lease: compare-and-set on the aliases, then promote or refuse and record it."""
    now_chal = versions.alias_version(client, name, CHALLENGER)
    now_champ = versions.alias_version(client, name, CHAMPION)
    old_champ = str(champion.version) if champion else None
    if (now_chal is None or str(now_chal.version) != str(challenger.version)
            or (str(now_champ.version) if now_champ else None) != old_champ):
        reason = (f"aliases moved while this promote ran (champion now "
                  f"{'v' + str(now_champ.version) if now_champ else 'unset'}); nothing changed, rerun promote")
        audit.record_event(client, name, {"event": "conflict", "challenger": str(challenger.version),
                                          "champion": old_champ, "reason": reason})
        return Outcome(name, "conflict", False, str(challenger.version), str(now_champ.version) if now_champ else None,
                       decision=decision, messages=[f"refused: {reason}"])
    record = {"challenger": str(challenger.version), "champion": old_champ, "metrics": metrics,
              "thresholds": {k: vars(t) for k, t in cfg.thresholds.items()}}
    if not decision.passed:
        versions.set_tags(client, name, str(challenger.version), {
            "rejected_reason": decision.reason, "promote.decision": "refused",
            "promote.at": audit.record_event(client, name, {"event": "refuse", **record,
                                                             "reason": decision.reason})["time"]})
        return Outcome(name, "refuse", False, str(challenger.version), old_champ, decision=decision,
                       messages=[f"refused: {name} v{challenger.version} stays {CHALLENGER}: {decision.reason}"])
    if champion is not None:
        client.set_registered_model_alias(name, PREVIOUS, str(champion.version))
    client.set_registered_model_alias(name, CHAMPION, str(challenger.version))
    client.delete_registered_model_alias(name, CHALLENGER)
    event = audit.record_event(client, name, {"event": "promote", **record, "previous": old_champ,
                                              "champion": str(challenger.version), "decision": "passed"})
    versions.set_tags(client, name, str(challenger.version), {
        "promote.decision": "passed", "promote.at": event["time"], "promote.by": event["user"],
        "promote.audit": json.dumps(event, sort_keys=True, default=str)[:audit.MAX_VALUE]})
    msg = f"promoted {name} v{challenger.version} to {CHAMPION}" + (
        f"; v{old_champ} is now {PREVIOUS}" if old_champ else "")
    return Outcome(name, "promote", True, str(challenger.version), str(challenger.version), old_champ,
                   decision=decision, messages=[msg])


def rollback(name: str, cfg: RegistryConfig, tracking_cfg: TrackingConfig) -> Outcome:
    """Make ``name@previous`` the champion again; the demoted champion becomes ``previous``."""
    client = tracking.client(tracking_cfg)
    versions.registered_model(client, name)
    with promotion_lease(client, name, seconds=cfg.lease_seconds, wait_seconds=cfg.lease_wait_seconds):
        previous = versions.alias_version(client, name, PREVIOUS)
        if previous is None:
            raise UserError(f"{name!r} has no {PREVIOUS} alias: nothing to roll back to")
        champion = versions.alias_version(client, name, CHAMPION)
        client.set_registered_model_alias(name, CHAMPION, str(previous.version))
        if champion is not None:
            client.set_registered_model_alias(name, PREVIOUS, str(champion.version))
        event = audit.record_event(client, name, {"event": "rollback", "champion": str(previous.version),
                                                  "previous": str(champion.version) if champion else None})
        for v, tag in ((previous.version, "restored"), (champion.version if champion else None, "demoted")):
            if v is not None:
                versions.set_tags(client, name, v, {"rollback.at": event["time"], "rollback.role": tag,
                                                    "rollback.by": event["user"]})
    old = str(champion.version) if champion else None
    return Outcome(name, "rollback", True, None, str(previous.version), old,
                   messages=[f"rolled back {name}: v{previous.version} is {CHAMPION} again"
                             + (f", v{old} is {PREVIOUS}" if old else "")])


def registry_history(name: str, tracking_cfg: TrackingConfig) -> list[dict]:
    """The model's recorded events (register, promote, refuse, conflict, rollback), oldest first."""
    client = tracking.client(tracking_cfg)
    versions.registered_model(client, name)
    return audit.history(client, name)
