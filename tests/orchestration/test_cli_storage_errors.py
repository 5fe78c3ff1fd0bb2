"""Storage that cannot be used (no credentials, a missing bucket, an unreachable endpoint, access
denied) ends every verb with one line and exit 2, never a botocore traceback. Real s3fs against
loopback moto servers and a closed port on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.train.engines import free_port

IPTALKER = str(Path(sys.executable).with_name("iptalker"))
NO_CREDENTIALS = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config",
                  "AWS_EC2_METADATA_DISABLED": "true"}


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    return subprocess.run([IPTALKER, *args], capture_output=True, text=True, timeout=300, env={**clean, **env})


def assert_one_line_exit_2(r: subprocess.CompletedProcess, *needles: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def raw(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.mp4").write_bytes(b"not really a video")
    return str(tmp_path / "raw")


def test_curate_without_credentials(raw, s3_endpoint):
    r = run(["curate", "--input", raw, "--output", "s3://datasets/v1", "--no-progress"],
            {"AWS_ENDPOINT_URL": s3_endpoint, **NO_CREDENTIALS})
    assert_one_line_exit_2(r, "iptalker curate: error: no S3 credentials", "AWS_ACCESS_KEY_ID")


def test_curate_into_a_missing_bucket(raw, s3_endpoint):
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_ENDPOINT_URL": s3_endpoint}
    r = run(["curate", "--input", raw, "--output", "s3://no-such-bucket/v1", "--no-progress"], creds)
    assert_one_line_exit_2(r, "bucket 'no-such-bucket' does not exist")


def test_train_from_an_unreachable_endpoint(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    r = run(["train", "--stage", "syncnet", "--data", "s3://datasets/v1", "--out", str(tmp_path / "run"),
             "--set", f"storage.s3_endpoint_url={closed}"],
            {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret"})
    assert_one_line_exit_2(r, "iptalker train: error: cannot reach the S3 endpoint", closed)


def test_train_with_access_denied(tmp_path):
    """A moto server that checks credentials; the key is unknown to it."""
    from tests.fixtures.servers import start_http_server

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_http_server([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                             url + "/moto-api/", tmp_path / "moto.log",
                             env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}, timeout_s=30)
    try:
        r = run(["train", "--stage", "syncnet", "--data", "s3://datasets/v1", "--out", str(tmp_path / "run")],
                {"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN", "AWS_SECRET_ACCESS_KEY": "sk-wrong-secret",
                 "AWS_ENDPOINT_URL": url})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert_one_line_exit_2(r, "iptalker train: error: access denied to s3://datasets/v1")
    assert "sk-wrong-secret" not in r.stderr


def test_export_of_a_missing_checkpoint(tmp_path):
    r = run(["export", "--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path / "m.pt")], {})
    assert_one_line_exit_2(r, "iptalker export: error:", "no complete checkpoint")
