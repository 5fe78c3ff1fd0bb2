"""``iptalker train`` refuses data curated with another Whisper encoder than the configured one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from iptalker_model.config import ModelConfig
from orchestration.launch import check_whisper, resolve_job
from pipelines.data.geometry import geometry_record
from pipelines.errors import UserError
from preprocessing.audio_features import encoder_identity
from preprocessing.config import PreprocessConfig
from tests.fixtures.corpus import write_corpus
from tests.fixtures.whisper import random_whisper

CLI = str(Path(sys.executable).with_name("iptalker"))


@pytest.fixture(scope="module")
def dataset_a(tmp_path_factory) -> str:
    """Finished shards whose dataset.json records encoder A (random-init, seed 0)."""
    root = tmp_path_factory.mktemp("ds-a")
    write_corpus(str(root), videos=2, clips=1, frames=20, size=32)
    doc = {"version": "a", "whisper": encoder_identity(random_whisper(seed=0)),
           "geometry": geometry_record(PreprocessConfig().align, ModelConfig.tiny())}  # only the encoder differs
    (root / "dataset.json").write_text(json.dumps(doc))
    return str(root)


def settings(tmp_path, data: str, whisper: dict | None) -> dict:
    s = {"train": {"data": data, "out_dir": str(tmp_path / "run"), "max_steps": 2},
         "model": {"preset": "tiny", "image_size": 32},
         "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlruns.db'}"}}
    if whisper is not None:
        s["preprocess"] = {"whisper": whisper}
    return s


def test_train_refuses_data_of_another_encoder_in_one_line(dataset_a, tmp_path):
    """Data recorded with encoder A, training configured with encoder B: exit 2, one line naming both."""
    run = subprocess.run([CLI, "train", "--data", dataset_a, "--stage", "syncnet", "--out", str(tmp_path / "run"),
                          "--set", "preprocess.whisper.allow_random=true", "--set", "preprocess.whisper.seed=1",
                          "--set", f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, run.stderr
    a, b = encoder_identity(random_whisper(seed=0)), encoder_identity(random_whisper(seed=1))
    assert a["sha256"][:12] in lines[0] and b["sha256"][:12] in lines[0] and "preprocess.whisper" in lines[0]
    assert not (tmp_path / "run" / "summary.json").exists()


def test_train_accepts_the_same_encoder_and_checks_padding(dataset_a, tmp_path):
    same = settings(tmp_path, dataset_a, {"allow_random": True, "seed": 0})
    check_whisper(same, resolve_job(same))  # no error
    unset = settings(tmp_path, dataset_a, None)  # nothing configured: the data's record stands
    check_whisper(unset, resolve_job(unset))
    padded = settings(tmp_path, dataset_a, {"allow_random": True, "seed": 0, "pad_short_to_30s": True})
    with pytest.raises(UserError, match="pad_short_to_30s"):
        check_whisper(padded, resolve_job(padded))
