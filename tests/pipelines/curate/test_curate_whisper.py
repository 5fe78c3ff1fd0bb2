"""Curation refuses to write random-encoder features unless told to, and records the encoder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.curate.config import CurateConfig
from pipelines.curate.job import run_curation
from pipelines.data.storage import StorageConfig
from pipelines.errors import UserError
from preprocessing.config import PreprocessConfig, WhisperConfig

CLI = str(Path(sys.executable).with_name("iptalker"))


def test_curation_without_checkpoint_stops_naming_the_key(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(UserError, match=r"preprocess\.whisper\.checkpoint is not set.*allow_random"):
        run_curation([str(tmp_path / "in")], str(tmp_path / "ds"), CurateConfig(), PreprocessConfig(),
                     StorageConfig(), progress=False)
    assert not (tmp_path / "ds").exists()  # stopped before writing anything


def test_unloadable_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "not-whisper.pt"
    bad.write_bytes(b"garbage")
    pre = PreprocessConfig(whisper=WhisperConfig(checkpoint=str(bad)))
    with pytest.raises(UserError, match="could not be loaded as an openai-whisper .pt") as e:
        run_curation([str(tmp_path)], str(tmp_path / "ds"), CurateConfig(), pre, StorageConfig(), progress=False)
    assert "\n" not in str(e.value)
    missing = PreprocessConfig(whisper=WhisperConfig(checkpoint=str(tmp_path / "absent.pt")))
    with pytest.raises(UserError, match="absent.pt"):
        run_curation([str(tmp_path)], str(tmp_path / "ds"), CurateConfig(), missing, StorageConfig(), progress=False)


def test_cli_curate_without_checkpoint_exits_2_with_one_line(tmp_path):
    (tmp_path / "in").mkdir()
    run = subprocess.run([CLI, "curate", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "ds")],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "preprocess.whisper.checkpoint" in lines[0], run.stderr
