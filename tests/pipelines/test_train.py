"""End-to-end training: 2 ranks (gloo, CPU) under torchrun with ZeRO-2, both stages, MLflow (sqlite),
export; ZeRO-3 smoke; SIGKILL + resume keeps the step counter, the LR schedule and the MLflow run.

Debug-size model at 32 px on the synthetic corpus of ``test_loader.write_corpus``.
"""

from __future__ import annotations

import contextlib
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
from tests.pipelines.test_loader import write_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("corpus")), videos=4, clips=2, frames=40)


def settings(corpus: str, tmp: Path, stage: str, **train) -> dict:
    base = {"data": corpus, "stage": stage, "out_dir": str(tmp / stage), "max_steps": 30,
            "log_every": 5, "val_every": 15, "save_every": 15, "num_workers": 1, "zero_stage": 2}
    return {"train": {**base, **train}, "model": {"preset": "tiny", "image_size": 32},
            "tracking": {"tracking_uri": f"sqlite:///{tmp / 'mlruns.db'}", "experiment": "test"}}


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
    samples = [a.path for a in client.list_artifacts(run.info.run_id, "samples")]
    assert samples and samples[0].endswith(".png")


def test_both_stages_zero2_torchrun_then_export(corpus, tmp_path):
    from iptalker_model.checkpoint import load_iptalker, load_syncnet
    from pipelines.export import export_checkpoint

    expert = launch_training(settings(corpus, tmp_path, "syncnet"), launcher="torchrun", nproc=2)
    assert expert["status"] == "FINISHED" and expert["step"] == 30
    assert_tracked_and_learning(expert)
    syncnet_path = export_checkpoint(expert["out_dir"], tmp_path / "syncnet.pt")
    assert load_syncnet(syncnet_path).cfg.image_size == 32

    gen = launch_training(settings(corpus, tmp_path, "iptalker", syncnet_checkpoint=str(syncnet_path)),
                          launcher="torchrun", nproc=2)
    assert gen["step"] == 30 and "sync_loss" in gen["metrics"]
    assert_tracked_and_learning(gen)
    model = load_iptalker(export_checkpoint(gen["out_dir"], tmp_path / "iptalker.pt"))  # weights_only
    assert model.cfg.image_size == 32


def test_zero3_smoke_and_export(corpus, tmp_path):
    from iptalker_model.checkpoint import load_iptalker
    from pipelines.export import export_checkpoint

    s = settings(corpus, tmp_path, "iptalker", zero_stage=3, max_steps=4, log_every=2, val_every=4,
                 save_every=4)
    summary = launch_training(s, launcher="torchrun", nproc=2)
    assert summary["status"] == "FINISHED" and summary["step"] == 4
    load_iptalker(export_checkpoint(summary["out_dir"], tmp_path / "z3.pt"))


def descendants(pid: int) -> list[int]:
    """Child pids, recursively (torchrun starts each rank in its own session, so no killpg)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in map(int, (task / "children").read_text().split()):
                out += [child, *descendants(child)]
    return out


def test_sigkill_then_resume_continues_step_lr_and_run(corpus, tmp_path, capfd):
    s = settings(corpus, tmp_path, "syncnet", max_steps=60, save_every=5, val_every=60)
    config_path = write_job(resolve_job(s))
    latest = tmp_path / "syncnet" / "checkpoints" / "model" / "latest"
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
    killed_at = int(latest.read_text().strip().split("_")[1])
    assert 0 < killed_at < 60, "the run finished before it could be killed"

    s["train"]["resume"] = True
    summary = launch_training(s, launcher="torchrun", nproc=2)
    assert f"resumed at step {killed_at}" in capfd.readouterr().err
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
    out = subprocess.run([sys.executable, "-m", "pipelines.train_worker", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--local_rank" in out and "--config" in out
