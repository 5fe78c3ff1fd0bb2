"""``iptalker submit``: run an iptalker verb as a Ray job on a cluster, from a laptop.

It wraps Ray's job submission API (what ``ray job submit`` does): the repository is uploaded as the
job's ``working_dir`` (or not, when the cluster image already has the same code), the entrypoint is
``python -m orchestration.cli VERB ARGS...`` run on the head node, and the logs stream back until
the job ends. The job's ``runtime_env`` carries only harmless settings: credentials are never put
there (Ray shows runtime envs on its dashboard and keeps them in job metadata); cluster nodes read
them from their own environment (on KubeRay: a Secret, see ``infra/kuberay``).
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
# Never uploaded: environments, caches, outputs, VCS data.
EXCLUDES = [".venv", ".cache", ".git", "demo-out", "runs", "mlruns", "*.db", "__pycache__",
            ".pytest_cache", ".ruff_cache", "*.egg-info"]
# Settings a job may carry; anything that looks like a credential is refused even if asked for.
FORWARDED_ENV = ("DS_ACCELERATOR", "DS_BUILD_OPS", "RAY_USAGE_STATS_ENABLED", "AWS_ENDPOINT_URL",
                 "AWS_DEFAULT_REGION", "AWS_REGION", "MLFLOW_TRACKING_URI")
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|_KEY($|_)|ACCESS_KEY", re.I)
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def is_secret_name(name: str) -> bool:
    """True for environment variable names that hold credentials (AWS_SECRET_ACCESS_KEY, ...)."""
    return bool(SECRET_NAME.search(name))


def job_runtime_env(working_dir: str | Path | None, env: dict[str, str]) -> dict:
    """The runtime_env of a submitted job: code to upload and non-secret settings only."""
    leaked = sorted(k for k in env if is_secret_name(k))
    if leaked:
        raise UserError(f"refusing to put credentials in the Ray job's runtime_env: {', '.join(leaked)}; "
                        "give the cluster nodes their own credentials (e.g. a Kubernetes Secret)")
    runtime_env: dict = {"env_vars": dict(env)} if env else {}
    if working_dir:
        runtime_env |= {"working_dir": str(working_dir), "excludes": list(EXCLUDES)}
    return runtime_env


@dataclass
class SubmitResult:
    job_id: str
    status: str
    address: str


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:  # unreachable dashboard, wrong auth, not a Ray address
        raise UserError(f"cannot reach the Ray job API at {address!r}: {str(e).splitlines()[0]}") from None


def submit(address: str, verb_args: list[str], *, working_dir: str | Path | None = REPO_ROOT,
           env: dict[str, str] | None = None, follow: bool = True,
           log: Callable[[str], None] = lambda s: print(s, end="", flush=True),
           poll_s: float = 1.0) -> SubmitResult:
    """Submit ``iptalker VERB_ARGS`` to the cluster whose job API (dashboard) is ``address``.

    ``env``: extra non-secret variables for the job (credentials are refused). With ``follow`` the
    job's logs are streamed through ``log`` and the call returns when it ends; otherwise at once.
    """
    if not verb_args:
        raise UserError("nothing to submit: give a verb, e.g. `iptalker submit --address URL -- curate ...`")
    import os

    forwarded = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    runtime_env = job_runtime_env(working_dir, {**forwarded, **(env or {})})
    client = _client(address)
    entrypoint = shlex.join(["python", "-m", "orchestration.cli", *verb_args])
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                               metadata={"iptalker_verb": verb_args[0]})
    log(f"submitted {job_id} to {address}: {entrypoint}\n")
    if not follow:
        return SubmitResult(job_id, str(client.get_job_status(job_id)), address)
    seen = 0
    while True:  # poll the logs: tail_job_logs needs an event loop and a websocket the proxy may block
        status = str(client.get_job_status(job_id)).rsplit(".", 1)[-1]
        logs = client.get_job_logs(job_id)
        if len(logs) > seen:
            log(logs[seen:])
            seen = len(logs)
        if status in TERMINAL:
            return SubmitResult(job_id, status, address)
        time.sleep(poll_s)
