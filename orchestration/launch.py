"""Start the training workers: ``local``, ``torchrun``, ``deepspeed`` (hostfile) or ``ray`` (Ray Train).

Whatever the launcher, every rank runs the same code (``pipelines.train.worker``) on the same job:
the launcher resolves the settings once and writes ``<out_dir>/resolved_config.json``, which the
workers read (Ray ships the dict itself, since its workers may not share a disk with the driver).
S3 credentials never go into that file nor into Ray's ``runtime_env``: workers take them from their own environment.

  local      one training process on this machine
  torchrun   N processes per node; one node (--standalone) or N nodes via c10d rendezvous at
             master_addr:master_port (run the same command on every node)
  deepspeed  DeepSpeed's runner: a hostfile (see infra/hostfile.example) for several nodes,
             pdsh/ssh to reach them; without a hostfile, N local processes
  ray        Ray Train TorchTrainer with nproc * nnodes workers (GPU or CPU), on a local Ray or
             the cluster at ``ray_address``
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

LAUNCHERS = ("local", "torchrun", "deepspeed", "ray")
WORKER_MODULE = "pipelines.train.worker"
REPO_ROOT = Path(__file__).resolve().parents[1]


class LaunchError(RuntimeError):
    """The job cannot start as configured (a user error: the CLI exits 2)."""


class TrainingFailed(LaunchError):
    """The workers started and failed; their own output says why (the CLI exits 1)."""


# ------------------------------------------------------------------ the resolved job
def _section(settings, name: str) -> dict:
    value = settings.get(name) if isinstance(settings, dict) else getattr(settings, name, None)
    if value is None:
        return {}
    if dataclasses.is_dataclass(value):
        return value.public_dict() if hasattr(value, "public_dict") else dataclasses.asdict(value)
    return dict(value)


def resolve_job(settings) -> dict:
    """Settings (the ``Settings`` object or a dict with sections ``train``, ``model``, ``loss``,
    ``tracking``, ``storage``) -> the validated, fully resolved job dict the workers train."""
    from pipelines.train.trainer import TrainJob

    raw = {name: _section(settings, name) for name in ("train", "model", "loss", "tracking", "storage")}
    job = TrainJob.from_dict(raw)
    if not job.train.data:
        raise LaunchError("train.data is empty: pass --data URI (a curated dataset root)")
    job.train.out_dir = str(Path(job.train.out_dir).resolve())
    if not job.tracking.tracking_uri:  # pin the embedded store now so every worker agrees
        job.tracking.tracking_uri = job.tracking.resolved_uri()
    return job.to_dict()


def check_inputs(job: dict) -> None:
    """Fail before any worker starts when what the job reads is not there (one line, exit 2)
    rather than as a traceback on every rank."""
    from pipelines.data.loader import list_shards
    from pipelines.data.storage import Storage, StorageConfig
    from pipelines.errors import UserError

    train = job["train"]
    try:  # no shards, an empty train split, unreachable storage
        list_shards(train["data"], Storage(StorageConfig(**job.get("storage", {}))), "train")
    except (FileNotFoundError, UserError) as e:
        raise LaunchError(str(e)) from None
    expert = train.get("syncnet_checkpoint")
    if train["stage"] == "iptalker" and expert and "://" not in expert and not Path(expert).is_file():
        raise LaunchError(f"train.syncnet_checkpoint {expert} not found (export one with "
                          "`iptalker export` after `iptalker train --stage syncnet`)")
    check_geometry(job)


def check_geometry(job: dict) -> None:
    """Refuse a model config whose lower-face mask or alignment template differs from the one the
    dataset was curated for (``dataset.json["geometry"]``); older datasets without the record only
    get a warning."""
    from iptalker_model.config import ModelConfig
    from pipelines.data.geometry import GEOMETRY_KEY, geometry_mismatch
    from pipelines.data.shards import DATASET_JSON
    from pipelines.data.storage import Storage, StorageConfig, join

    data = job["train"]["data"]
    uri = join(data.rstrip("/"), DATASET_JSON)
    storage = Storage(StorageConfig(**job.get("storage", {})))
    try:
        recorded = json.loads(storage.read_bytes(uri)).get(GEOMETRY_KEY) if storage.exists(uri) else None
    except (ValueError, AttributeError) as e:
        raise LaunchError(f"{uri} is not a dataset.json written by `iptalker curate` ({e})") from None
    if not recorded:
        print(f"warning: {uri} records no crop/mask geometry (curated before it was recorded): the model's "
              "lower-face mask cannot be checked against the crops", file=sys.stderr, flush=True)
        return
    why = geometry_mismatch(recorded, ModelConfig.from_dict(job["model"]))
    if why:
        raise LaunchError(f"model config does not match dataset {data}: {why}")


def check_whisper(settings, job: dict) -> None:
    """Refuse (UserError, one line) data curated with another Whisper encoder than the configured
    ``preprocess.whisper``: the model would learn from features dubbing never produces."""
    from pipelines.data.encoder import check_data_encoder
    from pipelines.data.storage import Storage, StorageConfig
    from preprocessing.config import WhisperConfig

    cfg = WhisperConfig(**(_section(settings, "preprocess").get("whisper") or {}))
    check_data_encoder(job["train"]["data"], cfg, Storage(StorageConfig(**job.get("storage", {}))))


def write_job(job: dict) -> Path:
    path = Path(job["train"]["out_dir"]) / "resolved_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(job, indent=2, sort_keys=True))
    return path


def worker_env(extra: dict | None = None) -> dict:
    """Environment for worker processes: DeepSpeed on CPU without op compiles, repo importable."""
    import torch

    env = dict(os.environ)
    env.setdefault("DS_ACCELERATOR", "cuda" if torch.cuda.is_available() else "cpu")
    env.setdefault("DS_BUILD_OPS", "0")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO_ROOT / ".cache" / "torch_extensions"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "ACCESS_KEY", "SESSION", "AUTH")


def is_secret(name: str) -> bool:
    """Whether an environment variable holds (or may hold) a credential."""
    return any(m in name.upper() for m in SECRET_MARKERS)


def ray_env_vars(env: dict) -> dict:
    """What Ray workers get through ``runtime_env``: DeepSpeed/torch settings, PYTHONPATH and the
    non-secret AWS_*/MLFLOW_* settings (endpoint, region, tracking URI). Never a credential: Ray
    shows a job's runtime env in its dashboard, job metadata and agent logs, so workers read
    credentials from their own environment (on KubeRay: a Secret in the pod spec)."""
    return {k: v for k, v in env.items()
            if (k.startswith(("DS_", "TORCH_EXTENSIONS", "AWS_", "MLFLOW_")) or k == "PYTHONPATH")
            and not is_secret(k)}


# ------------------------------------------------------------------ commands
def torchrun_command(config_path: Path, nproc: int, nnodes: int = 1, master_addr: str = "127.0.0.1",
                     master_port: int = 29500, run_id: str = "iptalker") -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1:
        cmd.append("--standalone")
    else:
        cmd += [f"--nnodes={nnodes}", "--rdzv_backend=c10d",
                f"--rdzv_endpoint={master_addr}:{master_port}", f"--rdzv_id={run_id}"]
    return cmd + ["-m", WORKER_MODULE, "--config", str(config_path)]


def deepspeed_command(config_path: Path, nproc: int, nnodes: int = 1, hostfile: str = "",
                      master_addr: str = "", master_port: int = 29500) -> list[str]:
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", f"--num_gpus={nproc}",
           f"--num_nodes={nnodes}", f"--master_port={master_port}"]
    if hostfile:
        if not Path(hostfile).is_file():
            raise LaunchError(f"hostfile {hostfile} not found (example: infra/hostfile.example)")
        cmd.append(f"--hostfile={hostfile}")
    if master_addr:
        cmd.append(f"--master_addr={master_addr}")
    return cmd + ["--module", WORKER_MODULE, "--config", str(config_path)]


def _run(cmd: list[str], env: dict) -> None:
    print("launching: " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, env=env, cwd=os.getcwd())
    if proc.returncode != 0:
        raise TrainingFailed(f"training exited with code {proc.returncode} (see the workers' output above): "
                             f"{' '.join(cmd[:6])} ...")


# ------------------------------------------------------------------ launchers
def local_command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", WORKER_MODULE, "--config", str(config_path)]


def launch_local(config_path: Path) -> None:
    """One training process (rank 0 of a world of one), started fresh: DeepSpeed keeps global
    process-group state, so a second job in the same interpreter would trip over the first."""
    from pipelines.train.engines import free_port

    _run(local_command(config_path), worker_env({
        "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}))


def launch_ray(job: dict, num_workers: int, use_gpu: bool | None, address: str | None,
               temp_dir: str | None) -> dict:
    """Ray Train: ``num_workers`` TorchTrainer workers each run ``pipelines.train.worker.ray_train_loop``."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipelines.train.worker import ray_train_loop

    env = ray_env_vars(worker_env())
    started = not ray.is_initialized()
    if started:
        kw = {"address": address} if address else {
            "_temp_dir": temp_dir or tempfile.mkdtemp(prefix="ray-"), "include_dashboard": False}
        ray.init(runtime_env={"env_vars": env}, **kw)
    try:
        if use_gpu is None:
            use_gpu = ray.cluster_resources().get("GPU", 0) > 0
        trainer = TorchTrainer(
            ray_train_loop, train_loop_config={"job": job},
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            run_config=RunConfig(name="iptalker-train",
                                 storage_path=str(Path(job["train"]["out_dir"]) / "ray")))
        return dict(trainer.fit().metrics or {})  # rank 0's final metrics, for drivers off the shared disk
    finally:
        if started:
            ray.shutdown()


def launch_training(settings, *, launcher: str = "local", nproc: int = 1, nnodes: int = 1,
                    master_addr: str = "127.0.0.1", master_port: int = 29500, hostfile: str = "",
                    ray_address: str | None = None, use_gpu: bool | None = None) -> dict:
    """Resolve the job, write it to ``<out_dir>/resolved_config.json``, start the workers, wait.

    ``nproc``: processes (GPUs) per node; ``nnodes``: nodes. Returns the run summary rank 0 wrote
    (``<out_dir>/summary.json``: MLflow run id, final step and metrics, checkpoint path).
    Raises LaunchError when the workers fail.
    """
    if launcher not in LAUNCHERS:
        raise LaunchError(f"unknown launcher {launcher!r}; choose one of {list(LAUNCHERS)}")
    job = resolve_job(settings)
    check_inputs(job)
    check_whisper(settings, job)
    config_path = write_job(job)
    summary = Path(job["train"]["out_dir"]) / "summary.json"
    summary.unlink(missing_ok=True)  # never report a previous run's outcome
    metrics: dict = {}
    if launcher == "local":
        if nproc * nnodes != 1:
            raise LaunchError("launcher 'local' runs one process; use torchrun, deepspeed or ray")
        launch_local(config_path)
    elif launcher == "torchrun":
        _run(torchrun_command(config_path, nproc, nnodes, master_addr, master_port,
                              run_id=Path(job["train"]["out_dir"]).name), worker_env())
    elif launcher == "deepspeed":
        addr = master_addr if nnodes > 1 else ""
        _run(deepspeed_command(config_path, nproc, nnodes, hostfile, addr, master_port), worker_env())
    else:
        ray_cfg = _section(settings, "ray")
        metrics = launch_ray(job, nproc * nnodes, use_gpu, ray_address or ray_cfg.get("address"),
                             ray_cfg.get("temp_dir"))
    if summary.is_file():
        return json.loads(summary.read_text())
    return {"out_dir": job["train"]["out_dir"], "metrics": metrics}
