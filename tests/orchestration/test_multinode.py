"""Several nodes on one machine, as a cluster has them: two ``torchrun`` agents (``--nnodes 2``, c10d
rendezvous on 127.0.0.1, one rank each) train, checkpoint and resume; a real two-node local Ray
cluster (head + worker node, own ports and temp dirs, a pod's S3 credential in their environment)
runs ``iptalker submit`` for a curation job, and ``iptalker pipeline`` against it: curation on the
cluster, Ray Train across both nodes, ``s3://`` storage and a real remote MLflow server."""

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
from tests.fixtures.leaks import SECRET, files_containing, s3_objects_containing
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
def cluster(s3_endpoint):
    """The nodes hold the S3 credential, as a pod has it from a Secret (moto accepts any)."""
    c = start_two_node_cluster(cpus_per_node=1, env={"AWS_SECRET_ACCESS_KEY": SECRET})
    yield c
    c.stop()


def test_submit_curation_to_a_two_node_ray_cluster(cluster, tmp_path):
    from preprocessing.synthetic.corpus import generate_corpus

    generate_corpus(tmp_path / "raw", 4, seed=3, n_identities=2, seconds=(2.0, 2.0))
    env = {**cluster.env, "AWS_SECRET_ACCESS_KEY": SECRET}  # must never reach the job
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
    assert SECRET not in seen["runtime_env"]  # no credential in the job's metadata
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


def test_pipeline_on_a_cluster_with_s3_and_a_remote_mlflow(cluster, s3_bucket, tmp_path):
    """``iptalker pipeline --config`` as a user runs it against a cluster: raw videos and the dataset
    on S3, curation as Ray tasks, IPTalker training with Ray Train over the two nodes (one worker
    each) against a given SyncNet, a real ``mlflow server``, the gate, and a rerun that resumes.
    The driver and the nodes hold a fake secret that must end up in no file, object, log or MLflow
    record."""
    import yaml
    from mlflow.tracking import MlflowClient

    from iptalker_model import SyncNet
    from iptalker_model.checkpoint import save_weights
    from orchestration.settings import load_settings
    from pipelines.data.storage import Storage, join
    from preprocessing.synthetic.corpus import generate_corpus
    from tests.fixtures.servers import start_mlflow_server

    st = Storage()
    raw = generate_corpus(tmp_path / "raw", 4, seed=5, n_identities=2, seconds=(2.0, 2.0))
    for p in raw:
        st.put(p, join(s3_bucket, "raw", p.parent.name, p.name))
    server_root = tmp_path / "mlflow"
    server_root.mkdir()
    server, url = start_mlflow_server(server_root)
    work = tmp_path / "work"  # a shared filesystem on a real cluster; both nodes see it here
    config = {
        "pipeline": {"workdir": str(work), "inputs": [join(s3_bucket, "raw")], "dataset": join(s3_bucket, "ds"),
                     "launcher": "ray", "nproc": 1, "nnodes": 2},
        "ray": {"address": cluster.gcs_address},
        "tracking": {"tracking_uri": url, "experiment": "cluster"},
        "curate": {"val_identities": [raw[-1].parent.name]},
        "preprocess": {"whisper": {"allow_random": True}},
        "train": {"max_steps": 2, "syncnet_max_steps": 2, "batch_size": 1, "log_every": 1, "val_every": 2,
                  "save_every": 2, "sample_every": 100, "num_workers": 0, "zero_stage": 2},
        "evaluate": {"max_frames": 40, "identity_every": 10},
        "registry": {"model_name": "cluster-talker"},
    }
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(yaml.safe_dump(config))
    # a SyncNet trained before (here: initialised) serves as the expert, so the pipeline trains
    # IPTalker only: one Ray Train stage shows the launcher; a second one would add ~100 s
    model_cfg = load_settings([str(cfg)], []).model
    expert = tmp_path / "syncnet.pt"
    save_weights(expert, SyncNet(model_cfg), model_cfg)
    config["train"]["syncnet_checkpoint"] = str(expert)
    cfg.write_text(yaml.safe_dump(config))
    env = {**worker_env(), "AWS_SECRET_ACCESS_KEY": SECRET, "MLFLOW_TRACKING_PASSWORD": SECRET,
           **{k: cluster.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}}
    try:
        run = subprocess.run([CLI, "pipeline", "--config", str(cfg)], env=env, capture_output=True, text=True,
                             timeout=1200)
        print("\n".join(line for line in run.stdout.splitlines() if "done in" in line))
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        again = subprocess.run([CLI, "pipeline", "--config", str(cfg)], env=env, capture_output=True, text=True,
                               timeout=300)
        client = MlflowClient(url)
        champion = client.get_model_version_by_alias("cluster-talker", "champion")
        runs = client.search_runs([client.get_experiment_by_name("cluster").experiment_id])
        downloaded = client.download_artifacts(champion.run_id, "", str(tmp_path / "downloaded"))
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert "champion: models:/cluster-talker@champion" in run.stdout
    outputs = {p.name.split("-", 1)[1][:-5]: json.loads(p.read_text())["outputs"] for p in (work / "stages").glob("*.json")}
    assert set(outputs) == {"curate", "train-iptalker", "bundle", "evaluate", "register", "promote"}
    assert outputs["curate"]["dataset"].startswith("s3://") and outputs["curate"]["counts"]["accepted"] == 4
    assert st.exists(join(s3_bucket, "ds", "index", "inputs.parquet"))
    (train,) = [r for r in runs if r.info.run_id == outputs["train-iptalker"]["run_id"]]
    assert outputs["train-iptalker"]["step"] == 2
    assert train.data.params["world_size"] == "2"                # one Ray Train worker on each node
    assert train.data.params["train.syncnet_checkpoint"] == str(expert)
    assert champion.version == str(outputs["promote"]["version"])
    assert champion.tags["evaluation.run_id"] == outputs["evaluate"]["run_id"]

    assert again.returncode == 0, again.stderr[-3000:]            # the rerun resumes: nothing redone
    assert again.stdout.count(": skipped, done at") == 6, again.stdout[-3000:]

    # the secret: in no file (workdir, MLflow's store and artifacts, both nodes' Ray dirs), no S3
    # object, no MLflow param or tag, no output
    leaks = files_containing(tmp_path) + [h for d in cluster.temp_dirs for h in files_containing(d)]
    assert leaks == [] and s3_objects_containing(s3_bucket) == []
    assert any(Path(downloaded).rglob("*.pt"))                     # the search saw the real artifacts
    for r in runs:
        assert SECRET not in json.dumps(r.data.params) + json.dumps(r.data.tags)
    assert SECRET not in run.stdout + run.stderr + again.stdout + again.stderr
