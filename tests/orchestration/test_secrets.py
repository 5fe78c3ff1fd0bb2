"""Credentials never leave the environment they were given in: not into Ray's runtime env, not into
any file a job writes, not into its output. A curation job runs with a recognisable fake secret,
with real Ray and real S3 (loopback moto) that the workers reach with that secret. Training with
the Ray launcher and MLflow is checked the same way by the whole pipeline on a two-node cluster
(``test_multinode.test_pipeline_on_a_cluster_with_s3_and_a_remote_mlflow``)."""

from __future__ import annotations

import os
import shutil

import pytest

from orchestration.launch import ray_env_vars
from pipelines.data.storage import Storage, join
from tests.fixtures.leaks import SECRET, files_containing, s3_objects_containing

pytestmark = pytest.mark.slow


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


def test_curation_keeps_the_secret_out_of_ray_the_dataset_and_the_output(secret_env, s3_bucket, tmp_path, capfd):
    import ray

    from pipelines.curate.config import CurateConfig
    from pipelines.curate.job import run_curation
    from pipelines.data.storage import StorageConfig
    from tests.fixtures import curate_standins as standins
    from tests.fixtures.whisper import random_preprocess

    assert not ray.is_initialized()
    standins.write_corpus(tmp_path / "in", n_good=2)
    st = Storage()
    for p in (tmp_path / "in").rglob("*.mp4"):  # inputs on S3 too: workers fetch them with the secret
        st.put(p, join(s3_bucket, "raw", p.parent.name, p.name))
    ray_tmp = f"/tmp/rt-cs{os.getpid()}"
    root = join(s3_bucket, "datasets/v1")
    try:
        summary = run_curation([join(s3_bucket, "raw")], root, CurateConfig(num_workers=2), random_preprocess(),
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
