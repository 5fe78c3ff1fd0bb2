"""`iptalker demo` (what `make demo` runs), small: every existing step runs for real and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from iptalker_model.checkpoint import load_iptalker, load_syncnet

IPTALKER = str(Path(sys.executable).with_name("iptalker"))


@pytest.mark.slow
def test_demo_runs_every_existing_step(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    r = subprocess.run([IPTALKER, "demo", "--out", str(out), "--videos", "3", "--steps", "4",
                        "--set", f"ray.temp_dir=/tmp/rt-d{os.getpid()}"],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "still to come" in r.stdout  # later steps are announced, not faked
    assert len(list((out / "dataset" / "shards").glob("*/*.done.json"))) >= 1
    assert (out / "dataset" / "report" / "index.html").is_file()
    syncnet, model = load_syncnet(out / "models" / "syncnet.pt"), load_iptalker(out / "models" / "iptalker.pt")
    assert all(torch.isfinite(p).all() for p in [*syncnet.parameters(), *model.parameters()])
    assert (out / "mlruns.db").is_file()
