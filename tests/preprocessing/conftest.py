"""Shared, session-scoped synthetic media for the preprocessing tests (rendered once)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from preprocessing.synthetic.corpus import write_bad_inputs


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The documented command's corpus, made by the CLI itself so every test on it checks what
    users run: ``iptalker synth --out DIR --videos 4 --seed 1`` (4 mp4s + .json sidecars)."""
    out = tmp_path_factory.mktemp("corpus")
    cli = str(Path(sys.executable).with_name("iptalker"))
    subprocess.run([cli, "synth", "--out", str(out), "--videos", "4", "--seed", "1"], check=True,
                   capture_output=True, timeout=300)
    return sorted(out.glob("*/*.mp4"))


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per BAD_KINDS + EDGE_KINDS kind."""
    return write_bad_inputs(tmp_path_factory.mktemp("bad"), seed=0)
