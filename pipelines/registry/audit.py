"""The alias history of a registered model: promotions, refusals and rollbacks, kept in MLflow.

Each event is one registered-model tag ``audit.<unix ms>.<rand>`` holding a JSON record (who, when,
which versions, metrics, thresholds, decision, reason), so the history lives with the model in
any tracking backend and needs no lock to append. The model version an event concerns also gets
``promote.*`` / ``rollback.*`` tags (the per-version audit trail visible in the UI).
"""

from __future__ import annotations

import getpass
import json
import secrets
import socket
import time

PREFIX = "audit."
MAX_VALUE = 5000  # registered-model tag values are VARCHAR(5000) in MLflow's SQL stores


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def record_event(client, model_name: str, event: dict) -> dict:
    """Append ``event`` (gains ``time``, ``unix``, ``user``) to the model's history; returns it."""
    now = time.time()
    full = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "unix": round(now, 3),
            "user": who(), **event}
    value = json.dumps(full, sort_keys=True, default=str)
    if len(value) > MAX_VALUE:  # drop the bulky parts first, keep the decision
        full = {k: v for k, v in full.items() if k not in ("metrics", "thresholds")}
        full["truncated"] = True
        value = json.dumps(full, sort_keys=True, default=str)[:MAX_VALUE]
    client.set_registered_model_tag(model_name, f"{PREFIX}{int(now * 1000):015d}.{secrets.token_hex(3)}", value)
    return full


def history(client, model_name: str) -> list[dict]:
    """Every recorded event of ``model_name``, oldest first."""
    tags = client.get_registered_model(model_name).tags
    return [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith(PREFIX))]


def render_history(events: list[dict]) -> str:
    if not events:
        return "no promotions, refusals or rollbacks recorded yet"
    lines = []
    for e in events:
        versions = ", ".join(f"{k}={e[k]}" for k in ("champion", "previous", "challenger") if e.get(k))
        reason = f" - {e['reason']}" if e.get("reason") else ""
        lines.append(f"{e['time']}  {e['event']:<8} by {e['user']}: {versions}{reason}")
    return "\n".join(lines)
