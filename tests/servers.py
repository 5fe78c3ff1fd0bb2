"""Start a real server process for a test and wait until it answers over HTTP on loopback."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path


def start_http_server(cmd: list[str], health_url: str, log_path: Path, *, env: dict | None = None,
                      timeout_s: float = 90) -> subprocess.Popen:
    """Run ``cmd`` (output to ``log_path``) until ``health_url`` answers; raise with the log tail."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(health_url, timeout=1)
            return proc
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{cmd[0]} did not start: {log_path.read_text()[-2000:]}") from None
            time.sleep(0.2)
