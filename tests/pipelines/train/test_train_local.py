"""One-process training (``--launcher local``): the iptalker stage resumes both engines (generator
and discriminator: weights, optimizer and LR schedule) and continues the step count; a kill at
any phase of a save leaves the previous complete checkpoint resumable and exportable; the bf16
path a GPU run takes also trains on CPU and exports fp32 weights."""

from __future__ import annotations

import pytest
import torch

from orchestration.launch import TrainingFailed, launch_training
from pipelines.train import checkpointing
from tests.fixtures.corpus import write_corpus

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
    assert checkpointing.latest_tag(tmp_path / "run") == "step_00000003"
    assert (root / "latest").read_text().strip() == "step_00000003"
    assert not (root / checkpointing.MODEL / "latest").exists()  # DeepSpeed's own pointer is not used
    states = torch.load(root / "discriminator" / "step_00000003" / "mp_rank_00_model_states.pt",
                        weights_only=True)
    assert states["step"] == 3 and states["mlflow_run_id"] == first["mlflow_run_id"]

    second = launch_training(job(data, tmp_path, 5, True), launcher="local")
    assert "resumed at step 3" in capfd.readouterr().err
    assert second["step"] == 5 and second["mlflow_run_id"] == first["mlflow_run_id"]
    assert checkpointing.latest_tag(tmp_path / "run") == "step_00000005"
    assert (root / checkpointing.DISCRIMINATOR / "step_00000005" / "config.json").is_file()


def test_a_kill_inside_a_save_leaves_the_previous_checkpoint_resumable(tmp_path, capfd, monkeypatch):
    """Deterministic fault injection (no race): the process exits at a named phase of the step-6
    save. Before the complete-marker, resume and export take step 3; once the marker is written,
    step 6 is complete (the pointer lags) and resume takes it."""
    from iptalker_model.checkpoint import load_iptalker
    from pipelines.train.export import export_checkpoint

    data = write_corpus(str(tmp_path / "ds"), videos=3, clips=1, frames=30)
    out = tmp_path / "run"
    launch_training(job(data, tmp_path, 3, False), launcher="local")
    capfd.readouterr()
    for phase in ("model_saved", "discriminator_saved", "config_written"):
        monkeypatch.setenv(checkpointing.FAULT_ENV, f"{phase}@6")
        with pytest.raises(TrainingFailed):
            launch_training(job(data, tmp_path, 6, True), launcher="local")
        captured = capfd.readouterr()
        assert f"fault injected at {phase} of step 6" in captured.out + captured.err
        assert "resumed at step 3" in captured.err
        assert checkpointing.latest_tag(out) == "step_00000003"
        assert (out / "checkpoints" / checkpointing.MODEL / "step_00000006").is_dir()  # the half save
        assert load_iptalker(export_checkpoint(out, tmp_path / f"{phase}.pt")).cfg.image_size == 32
    monkeypatch.setenv(checkpointing.FAULT_ENV, "marker_written@6")
    with pytest.raises(TrainingFailed):
        launch_training(job(data, tmp_path, 6, True), launcher="local")
    assert checkpointing.latest_tag(out) == "step_00000006"
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000003"
    monkeypatch.delenv(checkpointing.FAULT_ENV)
    capfd.readouterr()
    final = launch_training(job(data, tmp_path, 9, True), launcher="local")
    assert "resumed at step 6" in capfd.readouterr().err and final["step"] == 9
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000009"
    assert load_iptalker(export_checkpoint(out, tmp_path / "final.pt")).cfg.image_size == 32


def test_no_validation_samples_is_one_line_and_training_goes_on(tmp_path, capfd):
    data = write_corpus(str(tmp_path / "ds"), videos=2, clips=1, frames=30, val_videos=0)
    j = job(data, tmp_path, 2, False)
    j["train"].update(stage="syncnet", val_every=1)
    summary = launch_training(j, launcher="local")
    err = capfd.readouterr().err
    assert summary["status"] == "FINISHED" and summary["step"] == 2
    assert err.count("no validation samples") == 1 and "val shard set is empty" in err
    assert not any(k.startswith("val_") for k in summary["metrics"])


def test_bf16_path_trains_and_exports_fp32(tmp_path):
    """The precision a GPU run picks (bf16), exercised on CPU where DeepSpeed supports it too."""
    from iptalker_model.checkpoint import load_iptalker
    from pipelines.train.export import export_checkpoint

    data = write_corpus(str(tmp_path / "ds"), videos=3, clips=1, frames=30)
    j = job(data, tmp_path, 2, False)
    j["train"]["precision"] = "bf16"
    summary = launch_training(j, launcher="local")
    assert summary["step"] == 2 and torch.isfinite(torch.tensor(summary["metrics"]["total_loss"]))
    model = load_iptalker(export_checkpoint(tmp_path / "run", tmp_path / "g.pt"))
    assert next(model.parameters()).dtype == torch.float32


def test_deepspeed_config_fills_auto_values_and_picks_cpu_precision():
    from pipelines.train import engines
    from pipelines.train.config import TrainConfig

    assert engines.resolve_precision("auto") == ("bf16" if engines.use_cuda() else "fp32")
    cfg = engines.deepspeed_config(TrainConfig(zero_stage=2, batch_size=3, grad_accum=2, max_steps=50,
                                               warmup_steps=80, lr_floor=0.0, gradient_clipping=0.5), "bf16")
    assert cfg["train_micro_batch_size_per_gpu"] == 3 and cfg["gradient_accumulation_steps"] == 2
    assert cfg["gradient_clipping"] == 0.5 and cfg["scheduler"]["params"]["cos_min_ratio"] == 0.0
    assert cfg["bf16"]["enabled"] and not cfg["fp16"]["enabled"]
    assert cfg["data_types"]["buffer_dtype"] == "bf16"
    assert cfg["scheduler"]["params"] == {**cfg["scheduler"]["params"], "total_num_steps": 50,
                                          "warmup_num_steps": 49}
    assert cfg["zero_optimization"]["stage"] == 2


def test_optimisation_settings_are_checked_and_the_syncnet_stage_takes_its_own():
    from pipelines.train.config import TrainConfig

    for bad in ({"beta1": 1.0}, {"syncnet_beta1": -0.1}, {"lr_floor": 1.5}, {"gradient_clipping": -1.0}):
        with pytest.raises(ValueError, match=rf"train\.{next(iter(bad))}="):
            TrainConfig(**bad)
    t = TrainConfig(lr=0.002, beta1=0.5, max_steps=300, batch_size=2,
                    syncnet_lr=0.001, syncnet_beta1=0.9, syncnet_max_steps=1000, syncnet_batch_size=16)
    s = t.as_syncnet_stage()
    assert (s.stage, s.lr, s.beta1, s.max_steps, s.batch_size) == ("syncnet", 0.001, 0.9, 1000, 16)
    same = TrainConfig(lr=0.002, beta1=0.9).as_syncnet_stage()  # 0 = as the iptalker stage
    assert (same.lr, same.beta1, same.max_steps) == (0.002, 0.9, TrainConfig().max_steps)


def test_trains_from_shards_on_s3(s3_bucket, tmp_path):
    """Shards on S3 (loopback moto): the worker reads them through s3fs, lineage names the URI."""
    from mlflow.tracking import MlflowClient

    data = write_corpus(f"{s3_bucket}/ds", videos=3, clips=1, frames=30)
    j = job(data, tmp_path, 2, False)
    j["train"]["stage"] = "syncnet"
    summary = launch_training(j, launcher="local")
    run = MlflowClient(summary["tracking_uri"]).get_run(summary["mlflow_run_id"])
    assert summary["step"] == 2 and run.data.params["dataset.path"] == data
