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
