"""Credentials never leave the environment they were given in: not into Ray's runtime env, not into
MLflow (params, tags, artifacts), not into any file a job writes, not into its output. Training
with the Ray launcher and a curation job run with a recognisable fake secret, with real Ray, real
MLflow (sqlite) and real S3 (loopback moto) that the workers reach with that secret."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from orchestration.launch import launch_training, ray_env_vars
from pipelines.data.storage import Storage, join
from tests.fixtures.corpus import write_corpus

pytestmark = pytest.mark.slow
SECRET = "sk-test-SECRET-123"


def files_containing(root: str | Path, needle: str = SECRET) -> list[str]:
    """Every file under ``root`` whose bytes contain ``needle`` (binary files too: sqlite, tars)."""
    hits = []
    for path in Path(root).rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle.encode() in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                pass  # sockets, vanished temp files
    return hits


def s3_objects_containing(root: str, needle: str = SECRET) -> list[str]:
    st = Storage()
    return [u for u in st.find(root) if needle.encode() in st.read_bytes(u)]


@pytest.fixture
def secret_env(monkeypatch, s3_endpoint):
    """The fake secret is the one credential workers have (moto accepts any)."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    return SECRET


def test_ray_env_keeps_settings_and_drops_credentials():
    env = {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": "t",
           "AWS_ENDPOINT_URL": "http://s3", "AWS_REGION": "eu-west-1", "MLFLOW_TRACKING_URI": "http://m",
           "MLFLOW_TRACKING_TOKEN": "t", "MLFLOW_TRACKING_PASSWORD": "p", "DS_ACCELERATOR": "cpu",
           "PYTHONPATH": "/repo", "HOME": "/root"}
    assert ray_env_vars(env) == {"AWS_ENDPOINT_URL": "http://s3", "AWS_REGION": "eu-west-1",
                                 "MLFLOW_TRACKING_URI": "http://m", "DS_ACCELERATOR": "cpu", "PYTHONPATH": "/repo"}


def test_ray_training_keeps_the_secret_out_of_ray_mlflow_and_files(secret_env, s3_bucket, tmp_path, capfd):
    from mlflow.tracking import MlflowClient

    data = write_corpus(f"{s3_bucket}/ds", videos=3, clips=1, frames=30)  # read by the workers with it
    ray_tmp = f"/tmp/rt-sec{os.getpid()}"  # short: Ray's socket paths are length-limited
    settings = {
        "train": {"data": data, "stage": "syncnet", "out_dir": str(tmp_path / "run"), "max_steps": 2,
                  "log_every": 1, "val_every": 2, "save_every": 2, "num_workers": 0},
        "model": {"preset": "tiny", "image_size": 32},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlruns.db'}",
                     "artifact_location": str(tmp_path / "artifacts")},
        "ray": {"temp_dir": ray_tmp}}
    try:
        summary = launch_training(settings, launcher="ray", nproc=1, use_gpu=False)
        assert summary["step"] == 2
        ray_hits = files_containing(ray_tmp)  # the job's runtime env lands in Ray's agent logs
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert ray_hits == []
    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["mlflow_run_id"])
    assert SECRET not in json.dumps(run.data.params) + json.dumps(run.data.tags)
    artifacts = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "downloaded")))
    assert any(p.is_file() for p in artifacts.rglob("*"))  # the search below saw real artifacts
    assert files_containing(tmp_path) == []  # out dir, resolved config, sqlite store, artifacts
    out = capfd.readouterr()
    assert SECRET not in out.out + out.err


def test_curation_keeps_the_secret_out_of_ray_the_dataset_and_the_output(secret_env, s3_bucket, tmp_path, capfd):
    import ray

    from pipelines.curate.config import CurateConfig
    from pipelines.curate.job import run_curation
    from pipelines.data.storage import StorageConfig
    from preprocessing.config import PreprocessConfig
    from tests.fixtures import curate_standins as standins

    assert not ray.is_initialized()
    standins.write_corpus(tmp_path / "in", n_good=2)
    st = Storage()
    for p in (tmp_path / "in").rglob("*.mp4"):  # inputs on S3 too: workers fetch them with the secret
        st.put(p, join(s3_bucket, "raw", p.parent.name, p.name))
    ray_tmp = f"/tmp/rt-cs{os.getpid()}"
    root = join(s3_bucket, "datasets/v1")
    try:
        summary = run_curation([join(s3_bucket, "raw")], root, CurateConfig(num_workers=2), PreprocessConfig(),
                               StorageConfig(), ray_temp_dir=ray_tmp, progress=False, stages=standins.stages())
        print(summary.render())
        ray_hits = files_containing(ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert summary.counts["accepted"] == 2 and summary.counts["clips"] > 0
    assert ray_hits == []
    assert s3_objects_containing(root) == []  # shards, index, report, dataset.json
    out = capfd.readouterr()
    assert SECRET not in out.out + out.err
