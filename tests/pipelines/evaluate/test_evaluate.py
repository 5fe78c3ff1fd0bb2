"""``iptalker evaluate`` end to end: a tiny trained model on real-face clips in curated shards,
the CLI in a subprocess, JSON + HTML + MLflow (sqlite) with lineage, a frozen eval set reused
by a second model, and one-line errors for a changed dataset or a bad model URI.

The mechanics are checked with answers known from the data, not from the model: the untouched
source is the ground truth in self-reconstruction (PSNR inf, SSIM 1, identity distance 0), its
lips are in sync with its own audio and not with another clip's, and its mouth follows its own
audio envelope. Whether a trained model beats the baselines is the training tests' claim.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.fixtures.talking import train_iptalker, write_talking_corpus

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
REQUIRED = ("self.psnr", "self.ssim", "self.mouth_psnr", "self.mouth_ssim", "self.lse_c", "self.lse_d",
            "self.identity_distance", "self.mouth_audio_corr", "self.silence_ratio", "cross.lse_c",
            "cross.lse_d", "cross.lse_offset", "cross.identity_distance", "cross.mouth_audio_corr",
            "cross.silence_ratio")
BASELINES = ("source", "copy_reference", "mean_reference")


def evaluate_cli(*args: str, db: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "orchestration.cli", "evaluate", *args,
           "--set", f"tracking.tracking_uri=sqlite:///{db}", "--set", "evaluate.max_frames=40"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=1200)


def bundle(out: Path, model, syncnet, cfg) -> Path:
    from iptalker_model.checkpoint import save_weights
    from pipelines.data.bundle import write_bundle

    out.mkdir(parents=True)
    save_weights(out / "g.pt", model, cfg)
    save_weights(out / "s.pt", syncnet, cfg)
    return write_bundle(out / "bundle", out / "g.pt", out / "s.pt", whisper={"stand_in": "log-mel rows"})


@pytest.fixture(scope="module")
def world(tmp_path_factory, talking_clips, talking_syncnet, talking_cfg):
    tmp = tmp_path_factory.mktemp("evaluate")
    data = write_talking_corpus(str(tmp / "data"), talking_clips, ["train", "train", "val", "val"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trained = train_iptalker(talking_clips[:2], talking_cfg, talking_syncnet, steps=40)
    finally:
        torch.set_num_threads(before)
    torch.manual_seed(5)
    from iptalker_model import IPTalker

    untrained = IPTalker(talking_cfg).eval()
    return {"tmp": tmp, "data": data, "db": tmp / "mlruns.db",
            "trained": bundle(tmp / "trained", trained, talking_syncnet, talking_cfg),
            "untrained": bundle(tmp / "untrained", untrained, talking_syncnet, talking_cfg)}


@pytest.fixture(scope="module")
def first(world):
    out = world["tmp"] / "eval-trained"
    proc = evaluate_cli("--model", str(world["trained"]), "--data", world["data"], "--out", str(out),
                        db=world["db"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc, json.loads((out / "report.json").read_text())


def test_report_holds_every_metric_beside_every_baseline(first):
    out, proc, rep = first
    m = rep["metrics"]
    for key in REQUIRED:
        assert key in m, key
        for b in BASELINES:
            assert f"baseline.{b}.{key}" in m, (b, key)
    header = next(line for line in proc.stdout.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "model", *BASELINES]
    assert any(line.startswith("cross.lse_c") for line in proc.stdout.splitlines())
    assert rep["clips"] == 2 and all(c["driver"] and c["driver"] != c["key"] for c in rep["per_clip"])


def test_known_answers_from_the_data(first):
    _, _, rep = first
    m = rep["metrics"]
    src = "baseline.source"
    assert m[f"{src}.self.psnr"] == "inf" and m[f"{src}.self.mouth_psnr"] == "inf"
    assert m[f"{src}.self.ssim"] == pytest.approx(1.0) and m[f"{src}.self.identity_distance"] == 0.0
    assert m[f"{src}.self.identity_frames"] > 0                       # dlib found the 64 px faces
    assert abs(m[f"{src}.self.lse_offset"]) <= 1                       # real lips, own audio: in sync
    assert m[f"{src}.self.lse_c"] > 1.5 * m[f"{src}.cross.lse_c"]       # another clip's audio: not
    assert m[f"{src}.self.mouth_audio_corr"] > 0.5 > m[f"{src}.cross.mouth_audio_corr"]
    for b in ("copy_reference", "mean_reference"):
        assert 5 < m[f"baseline.{b}.self.mouth_psnr"] < 60
    assert all(isinstance(m[k], float) for k in ("self.mouth_psnr", "cross.lse_d", "cross.identity_distance"))


def test_html_json_and_evalset_are_written(first):
    out, _, rep = first
    page = (out / "report.html").read_text()
    for img in ("metrics.png", *[f"frames-{c['key']}.png" for c in rep["per_clip"]]):
        assert img in page and (out / img).stat().st_size > 1000
    es = json.loads((out / "evalset.json").read_text())
    assert es["version"] == rep["evalset_version"]
    assert sorted(s["key"] for s in es["samples"]) == sorted(c["key"] for c in rep["per_clip"])
    assert all(len(sha) == 64 for sha in es["shards"].values())


def test_mlflow_run_has_metrics_params_and_input_lineage(first, world):
    import mlflow

    _, _, rep = first
    mlflow.set_tracking_uri(f"sqlite:///{world['db']}")
    run = mlflow.get_run(rep["mlflow_run_id"])
    assert run.data.metrics["self.mouth_psnr"] == pytest.approx(rep["metrics"]["self.mouth_psnr"])
    assert "baseline.copy_reference.cross.lse_c" in run.data.metrics
    assert "baseline.source.self.psnr" not in run.data.metrics          # inf stays in the JSON only
    assert run.data.tags["evalset.version"] == rep["evalset_version"]
    assert run.data.params["dataset.version"] == "talking-1"
    inputs = {i.tags[0].value if i.tags else "": i.dataset for i in run.inputs.dataset_inputs}
    contexts = {t.value for i in run.inputs.dataset_inputs for t in i.tags if t.key == "mlflow.data.context"}
    assert contexts == {"dataset", "evalset"}, inputs
    digests = {i.dataset.digest for i in run.inputs.dataset_inputs}
    assert rep["evalset_version"] in digests
    assert rep["dataset"]["dataset.sha256"][:36] in digests
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/report.html" in arts


def test_second_model_reuses_the_frozen_evalset(first, world):
    out1, _, rep1 = first
    out2 = world["tmp"] / "eval-untrained"
    proc = evaluate_cli("--model", str(world["untrained"]), "--data", world["data"], "--out", str(out2),
                        "--evalset", str(out1 / "evalset.json"), db=world["db"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep2 = json.loads((out2 / "report.json").read_text())
    assert rep2["evalset_version"] == rep1["evalset_version"]
    assert not (out2 / "evalset.json").exists()
    for key in ("baseline.copy_reference.self.mouth_psnr", "baseline.mean_reference.cross.lse_c",
                "baseline.source.cross.mouth_audio_corr"):
        assert rep2["metrics"][key] == rep1["metrics"][key]            # same clips, same references
    assert rep2["metrics"]["self.mouth_psnr"] != rep1["metrics"]["self.mouth_psnr"]
    with sqlite3.connect(world["db"]) as db:
        assert db.execute("select count(*) from runs").fetchone()[0] >= 2


def test_changed_dataset_or_bad_model_is_one_line_exit_2(first, world):
    out1, _, _ = first
    changed = world["tmp"] / "changed"
    shutil.copytree(world["data"], changed)
    for done in (changed / "shards").glob("*/*.done.json"):  # as if every shard had been rewritten
        record = json.loads(done.read_text())
        record["sha256"] = "0" * 64
        done.write_text(json.dumps(record))
    proc = evaluate_cli("--model", str(world["trained"]), "--data", str(changed), "--out",
                        str(world["tmp"] / "x"), "--evalset", str(out1 / "evalset.json"), db=world["db"])
    assert proc.returncode == 2 and "the clips changed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = evaluate_cli("--model", str(world["tmp"] / "nope"), "--data", world["data"], db=world["db"])
    assert proc.returncode == 2 and "no model at" in proc.stderr
