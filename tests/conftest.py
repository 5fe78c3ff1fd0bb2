"""Shared fixtures: a real S3 endpoint on loopback (moto_server, as s3fs's own suite does)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from pipelines.train.engines import free_port  # noqa: F401  (re-exported for the tests)
from tests.fixtures.servers import start_http_server

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]

# -- pytest-xdist (`make test`: two workers, `--dist loadgroup`) ---------------------------------
# Each module runs on one worker (its module fixtures are built once), and modules that share an
# expensive session fixture run on the same one. xdist's own loadgroup reads `xdist_group` marks
# through `item._nodeid`, which pytest 9 no longer reads, so the grouping is a scheduler here.
SHARED_SESSION = {"tests/pipelines/metrics/": "talking", "tests/pipelines/evaluate/": "talking",
                  "tests/pipelines/dub/": "dub"}
# The longest groups go first, so no worker is left alone with one at the end.
LONGEST_FIRST = ("tests/orchestration/test_demo.py", "tests/learning/test_dubbing.py",
                 "tests/orchestration/test_multinode.py", "talking", "tests/pipelines/curate/test_curate_e2e.py",
                 "dub", "tests/pipelines/train/test_train.py", "tests/orchestration/test_cli.py")


def xdist_group_of(nodeid: str) -> str:
    """A test's xdist group: its module, or the name of the session fixture set it shares."""
    module = nodeid.split("::", 1)[0]
    return next((g for prefix, g in SHARED_SESSION.items() if module.startswith(prefix)), module)


def pytest_collection_modifyitems(config, items):
    rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(xdist_group_of(item.nodeid), len(rank)))  # stable: file order kept


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup``: whole groups (``xdist_group_of``) per worker, in collection order."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid)

    return GroupScheduling(config, log)


def pytest_configure(config):
    """Two workers on two cores: every torch (and every subprocess's OpenMP) runs one thread; two
    threads per worker would oversubscribe the cores, and a spinning OpenMP thread on a busy core
    slows its whole process several-fold."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["MKL_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """URL of a moto S3 server started for this test session on 127.0.0.1."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    moto = Path(sys.executable).with_name("moto_server")
    url = f"http://127.0.0.1:{port}"
    proc = start_http_server([str(moto), "-H", "127.0.0.1", "-p", str(port)], url + "/moto-api/", log,
                             timeout_s=30)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing-secret", AWS_ENDPOINT_URL=url)
    yield url
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh bucket on the loopback endpoint; yields its ``s3://`` root."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="testing", secret="testing-secret", skip_instance_cache=True)
    name = f"t{uuid.uuid4().hex[:10]}"
    fs.mkdir(name)
    yield f"s3://{name}"
