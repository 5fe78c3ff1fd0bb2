"""The registry end to end on sqlite MLflow: register two tiny models (one trained clearly less),
promote through MLflow's gate, refuse the worse one, roll back, read the history; two concurrent
promotes; the lease under two processes; the gate and the packaging pieces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.data.bundle import resolve_bundle
from pipelines.errors import UserError
from pipelines.registry import packaging
from pipelines.registry.config import GateThreshold
from pipelines.registry.gate import evaluate_gate
from tests.conftest import REPO
from tests.fixtures import tiny_models
from tests.pipelines.registry.flow import check_flow, cli, run_flow, write_config


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_models.make_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """A 1 s synthetic talking head and another sentence of speech to dub it with."""
    from preprocessing.encode import write_wav
    from preprocessing.synthetic.clip import plan_clip, write_plan
    from preprocessing.synthetic.speech import SAMPLE_RATE, espeak

    root = tmp_path_factory.mktemp("registry-media")
    video = write_plan(plan_clip(5, seconds=1.0, size=(320, 240), fps=25.0, identity=0, face_frac=0.5),
                       root / "talk.mp4")
    write_wav(root / "speech.wav", espeak("Open the window.", "en-us", 220), SAMPLE_RATE)
    return {"video": video, "audio": root / "speech.wav"}


def sqlite_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_register_promote_refuse_rollback_history_on_sqlite(tiny, media, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the sqlite store's default artifact root is ./mlruns
    models, eval_set = tiny
    check_flow(run_flow(tmp_path, sqlite_uri(tmp_path), models, eval_set, capsys, "dubber", media))


def test_gate_uses_mlflow_thresholds_floors_only_without_champion():
    gate = {"self.mouth_psnr": GateThreshold(True, min_value=20.0, min_absolute_change=1.0),
            "cross.lse_d": GateThreshold(False, min_value=9.0)}
    first = evaluate_gate(gate, {"self.mouth_psnr": 21.0, "cross.lse_d": 8.0}, None)
    assert first.passed  # no champion: the change term is not applied
    worse = evaluate_gate(gate, {"self.mouth_psnr": 21.5, "cross.lse_d": 8.0},
                          {"self.mouth_psnr": 21.0, "cross.lse_d": 8.5})
    assert not worse.passed and "minimum absolute change check failed" in worse.reason
    ceiling = evaluate_gate(gate, {"self.mouth_psnr": 30.0, "cross.lse_d": 9.5}, None)
    assert not ceiling.passed and "cross.lse_d" in ceiling.reason
    missing = evaluate_gate(gate, {"cross.lse_d": 8.0}, None)
    assert not missing.passed and "missing" in missing.reason


def test_requirements_are_pinned_from_constraints():
    reqs = packaging.pinned_requirements()
    pins = dict(r.split("==") for r in reqs if "==" in r)
    assert pins["torch"] == "2.13.0" and pins["mlflow"] == "3.17.2"
    constraints = (REPO / "constraints.txt").read_text().splitlines()
    assert all(f"{k}=={v}" in constraints for k, v in pins.items())


def test_unknown_registry_model_is_one_line_user_error(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    with pytest.raises(UserError, match="does not resolve"):
        resolve_bundle("models:/nobody@champion")
    config = write_config(tmp_path / "c.yaml", sqlite_uri(tmp_path))
    assert cli(config, "promote", "--name", "nobody") == 2
    assert cli(config, "register", "--run", "0123456789abcdef", "--name", "nobody") == 2


def spawn(config: Path, *args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestration.cli", "--config", str(config), *args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def test_two_concurrent_promotes_exactly_one_wins(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    models, eval_set = tiny
    uri = sqlite_uri(tmp_path)
    config = write_config(tmp_path / "c.yaml", uri)
    worse, better = models[min(models)], models[max(models)]
    for model in (worse, better):
        run = tiny_models.log_training_run(uri, model, eval_set)
        assert cli(config, "register", "--run", run, "--name", "race") == 0
        if model is worse:
            assert cli(config, "promote", "--name", "race") == 0
    procs = [spawn(config, "promote", "--name", "race", cwd=tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=240), p.communicate()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results  # exactly one wins
    from pipelines import tracking
    from pipelines.registry.audit import history
    from pipelines.tracking import TrackingConfig

    client = tracking.client(TrackingConfig(tracking_uri=uri))
    assert str(client.get_model_version_by_alias("race", "champion").version) == "2"
    assert str(client.get_model_version_by_alias("race", "previous").version) == "1"
    promotions = [e for e in history(client, "race") if e["event"] == "promote"]
    assert [e["champion"] for e in promotions] == ["1", "2"]


LEASE_HOLDER = """
import json, sys, time
from pathlib import Path
from pipelines import tracking
from pipelines.registry.lease import promotion_lease
from pipelines.tracking import TrackingConfig
uri, me, other, log = sys.argv[1:5]
client = tracking.client(TrackingConfig(tracking_uri=uri))
Path(me).touch()
while not Path(other).exists():  # a barrier: both processes contend from here on
    time.sleep(0.05)
with promotion_lease(client, "leased", seconds=60, wait_seconds=60):
    start = time.time()
    time.sleep(1.5)
    with open(log, "a") as f:
        f.write(json.dumps([start, time.time()]) + "\\n")
"""


def test_promotion_lease_excludes_a_second_process(tmp_path):
    from pipelines import tracking
    from pipelines.tracking import TrackingConfig

    uri = sqlite_uri(tmp_path)
    tracking.client(TrackingConfig(tracking_uri=uri)).create_registered_model("leased")
    log, ready = tmp_path / "held.jsonl", [tmp_path / "a.ready", tmp_path / "b.ready"]
    procs = [subprocess.Popen([sys.executable, "-c", LEASE_HOLDER, uri, str(ready[i]), str(ready[1 - i]),
                               str(log)], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        assert p.wait(timeout=240) == 0, p.stderr.read()
    (a0, a1), (b0, b1) = sorted(json.loads(line) for line in log.read_text().splitlines())
    assert a1 <= b0, "two processes held the promotion lease at once"
    client = tracking.client(TrackingConfig(tracking_uri=uri))
    assert [m.name for m in client.search_registered_models()] == ["leased"]  # lease released
