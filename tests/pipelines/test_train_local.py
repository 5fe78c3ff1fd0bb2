"""One-process training (``--launcher local``): the iptalker stage resumes both engines (generator
and discriminator: weights, optimizer and LR schedule) and continues the step count."""

from __future__ import annotations

import pytest
import torch

from orchestration.launch import launch_training
from pipelines import checkpointing
from tests.pipelines.test_loader import write_corpus

pytestmark = pytest.mark.slow


def job(data: str, tmp_path, max_steps: int, resume: bool) -> dict:
    return {"train": {"data": data, "stage": "iptalker", "out_dir": str(tmp_path / "run"),
                      "max_steps": max_steps, "log_every": 1, "val_every": 100, "save_every": 3,
                      "num_workers": 0, "resume": resume, "warmup_steps": 1},
            "model": {"image_size": 32}, "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'm.db'}"}}


def test_iptalker_stage_resumes_generator_and_discriminator(tmp_path, capfd):
    data = write_corpus(str(tmp_path / "ds"), videos=3, clips=1, frames=30)
    first = launch_training(job(data, tmp_path, 3, False), launcher="local")
    root = checkpointing.checkpoint_root(tmp_path / "run")
    for name in (checkpointing.MODEL, checkpointing.DISCRIMINATOR):
        assert checkpointing.latest_tag(root / name) == "step_00000003"
    states = torch.load(root / "discriminator" / "step_00000003" / "mp_rank_00_model_states.pt",
                        weights_only=True)
    assert states["step"] == 3 and states["mlflow_run_id"] == first["mlflow_run_id"]

    second = launch_training(job(data, tmp_path, 5, True), launcher="local")
    assert "resumed at step 3" in capfd.readouterr().err
    assert second["step"] == 5 and second["mlflow_run_id"] == first["mlflow_run_id"]
    assert checkpointing.latest_tag(root / checkpointing.DISCRIMINATOR) == "step_00000005"
