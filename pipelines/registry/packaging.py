"""Log a run's bundle as the pyfunc model and register a version of it.

Our own code travels as ``code_paths`` (``iptalker_model``, ``preprocessing``, ``pipelines``), not as
a pip requirement: the package is not on any index, and the model must serve with exactly the
source that registered it (the version's ``git.commit`` tag names it). Third-party packages are
pinned from ``constraints.txt``, the project's one source of pins.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO_ROOT / "constraints.txt"
CODE_PACKAGES = ("iptalker_model", "preprocessing", "pipelines")
MODEL_NAME_IN_RUN = "model"
# what `predict` (pipelines.dub) imports at serving time
SERVING_DISTRIBUTIONS = (
    "torch", "numpy", "pandas", "pyarrow", "opencv-python-headless", "decord", "dlib-bin",
    "face-recognition-models", "scikit-image", "soundfile", "openai-whisper", "numba", "tiktoken",
    "more-itertools", "mlflow", "fsspec", "s3fs", "pyyaml", "pydantic", "webdataset", "tqdm",
)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements(constraints: Path = CONSTRAINTS) -> list[str]:
    """``name==version`` for every serving distribution, read from ``constraints.txt``."""
    if not constraints.is_file():
        raise UserError(f"{constraints} not found: the model's requirements are pinned from it "
                        "(register from a checkout of the project)")
    pins = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_normalise(name)] = f"{name.strip()}=={version.strip()}"
    missing = [d for d in SERVING_DISTRIBUTIONS if _normalise(d) not in pins]
    if missing:
        raise UserError(f"{constraints} pins none of {missing}; regenerate it with `make lock`")
    # face-recognition-models imports pkg_resources, gone from setuptools 81
    return [pins[_normalise(d)] for d in SERVING_DISTRIBUTIONS] + ["setuptools<81"]


def log_model_in_run(client, run_id: str, bundle_dir: Path, registered_name: str,
                     serving_config: dict):
    """Log the pyfunc into the (reopened) source run and register it; returns the ModelVersion."""
    import mlflow

    from pipelines.registry.pyfunc import signature

    status = client.get_run(run_id).info.status
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME_IN_RUN,
            python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
            artifacts={"bundle": str(bundle_dir)},
            code_paths=[str(REPO_ROOT / p) for p in CODE_PACKAGES],
            signature=signature(),
            pip_requirements=pinned_requirements(),
            model_config=serving_config,
            registered_model_name=registered_name,
        )
        mlflow.end_run(status=status if status in ("FINISHED", "FAILED", "KILLED") else "FINISHED")
    return client.get_model_version(registered_name, str(info.registered_model_version))
