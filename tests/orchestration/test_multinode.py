"""Several nodes on one machine, as a cluster has them: two ``torchrun`` agents (``--nnodes 2``, c10d
rendezvous on 127.0.0.1, one rank each) train, checkpoint and resume; a real two-node local Ray
cluster (head + worker node, own ports and temp dirs) runs ``iptalker submit`` for a curation job
and Ray Train across both nodes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from orchestration.launch import worker_env
from pipelines.train.engines import free_port
from tests.fixtures.corpus import write_corpus
from tests.fixtures.ray_cluster import start_two_node_cluster
from tests.fixtures.whisper import ALLOW_RANDOM_SET

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).with_name("iptalker"))


def _train_args(data: str, out: Path, tmp: Path, steps: int) -> list[str]:
    return ["train", "--data", data, "--stage", "syncnet", "--out", str(out),
            "--set", "model.preset=tiny", "--set", "model.image_size=32", "--set", "train.zero_stage=2",
            "--set", f"tracking.tracking_uri=sqlite:///{tmp / 'mlruns.db'}", "--set", f"train.max_steps={steps}",
            "--set", "train.save_every=4", "--set", "train.val_every=100", "--set", "train.log_every=2"]


def _two_agents(args: list[str], port: int) -> list[subprocess.CompletedProcess]:
    """The same command on two 'nodes' (agents), as a user runs it on each machine."""
    cmd = [CLI, *args, "--launcher", "torchrun", "--nproc", "1", "--nnodes", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(port)]
    procs = [subprocess.Popen(cmd, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        outs.append(subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr))
    return outs


def test_two_torchrun_agents_train_checkpoint_and_resume(tmp_path):
    data = str(tmp_path / "ds")
    write_corpus(data, videos=3, val_videos=1, size=32)
    out = tmp_path / "run"
    first = _two_agents(_train_args(data, out, tmp_path, steps=8), free_port())
    assert all(p.returncode == 0 for p in first), [p.stderr[-2000:] for p in first]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 8 and summary["status"] == "FINISHED"
    ranks = sorted((out / "checkpoints" / "model" / "step_00000008").glob("*optim_states.pt"))
    assert len(ranks) == 2  # one ZeRO-2 optimizer shard per node's rank

    again = _two_agents(_train_args(data, out, tmp_path, steps=12) + ["--resume"], free_port())
    assert all(p.returncode == 0 for p in again), [p.stderr[-2000:] for p in again]
    assert any("resumed at step 8" in p.stderr for p in again)
    assert json.loads((out / "summary.json").read_text())["step"] == 12


@pytest.fixture(scope="module")
def cluster():
    c = start_two_node_cluster(cpus_per_node=1)
    yield c
    c.stop()


def test_submit_curation_to_a_two_node_ray_cluster(cluster, tmp_path):
    from preprocessing.synthetic.corpus import generate_corpus

    generate_corpus(tmp_path / "raw", 4, seed=3, n_identities=2, seconds=(2.0, 2.0))
    env = {**cluster.env, "AWS_SECRET_ACCESS_KEY": "sk-test-SECRET-123"}  # must never reach the job
    cmd = [CLI, "submit", "--address", cluster.dashboard_url, "--", "curate", "--input", str(tmp_path / "raw"),
           "--output", str(tmp_path / "ds"), "--no-progress", "--set", "curate.val_fraction=0",
           "--set", ALLOW_RANDOM_SET]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    assert "SUCCEEDED" in run.stdout and "4 inputs" in run.stdout  # the job's own logs came back

    inputs = pd.read_parquet(tmp_path / "ds" / "index" / "inputs.parquet")
    assert len(inputs) == 4 and (inputs["status"] == "accepted").all()

    # The cluster is asked from a child process: Ray caches the auth token and mode per process,
    # so asking from here would break every later in-process ``ray.init`` (no token) in this session.
    probe = subprocess.run([sys.executable, "-c", _ASK_CLUSTER, cluster.dashboard_url, cluster.gcs_address],
                           env=cluster.env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert "SECRET" not in seen["runtime_env"]  # no credential in the job's metadata
    assert len(seen["nodes"]) == 2, f"work ran on {len(seen['nodes'])} node(s): {seen['nodes']}"


_ASK_CLUSTER = """
import json, sys, time
from ray.job_submission import JobSubmissionClient
from ray.util.state import list_tasks
dashboard, gcs = sys.argv[1], sys.argv[2]
job = JobSubmissionClient(dashboard).list_jobs()[-1]
nodes = set()
for _ in range(30):  # task events reach the state API a little after the job ends
    tasks = list_tasks(address=gcs, filters=[("name", "=", "process_video")], detail=True, limit=1000,
                       raise_on_missing_output=False)
    nodes = {t.node_id for t in tasks if t.node_id}
    if len(nodes) >= 2:
        break
    time.sleep(1)
print(json.dumps({"runtime_env": json.dumps(job.runtime_env or {}), "nodes": sorted(nodes)}))
"""


def test_ray_train_over_the_two_node_cluster(cluster, tmp_path):
    data = str(tmp_path / "ds")
    write_corpus(data, videos=3, val_videos=1, size=32)
    args = _train_args(data, tmp_path / "run", tmp_path, steps=4) + [
        "--launcher", "ray", "--nproc", "1", "--nnodes", "2", "--address", cluster.gcs_address, "--no-gpu"]
    run = subprocess.run([CLI, *args], env={**worker_env(), **{k: cluster.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Trained stage syncnet to step 4" in run.stdout
