"""The registry end to end on sqlite MLflow: register two tiny models (one trained clearly less),
promote the better one from two processes at once (exactly one wins), dub a clip with
``models:/NAME@champion``, refuse the worse one, roll back, read the history; the lease, the gate
and the packaging pieces on their own."""

from __future__ import annotations

import threading
import time
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


def test_promotion_lease_is_held_by_one_client_at_a_time(tmp_path):
    """Two clients contend from a barrier; their holding intervals never overlap, and a lease whose
    holder died (expired) is broken. (Two processes racing a real promote: the flow test.)"""
    from pipelines import tracking
    from pipelines.registry import lease
    from pipelines.tracking import TrackingConfig

    cfg = TrackingConfig(tracking_uri=sqlite_uri(tmp_path))
    tracking.client(cfg).create_registered_model("leased")
    barrier, held = threading.Barrier(2), []

    def hold():
        client = tracking.client(cfg)
        barrier.wait()
        with lease.promotion_lease(client, "leased", seconds=60, wait_seconds=60):
            start = time.monotonic()
            time.sleep(0.5)
            held.append((start, time.monotonic()))

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    (a0, a1), (b0, b1) = sorted(held)
    assert a1 <= b0, "two clients held the promotion lease at once"
    client = tracking.client(cfg)
    assert [m.name for m in client.search_registered_models()] == ["leased"]  # released
    assert lease.try_acquire(client, "leased", "dead-holder", seconds=-1)       # holder dies
    assert not lease.try_acquire(client, "leased", "me", seconds=60)           # breaks the stale one
    assert lease.try_acquire(client, "leased", "me", seconds=60)
    with pytest.raises(lease.LeaseBusy, match="holds the lease"):
        with lease.promotion_lease(client, "leased", seconds=60, wait_seconds=0.5):
            pass
