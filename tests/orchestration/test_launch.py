"""Launchers: the commands each one runs, the resolved job it writes, and real runs of the
``local`` (one process) and ``deepspeed`` (its runner, 2 ranks) launchers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.launch import (
    LaunchError,
    deepspeed_command,
    launch_training,
    resolve_job,
    torchrun_command,
    write_job,
)
from tests.fixtures.corpus import write_corpus


def job_settings(tmp_path, data="/data/ds", **train):
    return {"train": {"data": data, "out_dir": str(tmp_path / "run"), "max_steps": 4, "log_every": 2,
                      "val_every": 4, "save_every": 4, "num_workers": 0, **train},
            "model": {"preset": "tiny", "image_size": 32},
            "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlruns.db'}"}}


def test_resolved_job_is_complete_and_secret_free(tmp_path):
    from pipelines.data.storage import StorageConfig

    s = job_settings(tmp_path)
    s["storage"] = StorageConfig(s3_key="AKIA-secret", s3_secret="very-secret")
    path = write_job(resolve_job(s))
    text = path.read_text()
    job = json.loads(text)
    assert path.name == "resolved_config.json" and path.parent == tmp_path / "run"
    assert job["model"]["image_size"] == 32 and job["model"]["audio_dim"] == 384  # full ModelConfig
    assert job["loss"]["sync_window"] == job["model"]["sync_frames"]
    assert "secret" not in text


def test_bad_settings_fail_with_the_key_named(tmp_path):
    with pytest.raises(LaunchError, match="train.data"):
        resolve_job(job_settings(tmp_path, data=""))
    with pytest.raises(ValueError, match="zero_stage"):
        resolve_job(job_settings(tmp_path, zero_stage=5))
    with pytest.raises(ValueError, match="unknown train key 'learning_rate'"):
        resolve_job(job_settings(tmp_path, learning_rate=1.0))
    with pytest.raises(LaunchError, match="unknown launcher"):
        launch_training(job_settings(tmp_path), launcher="slurm")


def test_missing_inputs_fail_before_any_worker_starts(tmp_path):
    """No curated shards, or no exported expert: one clear error, no run folder, no MLflow run."""
    empty = tmp_path / "empty-dataset"
    empty.mkdir()
    with pytest.raises(LaunchError, match="no finished shards .*iptalker curate"):
        launch_training(job_settings(tmp_path, data=str(empty)), launcher="local")
    assert not (tmp_path / "run").exists() and not (tmp_path / "mlruns.db").exists()
    r = subprocess.run([str(Path(sys.executable).with_name("iptalker")), "train", "--data", str(empty),
                        "--stage", "syncnet", "--out", str(tmp_path / "cli-run")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert "no finished shards" in r.stderr


def test_missing_syncnet_expert_fails_before_any_worker_starts(corpus, tmp_path):
    s = job_settings(tmp_path, data=corpus, stage="iptalker", syncnet_checkpoint=str(tmp_path / "nope.pt"))
    with pytest.raises(LaunchError, match="syncnet_checkpoint .*iptalker export"):
        launch_training(s, launcher="local")


def test_model_whose_mask_differs_from_the_dataset_is_refused(tmp_path):
    """The dataset records the geometry it was curated for; a model config hiding another region
    is refused by the CLI before any worker starts: one line, exit 2, naming the field."""
    from iptalker_model.config import ModelConfig
    from pipelines.data.geometry import GEOMETRY_KEY, geometry_record
    from preprocessing.config import AlignConfig

    data = write_corpus(str(tmp_path / "dataset"), videos=2, clips=1, frames=30)
    doc = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    doc[GEOMETRY_KEY] = geometry_record(AlignConfig(), ModelConfig(mask_top=0.6))
    (tmp_path / "dataset" / "dataset.json").write_text(json.dumps(doc))
    r = subprocess.run([str(Path(sys.executable).with_name("iptalker")), "train", "--data", data,
                        "--stage", "syncnet", "--out", str(tmp_path / "cli-run")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert "mask_top=0.6" in r.stderr and "mask_top=0.5" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "cli-run").exists()  # refused before the run folder is written
    with pytest.raises(LaunchError, match="alignment template"):  # crops from another template
        doc[GEOMETRY_KEY] = geometry_record(AlignConfig(template_scale=0.9), ModelConfig())
        (tmp_path / "dataset" / "dataset.json").write_text(json.dumps(doc))
        launch_training(job_settings(tmp_path, data=data), launcher="local")


def test_dataset_without_a_geometry_record_only_warns(corpus, capsys):
    from orchestration.launch import check_geometry

    check_geometry({"train": {"data": corpus}, "model": {}})  # write_corpus records no geometry
    assert "records no crop/mask geometry" in capsys.readouterr().err


def test_torchrun_command_single_and_multi_node(tmp_path):
    one = torchrun_command(tmp_path / "c.json", nproc=4)
    assert one[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in one and "--nproc_per_node=4" in one
    assert one[-4:] == ["-m", "pipelines.train.worker", "--config", str(tmp_path / "c.json")]
    multi = torchrun_command(tmp_path / "c.json", nproc=8, nnodes=2, master_addr="10.0.0.1",
                             master_port=29400, run_id="job1")
    assert "--nnodes=2" in multi and "--rdzv_endpoint=10.0.0.1:29400" in multi
    assert "--rdzv_backend=c10d" in multi and "--standalone" not in multi


def test_deepspeed_command_uses_the_hostfile(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("worker-0 slots=8\nworker-1 slots=8\n")
    cmd = deepspeed_command(tmp_path / "c.json", nproc=8, nnodes=2, hostfile=str(hostfile),
                            master_addr="worker-0")
    assert f"--hostfile={hostfile}" in cmd and "--num_nodes=2" in cmd and "--module" in cmd
    with pytest.raises(LaunchError, match="hostfile"):
        deepspeed_command(tmp_path / "c.json", nproc=1, hostfile=str(tmp_path / "missing"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("corpus")), videos=3, clips=1, frames=30)


@pytest.mark.slow
def test_local_launcher_trains_one_process(corpus, tmp_path):
    summary = launch_training(job_settings(tmp_path, data=corpus), launcher="local")
    assert summary["status"] == "FINISHED" and summary["step"] == 4 and summary["mlflow_run_id"]
    assert (tmp_path / "run" / "checkpoints" / "model" / "latest").read_text() == "step_00000004"


@pytest.mark.slow
def test_deepspeed_launcher_two_ranks(corpus, tmp_path):
    summary = launch_training(job_settings(tmp_path, data=corpus, zero_stage=1), launcher="deepspeed",
                              nproc=2, master_port=29733)
    assert summary["status"] == "FINISHED" and summary["step"] == 4
    from mlflow.tracking import MlflowClient

    run = MlflowClient(summary["tracking_uri"]).get_run(summary["mlflow_run_id"])
    assert run.data.params["world_size"] == "2" and run.data.params["train.zero_stage"] == "1"
