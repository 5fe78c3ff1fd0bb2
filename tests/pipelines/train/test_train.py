"""End-to-end training through the CLI: 2 ranks (gloo, CPU) under torchrun with ZeRO-2, both
stages, MLflow (sqlite), export; ZeRO-3 smoke; SIGKILL + resume keeps the step counter, the LR
schedule and the MLflow run; the Ray launcher with 2 CPU workers.

Debug-size model at 32 px on a really curated (``iptalker curate``) synthetic corpus.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration.launch import (
    launch_training,
    resolve_job,
    torchrun_command,
    worker_env,
    write_job,
)
from tests.fixtures.whisper import ALLOW_RANDOM_SET

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).with_name("iptalker"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Real curation (``iptalker curate``) of synthetic talking heads: 2 identities, one in val."""
    from preprocessing.synthetic.corpus import generate_corpus

    root = tmp_path_factory.mktemp("curated")
    generate_corpus(root / "raw", 4, seed=7, n_identities=2, seconds=(3.0, 3.0))
    subprocess.run([CLI, "curate", "--input", str(root / "raw"), "--output", str(root / "ds"),
                    "--no-progress", "--set", 'curate.val_identities=["id01"]',
                    "--set", f"ray.temp_dir=/tmp/rt-tr{os.getpid()}",
                    "--set", "curate.shard_max_samples=2", "--set", ALLOW_RANDOM_SET], check=True, env=worker_env())
    return str(root / "ds")


def settings(corpus: str, tmp: Path, stage: str, **train) -> dict:
    base = {"data": corpus, "stage": stage, "out_dir": str(tmp / stage), "max_steps": 30,
            "log_every": 5, "val_every": 15, "save_every": 15, "num_workers": 1, "zero_stage": 2}
    return {"train": {**base, **train}, "model": {"preset": "tiny", "image_size": 32},
            "tracking": {"tracking_uri": f"sqlite:///{tmp / 'mlruns.db'}", "experiment": "test"}}


def cli_train(corpus: str, tmp: Path, stage: str, *sets: str, resume: bool = False):
    """``iptalker train`` with 2 torchrun ranks (gloo) and ZeRO-2; returns (summary, stderr)."""
    out = tmp / stage
    cmd = [CLI, "train", "--data", corpus, "--stage", stage, "--launcher", "torchrun", "--nproc", "2",
           "--out", str(out), "--set", "model.image_size=32", "--set", "train.zero_stage=2",
           "--set", f"tracking.tracking_uri=sqlite:///{tmp / 'mlruns.db'}",
           "--set", "tracking.experiment=test", "--set", "train.max_steps=30",
           "--set", "train.log_every=5", "--set", "train.val_every=15", "--set", "train.save_every=15"]
    cmd += [a for s in sets for a in ("--set", s)] + (["--resume"] if resume else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=worker_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Trained stage" in proc.stdout and "MLflow run" in proc.stdout  # the one-paragraph summary
    return json.loads((out / "summary.json").read_text()), proc.stderr


def mlflow_run(summary: dict):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(summary["tracking_uri"])
    return client, client.get_run(summary["mlflow_run_id"])


def assert_tracked_and_learning(summary: dict, loss_key: str = "total_loss") -> None:
    client, run = mlflow_run(summary)
    assert run.data.params["train.zero_stage"] == "2" and run.data.params["world_size"] == "2"
    assert run.data.tags["dataset.sha256"]  # lineage of the dataset trained on
    history = [m.value for m in sorted(client.get_metric_history(run.info.run_id, loss_key),
                                       key=lambda m: m.step)]
    assert len(history) == 6 and history[-1] < history[0]  # the loss goes down
    for key in ("lr", "samples_per_s", "data_wait_fraction", "val_total_loss"):
        assert key in run.data.metrics, key
    samples = {Path(a.path).suffix for a in client.list_artifacts(run.info.run_id, "samples")}
    assert samples == {".png", ".mp4"}  # grid + video: reference | generated | ground truth


def test_cli_both_stages_zero2_torchrun_then_export(corpus, tmp_path):
    from iptalker_model.checkpoint import load_iptalker, load_syncnet

    expert, _ = cli_train(corpus, tmp_path, "syncnet")
    assert expert["status"] == "FINISHED" and expert["step"] == 30
    assert_tracked_and_learning(expert)
    syncnet_path = tmp_path / "syncnet.pt"
    subprocess.run([CLI, "export", "--checkpoint", expert["out_dir"], "--out", str(syncnet_path)],
                   check=True, env=worker_env())
    assert load_syncnet(syncnet_path).cfg.image_size == 32

    gen, _ = cli_train(corpus, tmp_path, "iptalker", f"train.syncnet_checkpoint={syncnet_path}")
    assert gen["step"] == 30 and "sync_loss" in gen["metrics"]
    assert_tracked_and_learning(gen)
    subprocess.run([CLI, "export", "--checkpoint", gen["out_dir"], "--out", str(tmp_path / "g.pt")],
                   check=True, env=worker_env())
    assert load_iptalker(tmp_path / "g.pt").cfg.image_size == 32  # weights_only=True inside


@pytest.mark.parametrize("stage", ["syncnet", "iptalker"])
def test_zero3_smoke_and_export(corpus, tmp_path, stage):
    from iptalker_model.checkpoint import load_iptalker, load_syncnet
    from pipelines.train.export import export_checkpoint

    s = settings(corpus, tmp_path, stage, zero_stage=3, max_steps=4, log_every=2, val_every=4,
                 save_every=4)
    summary = launch_training(s, launcher="torchrun", nproc=2)
    assert summary["status"] == "FINISHED" and summary["step"] == 4
    load = load_syncnet if stage == "syncnet" else load_iptalker
    load(export_checkpoint(summary["out_dir"], tmp_path / "z3.pt"))


def descendants(pid: int) -> list[int]:
    """Child pids, recursively (torchrun starts each rank in its own session, so no killpg)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in map(int, (task / "children").read_text().split()):
                out += [child, *descendants(child)]
    return out


def test_sigkill_then_resume_continues_step_lr_and_run(corpus, tmp_path):
    s = settings(corpus, tmp_path, "syncnet", max_steps=60, save_every=5, val_every=60)
    config_path = write_job(resolve_job(s))
    latest = tmp_path / "syncnet" / "checkpoints" / "latest"  # advanced once a save is complete
    proc = subprocess.Popen(torchrun_command(config_path, nproc=2), env=worker_env(),
                            start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while not latest.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for pid in [proc.pid, *descendants(proc.pid)]:  # torchrun and its ranks, mid-run
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
    from pipelines.train.checkpointing import latest_tag

    killed_at = int(latest_tag(tmp_path / "syncnet").split("_")[1])  # newest complete (the pointer may lag)
    assert 0 < killed_at < 60, "the run finished before it could be killed"

    summary, stderr = cli_train(corpus, tmp_path, "syncnet", "train.max_steps=60",
                                "train.save_every=5", "train.val_every=60", resume=True)
    assert f"resumed at step {killed_at}" in stderr
    assert summary["step"] == 60
    client, run = mlflow_run(summary)
    runs = client.search_runs([run.info.experiment_id])
    assert len(runs) == 1  # the resumed job logged into the run the killed one started
    lr = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "lr")}
    assert max(lr) == 60 and lr[60] == pytest.approx(2e-5)  # schedule ended where it should


def test_ray_launcher_two_cpu_workers(corpus, tmp_path):
    s = settings(corpus, tmp_path, "syncnet", max_steps=10, val_every=10, save_every=10)
    summary = launch_training(s, launcher="ray", nproc=2, use_gpu=False)
    assert summary["status"] == "FINISHED" and summary["step"] == 10
    client, run = mlflow_run(summary)
    assert run.data.params["world_size"] == "2" and "total_loss" in run.data.metrics
    assert (Path(summary["checkpoints"]) / "model" / "step_00000010").is_dir()


def test_worker_accepts_deepspeed_local_rank_flag():
    out = subprocess.run([sys.executable, "-m", "pipelines.train.worker", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--local_rank" in out and "--config" in out
