"""`iptalker demo` (what `make demo` runs): the whole loop for real, then a rerun that resumes.

One run of the demo with the CPU recipe: synth -> curate -> SyncNet -> IPTalker -> bundle ->
evaluate -> register -> promote -> dub. The test reads what a user would look at: the summary,
the MLflow store (runs, a registered model whose champion beats the baselines), the dubbed mp4
(plays, has audio) and whether its mouth follows the new sentence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.ffprobe import ffprobe_streams

IPTALKER = str(Path(sys.executable).with_name("iptalker"))
RECIPE = Path(__file__).resolve().parents[2] / "configs" / "recipes" / "cpu-demo.yaml"


def run_demo(work: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([IPTALKER, "demo", "--workdir", str(work), "--config", str(RECIPE),
                           "--set", f"ray.temp_dir=/tmp/rt-d{os.getpid()}", *extra],
                          capture_output=True, text=True, timeout=2400, cwd=work.parent, env=env)


def stage_outputs(work: Path, stage: str) -> dict:
    """What a finished stage recorded (``stages/NN-<stage>.json``)."""
    (record,) = (work / "stages").glob(f"*-{stage}.json")
    return json.loads(record.read_text())["outputs"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo") / "demo-out"
    r = run_demo(work)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return work, r.stdout


def test_demo_runs_the_whole_loop_and_prints_the_summary(demo):
    work, stdout = demo
    assert "Demo finished." in stdout
    for what in ("dataset:", "mlflow ui --backend-store-uri", "champion: models:/iptalker@champion",
                 "metrics against the baselines", "dubbed video:"):
        assert what in stdout, what
    assert {p.parent.name for p in (work / "dataset" / "shards").glob("*/*.done.json")} == {"train", "val"}
    assert (work / "dataset" / "report" / "index.html").is_file()
    records = sorted(p.name for p in (work / "stages").glob("*.json"))
    assert len(records) == 10 and records[-1].endswith("-dub.json")


def test_registry_holds_a_champion_that_beats_the_baselines(demo):
    from mlflow.tracking import MlflowClient

    work, _ = demo
    client = MlflowClient(f"sqlite:///{work / 'mlruns.db'}")
    assert len(client.search_experiments()) >= 1
    champion = client.get_model_version_by_alias("iptalker", "champion")
    evaluation = stage_outputs(work, "evaluate")["metrics"]
    for metric in ("self.mouth_psnr",):  # reconstruction: higher is better than every lazy answer
        for base in ("copy_reference", "mean_reference"):
            assert evaluation[metric] > evaluation[f"baseline.{base}.{metric}"], (metric, base, evaluation)
    assert champion.version
    # register tagged the evaluate stage's metrics, so the gate did not evaluate the model again
    assert champion.tags["evaluation.run_id"] == stage_outputs(work, "evaluate")["run_id"]
    assert not (work / "eval-gate").exists()


def test_syncnet_expert_ends_clearly_below_chance_loss(demo):
    """The demo's SyncNet learnt in-sync vs shifted pairs: chance is BCE ln 2 = 0.69, accuracy 0.5."""
    work, _ = demo
    final = stage_outputs(work, "train-syncnet")["metrics"]
    assert final["bce_loss"] < 0.5 and final["accuracy"] > 0.75, final


def test_dubbed_video_plays_with_audio_at_the_source_size_and_rate(demo):
    from preprocessing.media import probe

    work, _ = demo
    dub = stage_outputs(work, "dub")
    kinds = {s["codec_type"] for s in ffprobe_streams(dub["video"], "codec_type")}
    assert kinds == {"video", "audio"}
    out, src = probe(dub["video"]), probe(dub["source"])
    assert (out.width, out.height) == (src.width, src.height) and abs(out.fps - src.fps) < 0.01
    assert dub["face_coverage"] > 0.5 and Path(dub["report"]).is_file()


def test_dubbed_mouth_follows_the_new_sentence(demo):
    from pipelines.metrics.mouth import audio_envelope, landmarks_of, mouth_opening
    from preprocessing.media import iter_frames, load_audio, probe

    work, _ = demo
    dub = stage_outputs(work, "dub")
    fps = probe(dub["video"]).fps
    frames = np.concatenate([f for _, f in iter_frames(dub["video"], fps=fps)])
    source = np.concatenate([f for _, f in iter_frames(dub["source"], fps=fps)])
    env = audio_envelope(load_audio(dub["audio"]), fps, len(frames))
    n = min(len(frames), len(source))  # audio longer than the source: compare where both exist
    opening, source_opening = mouth_opening(landmarks_of(frames[:n])), mouth_opening(landmarks_of(source[:n]))
    ok = np.isfinite(opening) & np.isfinite(source_opening)
    assert ok.mean() > 0.8  # the face is found in the output as in the source
    r_out = np.corrcoef(opening[ok], env[:n][ok])[0, 1]
    r_src = np.corrcoef(source_opening[ok], env[:n][ok])[0, 1]
    assert r_out >= 0.5 and r_out > r_src + 0.3, (r_out, r_src)


def test_rerun_skips_every_finished_stage(demo):
    work, _ = demo
    r = run_demo(work)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count(": skipped, done at") == 10
