"""Slow registry end-to-end tests: the flow against a real ``mlflow server`` on 127.0.0.1 (the
remote case: artifacts and aliases over HTTP, the lease and two racing promotes through the
server); the bundle a real DeepSpeed training run exports with ``iptalker export --bundle`` and
registers from its run; promote evaluating versions that have no metrics yet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iptalker_model import ModelConfig, SyncNet
from iptalker_model.checkpoint import save_weights
from orchestration.cli import main
from pipelines import tracking
from pipelines.tracking import TrackingConfig
from preprocessing.audio_features import encoder_identity
from tests.fixtures.servers import start_mlflow_server
from tests.fixtures.whisper import random_whisper
from tests.pipelines.registry.flow import check_flow, run_flow, write_config
from tests.pipelines.registry.test_registry import tiny  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
def mlflow_server(tmp_path):
    proc, url = start_mlflow_server(tmp_path)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_registry_flow_against_a_real_mlflow_server(mlflow_server, tiny, tmp_path, capsys):  # noqa: F811
    models, eval_set = tiny
    check_flow(run_flow(tmp_path, mlflow_server, models, eval_set, capsys, "remote-dubber"))


def test_export_bundle_from_a_deepspeed_run_and_register_it(mlflow_server, tmp_path, capsys):
    from orchestration.launch import launch_training
    from tests.fixtures.corpus import write_corpus

    data = write_corpus(str(tmp_path / "ds"), videos=3, clips=1, frames=30, size=32)
    doc = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    doc["whisper"] = encoder_identity(random_whisper())  # what curation records
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(doc))
    cfg = ModelConfig.tiny(image_size=32)
    save_weights(tmp_path / "syncnet.pt", SyncNet(cfg), cfg)
    summary = launch_training({
        "train": {"data": data, "out_dir": str(tmp_path / "run"), "max_steps": 2, "log_every": 2,
                  "val_every": 2, "save_every": 2, "num_workers": 0, "stage": "iptalker",
                  "syncnet_checkpoint": str(tmp_path / "syncnet.pt")},
        "model": {"image_size": 32}, "tracking": {"tracking_uri": mlflow_server}}, launcher="local")
    run_id = summary["mlflow_run_id"]
    config = write_config(tmp_path / "c.yaml", mlflow_server)

    assert main(["--config", str(config), "export", "--run-dir", str(tmp_path / "run"),
                 "--out", str(tmp_path / "bundle"), "--bundle"]) == 0
    assert f"logged as artifact bundle/ of MLflow run {run_id}" in capsys.readouterr().out
    meta = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert meta["whisper"] == doc["whisper"]
    assert meta["dataset"]["dataset.version"] == "test-1" and meta["source"]["run_id"] == run_id
    assert meta["model"]["image_size"] == 32
    client = tracking.client(TrackingConfig(tracking_uri=mlflow_server))
    assert {a.path for a in client.list_artifacts(run_id, "bundle")} == {
        "bundle/bundle.json", "bundle/iptalker.pt", "bundle/syncnet.pt"}

    assert main(["--config", str(config), "register", "--run", run_id, "--name", "trained"]) == 0
    version = client.get_model_version_by_alias("trained", "challenger")
    assert version.run_id == run_id and version.tags["dataset.version"] == "test-1"
    # a syncnet-stage run has no bundle to export: one line, exit 2
    assert main(["--config", str(config), "export", "--run-dir", str(tmp_path / "nothing"),
                 "--out", str(tmp_path / "b2"), "--bundle"]) == 2


def sqlite_gate(tmp: Path, evals: str) -> tuple[str, str, Path]:
    """(sqlite tracking URI, a small curated dataset as the frozen eval data, a config gating on
    mouth PSNR alone with promote's evaluations under ``tmp/evals``); MLflow's URI set to it."""
    import mlflow
    import yaml

    from tests.fixtures.corpus import write_corpus

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    data = write_corpus(str(tmp / "ds"), videos=2, clips=1, frames=25, size=32, val_videos=1)
    config = tmp / "c.yaml"
    config.write_text(yaml.safe_dump({
        "tracking": {"tracking_uri": uri},
        "registry": {"eval_data": data, "eval_out_dir": str(tmp / evals),
                     "thresholds": {"self.mouth_psnr": {"greater_is_better": True, "min_value": 1.0},
                                    "cross.lse_c": None, "cross.identity_distance": None}},
        "evaluate": {"max_clips": 1, "max_frames": 25, "identity_every": 25, "side_by_side": 0}}))
    mlflow.set_tracking_uri(uri)
    return uri, data, config


def test_promote_evaluates_versions_without_metrics_on_one_frozen_eval_set(tiny, tmp_path, monkeypatch):  # noqa: F811
    """Neither version carries metrics: promote runs ``pipelines.evaluate`` on ``registry.eval_data``
    for each (the champion once, then only the challenger) and gates on the same eval set."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    models, _ = tiny
    uri, data, config = sqlite_gate(tmp_path, "evals")
    client = tracking.client(TrackingConfig(tracking_uri=uri))
    for version, model in enumerate((models[min(models)], models[max(models)]), start=1):
        with mlflow.start_run() as run:  # a training run with a bundle and no evaluation
            mlflow.log_artifacts(str(model.bundle), "bundle")
        assert main(["--config", str(config), "register", "--run", run.info.run_id, "--name", "ev"]) == 0
        assert "metric.self.mouth_psnr" not in client.get_model_version("ev", str(version)).tags
        assert main(["--config", str(config), "promote", "--name", "ev"]) == 0
    v1, v2 = (client.get_model_version("ev", v) for v in ("1", "2"))
    assert v1.tags["eval_set.version"] == v2.tags["eval_set.version"]
    assert float(v1.tags["metric.self.mouth_psnr"]) > 1.0 and float(v2.tags["metric.self.mouth_psnr"]) > 1.0
    assert not any(k.startswith("metric.baseline.") for k in v1.tags)
    # one evaluation per version: the champion's tagged metrics were reused at the second promote
    assert sorted(p.parent.name for p in (tmp_path / "evals").glob("*/report.json")) == [
        "models-ev-1", "models-ev-2"]


def test_register_tags_the_metrics_of_an_evaluation_of_the_same_bundle(tiny, tmp_path, monkeypatch, capsys):  # noqa: F811
    """``register --evaluation EVAL_RUN``: the evaluation's metrics and eval set go on the version,
    so promote gates without evaluating the model again (the pipeline's register stage does this);
    an evaluation of another model's weights is refused in one line before anything registers."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    models, _ = tiny
    uri, data, config = sqlite_gate(tmp_path, "gate-evals")
    runs = {}
    for n, model in models.items():
        with mlflow.start_run() as run:  # a training run with a bundle and no evaluation
            mlflow.log_artifacts(str(model.bundle), "bundle")
        runs[n] = run.info.run_id
    worse, better = min(models), max(models)
    assert main(["--config", str(config), "evaluate", "--model", str(models[better].bundle), "--data", data,
                 "--out", str(tmp_path / "ev")]) == 0
    evaluation = json.loads((tmp_path / "ev" / "report.json").read_text())
    client = tracking.client(TrackingConfig(tracking_uri=uri))

    capsys.readouterr()
    assert main(["--config", str(config), "register", "--run", runs[worse], "--name", "ev",
                 "--evaluation", evaluation["mlflow_run_id"]]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and not ln.startswith("Downloading")]
    assert len(err) == 1 and "measured another model" in err[0], err  # MLflow's progress bars aside
    assert client.search_model_versions("name='ev'") == []

    assert main(["--config", str(config), "register", "--run", runs[better], "--name", "ev",
                 "--evaluation", evaluation["mlflow_run_id"]]) == 0
    v1 = client.get_model_version("ev", "1")
    assert float(v1.tags["metric.self.mouth_psnr"]) == pytest.approx(evaluation["metrics"]["self.mouth_psnr"])
    assert v1.tags["eval_set.version"] == evaluation["evalset_version"]
    assert v1.tags["evaluation.run_id"] == evaluation["mlflow_run_id"]
    assert main(["--config", str(config), "promote", "--name", "ev"]) == 0
    assert str(client.get_model_version_by_alias("ev", "champion").version) == "1"
    assert not (tmp_path / "gate-evals").exists()  # gated on the tagged metrics: no second evaluation
