"""The CLI as a user runs it: a subprocess of the installed console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

IPTALKER = str(Path(sys.executable).with_name("iptalker"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([IPTALKER, *args], capture_output=True, text=True, timeout=120)


def test_version_and_help():
    r = run("version")
    assert r.returncode == 0 and r.stdout.startswith("iptalker ")
    r = run("--help")
    assert r.returncode == 0 and "version" in r.stdout


def test_bad_config_key_is_one_line_exit_2():
    for argv in (["--set", "nonsense.key=1", "version"], ["version", "--set", "nonsense.key=1"]):
        r = run(*argv)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert "nonsense.key" in lines[0]
        assert "Traceback" not in r.stderr


def test_missing_config_file_is_one_line_exit_2(tmp_path):
    r = run("--config", str(tmp_path / "nope.yaml"), "config")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "nope.yaml" in r.stderr


def test_config_verb_prints_resolved_settings_without_secrets():
    r = run("config", "--set", "curate.num_workers=3", "--set", "storage.s3_secret=hunter2")
    assert r.returncode == 0
    assert "num_workers: 3" in r.stdout and "hunter2" not in r.stdout
