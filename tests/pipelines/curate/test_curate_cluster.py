"""The curation driver as its own process: SIGKILL mid-run then resume, and submission to a real
local Ray cluster (``ray start --head`` on 127.0.0.1, token auth, then ``--address``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import webdataset as wds

from pipelines.data import shards
from pipelines.data.storage import Storage
from pipelines.train.engines import free_ports
from preprocessing.synthetic.corpus import generate_corpus, write_bad_inputs
from tests.conftest import REPO
from tests.fixtures import curate_standins as standins
from tests.fixtures.ray_cluster import RAY, kill_processes_with, ray_env
from tests.fixtures.whisper import ALLOW_RANDOM_SET

pytestmark = pytest.mark.slow


def driver(out: Path, inputs: Path, env: dict, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.fixtures.curate_standins", str(out), str(inputs),
            "--shard-max-samples", "3", *extra]


def sample_keys(root: Path) -> list[str]:
    keys = []
    for shard in shards.list_done_shards(Storage(), str(root)):
        keys += [s["__key__"] for s in wds.WebDataset(shard.tar, shardshuffle=False, empty_check=False)]
    return keys


def test_sigkill_mid_run_then_resume_matches_uninterrupted_run(tmp_path):
    standins.write_corpus(tmp_path / "in", n_good=12, sleep=0.4)
    env = ray_env()
    ref_dir, tmp_a, tmp_b = f"/tmp/rt-r{os.getpid()}", f"/tmp/rt-a{os.getpid()}", f"/tmp/rt-b{os.getpid()}"
    try:
        subprocess.run(driver(tmp_path / "ref", tmp_path / "in", env, "--temp-dir", ref_dir), env=env,
                       cwd=REPO, check=True, timeout=300, capture_output=True)
        out = tmp_path / "ds"
        proc = subprocess.Popen(driver(out, tmp_path / "in", env, "--temp-dir", tmp_a), env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while not list(out.glob("shards/*/*.done.json")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the driver finished before it could be killed"
        proc.send_signal(signal.SIGKILL)  # mid-run: one shard committed, videos and writes in flight
        proc.wait()
        kill_processes_with(tmp_a)
        committed_before = len(list(out.glob("shards/*/*.done.json")))
        assert 1 <= committed_before < len(list((tmp_path / "ref").glob("shards/*/*.done.json")))

        rerun = subprocess.run(driver(out, tmp_path / "in", env, "--temp-dir", tmp_b), env=env, cwd=REPO,
                               timeout=300, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert "already done" in rerun.stdout
    finally:
        for d in (ref_dir, tmp_a, tmp_b):
            kill_processes_with(d)

    keys, ref_keys = sample_keys(out), sample_keys(tmp_path / "ref")
    assert len(keys) == len(set(keys)) and set(keys) == set(ref_keys) and len(ref_keys) == 24
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert not leftovers
    tars = {p.name[: -len(".tar")] for p in out.glob("shards/*/*.tar")}
    assert tars == {p.name[: -len(".done.json")] for p in out.glob("shards/*/*.done.json")}
    inputs = pd.read_parquet(out / "index/inputs.parquet")
    assert len(inputs) == 14 and inputs["uri"].is_unique and (inputs["reason"] != "not_processed").all()


def test_cli_job_runs_on_a_started_local_ray_cluster(tmp_path):
    """``iptalker curate --address`` with the real stages, on a cluster this test starts."""
    generate_corpus(tmp_path / "in/talk", 2, seed=5, n_identities=2, seconds=(2.0, 2.5))
    write_bad_inputs(tmp_path / "in/bad", seed=5, kinds=("empty", "no_face"))
    env, temp_dir = ray_env(), f"/tmp/rt-c{os.getpid()}"
    names = ("metrics-export-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "runtime-env-agent-port")
    port, *picked = free_ports(1 + len(names))
    ports = [f"--{name}={p}" for name, p in zip(names, picked)]
    try:
        subprocess.run([str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                        "--num-cpus=2", f"--temp-dir={temp_dir}", "--include-dashboard=false",
                        "--disable-usage-stats", *ports], env=env, check=True, timeout=120, capture_output=True)
        cli = [str(Path(sys.executable).with_name("iptalker")), "curate", "--input", str(tmp_path / "in"),
               "--output", str(tmp_path / "ds"), "--address", f"127.0.0.1:{port}", "--no-progress",
               "--set", ALLOW_RANDOM_SET]
        run = subprocess.run(cli, env=env, cwd=tmp_path, timeout=400, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
        # the driver joined the cluster (no second local instance) and the work ran there
        assert "Started a local Ray instance" not in run.stderr
        assert "4 inputs" in run.stdout and "2 accepted" in run.stdout, run.stdout
    finally:
        kill_processes_with(temp_dir)
    inputs = pd.read_parquet(tmp_path / "ds/index/inputs.parquet")
    assert len(sample_keys(tmp_path / "ds")) == inputs["clips"].sum() >= 2
