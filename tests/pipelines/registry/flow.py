"""The registry flow the tests run against sqlite and against a real ``mlflow server``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from orchestration.cli import main
from pipelines import tracking
from pipelines.data.bundle import resolve_bundle
from pipelines.registry import audit
from pipelines.tracking import TrackingConfig
from tests.conftest import REPO
from tests.fixtures import tiny_models

# the tiny models have no sync/identity metrics: drop those gates of configs/local.yaml (null)
GATE = {"self.mouth_psnr": {"greater_is_better": True, "min_value": 5.0, "min_absolute_change": 0.5},
        "cross.lse_c": None, "cross.identity_distance": None}


def write_config(path: Path, tracking_uri: str) -> Path:
    path.write_text(yaml.safe_dump({"tracking": {"tracking_uri": tracking_uri},
                                    "registry": {"thresholds": GATE, "lease_wait_seconds": 30.0},
                                    "dub": {"identity_samples": 2},
                                    # the tiny models read the seeded random encoder's features
                                    "preprocess": {"whisper": {"allow_random": True}}}))
    return path


def cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def spawn_cli(config: Path, cwd: Path, *args: str) -> subprocess.Popen:
    """``iptalker ARGS`` in its own process (this checkout first on the path)."""
    return subprocess.Popen([sys.executable, "-m", "orchestration.cli", "--config", str(config), *args],
                            cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dub_with_champion(name: str, media: dict, out_dir: Path):
    """``models:/NAME@champion`` as a pyfunc: one real clip and one unreadable video, one call."""
    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    rows = pd.DataFrame({"video": [str(media["video"]), str(out_dir / "missing.mp4")],
                         "audio": [str(media["audio"])] * 2,
                         "out": [str(out_dir / "dubbed.mp4"), str(out_dir / "never.mp4")]})
    return model.predict(rows)


def run_flow(tmp: Path, tracking_uri: str, models: dict, eval_set: str, capsys, name: str,
             media: dict | None = None) -> dict:
    """worse -> champion (first promotion: floors only); better -> champion (improves); worse
    again -> refused; rollback; history. Returns the client-side facts the caller asserts on."""
    config = write_config(tmp / "registry.yaml", tracking_uri)
    worse, better = models[min(models)], models[max(models)]
    run_worse = tiny_models.log_training_run(tracking_uri, worse, eval_set)
    run_better = tiny_models.log_training_run(tracking_uri, better, eval_set)
    client = tracking.client(TrackingConfig(tracking_uri=tracking_uri))

    assert cli(config, "register", "--run", run_worse, "--name", name) == 0
    assert cli(config, "promote", "--name", name) == 0            # v1: no champion, floors only
    assert cli(config, "register", "--run", run_better, "--name", name) == 0
    capsys.readouterr()
    assert cli(config, "promote", "--name", name, "--dry-run") == 0
    dry = capsys.readouterr().out
    assert "decision: PASS" in dry and "self.mouth_psnr" in dry
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"  # dry run: unchanged
    # v2 beats v1 by > 0.5 dB; two processes promote it at once and exactly one wins
    codes = sorted(p.wait(timeout=300) for p in [spawn_cli(config, tmp, "promote", "--name", name)
                                                  for _ in range(2)])
    champion = client.get_model_version_by_alias(name, "champion")
    previous = client.get_model_version_by_alias(name, "previous")

    # models:/NAME@champion loads the better model's bundle and reproduces its measured metric
    bundle = resolve_bundle(f"models:/{name}@champion", cache_dir=tmp / "dl")
    model, syncnet = bundle.load_models()
    cfg = tiny_models.tiny_config()
    loaded_psnr = tiny_models.mouth_psnr(model, tiny_models.held_out(cfg), cfg)
    dubbed = dub_with_champion(name, media, tmp) if media else None

    assert cli(config, "register", "--run", run_worse, "--name", name) == 0  # v3 = worse again
    capsys.readouterr()
    refused = cli(config, "promote", "--name", name)
    refusal = capsys.readouterr().err
    v3 = client.get_model_version(name, "3")
    after_refusal = str(client.get_model_version_by_alias(name, "champion").version)

    assert cli(config, "rollback", "--name", name) == 0
    rolled = tuple(str(client.get_model_version_by_alias(name, a).version) for a in ("champion", "previous"))
    capsys.readouterr()
    assert cli(config, "registry", "history", name, "--json") == 0
    events = json.loads(capsys.readouterr().out)
    return {"champion": champion, "previous": previous, "bundle": bundle, "syncnet": syncnet,
            "loaded_psnr": loaded_psnr, "better": better, "worse": worse, "refused": refused,
            "refusal": refusal, "v3": v3, "after_refusal": after_refusal, "rolled": rolled,
            "events": events, "dubbed": dubbed, "race": codes, "history_text": audit.render_history(events), "client": client}


def check_flow(facts: dict) -> None:
    better, worse = facts["better"], facts["worse"]
    assert better.mouth_psnr > worse.mouth_psnr + 0.5, "fixture: the longer-trained model must rank higher"
    assert (str(facts["champion"].version), str(facts["previous"].version)) == ("2", "1")
    assert facts["champion"].tags["metric.self.mouth_psnr"] == repr(better.mouth_psnr)
    assert facts["champion"].tags["promote.decision"] == "passed"
    assert abs(facts["loaded_psnr"] - better.mouth_psnr) < 1e-4
    assert facts["bundle"].meta["whisper"]["random_init"] and facts["syncnet"] is not None
    assert len(facts["bundle"].meta["whisper"]["sha256"]) == 64
    if facts["dubbed"] is not None:
        ok, bad = facts["dubbed"].to_dict("records")
        assert ok["status"] == "ok" and Path(ok["out"]).stat().st_size > 0, ok
        assert bad["status"] == "rejected" and "missing.mp4" in bad["reason"], bad
    # the worse model is refused against the champion, with MLflow's reason, one line, exit 1
    assert facts["refused"] == 1 and facts["after_refusal"] == "2"
    reason = facts["v3"].tags["rejected_reason"]
    assert "self.mouth_psnr" in reason and "minimum absolute change check failed" in reason
    assert facts["refusal"].strip().splitlines()[-1].startswith("refused: ")
    assert facts["rolled"] == ("1", "2")
    # the race: one promote wins (0), the other finds the aliases moved (1) or no challenger left (2)
    assert facts["race"][0] == 0 and facts["race"][1] in (1, 2), facts["race"]
    kinds = [e["event"] for e in facts["events"] if e["event"] != "conflict"]
    assert kinds == ["register", "promote", "register", "promote", "register", "refuse", "rollback"]
    promote2 = [e for e in facts["events"] if e["event"] == "promote"][1]
    assert promote2["champion"] == "2" and promote2["previous"] == "1" and promote2["user"]
    assert promote2["thresholds"]["self.mouth_psnr"]["min_absolute_change"] == 0.5
    assert promote2["metrics"]["challenger"]["self.mouth_psnr"] == better.mouth_psnr
