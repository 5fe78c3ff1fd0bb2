"""MLflow tracking: params flatten, a run reopens by id, lineage is logged; the same calls against
a real ``mlflow server`` (the remote case), where a training run logs over HTTP."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pipelines import tracking
from pipelines.tracking import TrackingConfig
from tests.conftest import free_port
from tests.fixtures.servers import start_http_server


def test_flatten_nested_config_to_mlflow_params():
    flat = tracking.flatten({"train": {"lr": 1e-4, "stage": "syncnet"}, "model": {"ch": (16, 32)}})
    assert flat == {"train.lr": "0.0001", "train.stage": "syncnet", "model.ch": "[16, 32]"}
    assert len(tracking.flatten({"x": "a" * 10_000})["x"]) == tracking.MAX_PARAM_LEN


def test_default_uri_is_sqlite_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert TrackingConfig().resolved_uri() == f"sqlite:///{tmp_path / 'mlruns.db'}"
    with pytest.raises(ValueError, match="unknown tracking key 'uri'"):
        TrackingConfig.from_dict({"uri": "x"})


def check_run_roundtrip(cfg: TrackingConfig, data_root: Path) -> None:
    from mlflow.tracking import MlflowClient

    (data_root / "dataset.json").write_text(json.dumps({"version": "v7"}))
    run_id = tracking.start_run(cfg, tags={"stage": "syncnet"})
    tracking.log_params({"train": {"lr": 0.001}})
    lineage = tracking.log_dataset_lineage(str(data_root))
    tracking.log_metrics({"total_loss": 1.0}, step=1)
    tracking.end_run("KILLED")
    assert tracking.start_run(cfg, run_id) == run_id  # resume: same run
    tracking.log_metrics({"total_loss": 0.5}, step=2)
    tracking.end_run()
    client = MlflowClient(cfg.resolved_uri())
    run = client.get_run(run_id)
    assert run.data.params["train.lr"] == "0.001" and run.info.status == "FINISHED"
    assert run.data.tags["dataset.version"] == "v7" and len(lineage["dataset.sha256"]) == 64
    assert run.data.params["dataset.sha256"] == lineage["dataset.sha256"]
    assert [m.step for m in client.get_metric_history(run_id, "total_loss")] == [1, 2]
    assert [a.path for a in client.list_artifacts(run_id, "lineage")] == ["lineage/dataset.json"]


def test_sqlite_store_run_resume_and_lineage(tmp_path):
    cfg = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", experiment="t",
                         artifact_location=str(tmp_path / "artifacts"))
    check_run_roundtrip(cfg, tmp_path)
    assert any((tmp_path / "artifacts").rglob("dataset.json"))


def test_file_store_works_when_asked_for(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    check_run_roundtrip(TrackingConfig(tracking_uri=f"file://{tmp_path / 'mlruns'}"), tmp_path)


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on loopback; job execution off and one worker: healthy in seconds at
    ~0.5 GB instead of ~20 s and ~2 GB with the defaults."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "server-artifacts")]
    url = f"http://127.0.0.1:{port}"
    proc = start_http_server(cmd, url + "/health", tmp_path / "server.log", env=env)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.mark.slow
def test_remote_server_run_and_a_training_job(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    from orchestration.launch import launch_training
    from tests.fixtures.corpus import write_corpus

    cfg = TrackingConfig(tracking_uri=mlflow_server, experiment="remote")
    check_run_roundtrip(cfg, tmp_path)

    data = write_corpus(str(tmp_path / "ds"), videos=3, clips=1, frames=30)
    summary = launch_training({
        "train": {"data": data, "out_dir": str(tmp_path / "run"), "max_steps": 2, "log_every": 1,
                  "val_every": 2, "save_every": 2, "num_workers": 0, "stage": "iptalker"},
        "model": {"image_size": 32}, "tracking": {"tracking_uri": mlflow_server}}, launcher="local")
    client = MlflowClient(mlflow_server)
    run = client.get_run(summary["mlflow_run_id"])
    assert "total_loss" in run.data.metrics and "disc_total_loss" in run.data.metrics
    assert [a.path for a in client.list_artifacts(run.info.run_id, "samples")]  # uploaded over HTTP
