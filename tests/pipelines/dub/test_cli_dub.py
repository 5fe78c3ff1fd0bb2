"""``iptalker dub`` as a user runs it: one-line errors with exit 2, the batch manifest, --face."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from orchestration.cli import main
from pipelines.data.bundle import write_bundle
from preprocessing.audio_features import encoder_identity
from preprocessing.synthetic.bad import write_bad_inputs
from tests.fixtures.whisper import ALLOW_RANDOM_SET, random_whisper
from tests.pipelines.dub.conftest import psnr, read_all


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


def test_missing_inputs_and_unknown_model_are_one_line_exit_2(tmp_path, capsys, tiny_bundle, video_1s, new_speech):
    model = str(tiny_bundle.root)
    cases = [
        (["--video", str(tmp_path / "nope.mp4"), "--audio", str(new_speech)], "no such file"),
        (["--video", str(video_1s), "--audio", str(tmp_path / "nope.wav")], "no such file"),
    ]
    for args, message in cases:
        assert main(["dub", "--set", ALLOW_RANDOM_SET, "--model", model, "--out", str(tmp_path / "o.mp4"), *args]) == 2
        assert message in _error_line(capsys)
    assert main(["dub", "--set", ALLOW_RANDOM_SET, "--model", str(tmp_path / "no-model"), "--video", str(video_1s), "--audio",
                 str(new_speech), "--out", str(tmp_path / "o.mp4")]) == 2
    assert "no model at" in _error_line(capsys)
    assert main(["dub", "--set", ALLOW_RANDOM_SET, "--model", model, "--video", str(video_1s), "--audio", str(new_speech)]) == 2
    assert "--batch" in _error_line(capsys)
    assert main(["dub", "--set", ALLOW_RANDOM_SET, "--model", model, "--video", str(video_1s), "--audio", str(new_speech),
                 "--out", str(tmp_path / "o.mp4"), "--face", "left"]) == 2
    assert "x,y" in _error_line(capsys)


def test_unreadable_media_is_one_line_exit_2(tmp_path, capsys, tiny_bundle, video_1s, new_speech):
    bad = write_bad_inputs(tmp_path / "bad", kinds=("random_bytes", "audio_only"))
    out = str(tmp_path / "o.mp4")
    assert main(["dub", "--set", ALLOW_RANDOM_SET, "--model", str(tiny_bundle.root), "--video", str(bad["random_bytes"]), "--audio",
                 str(new_speech), "--out", out]) == 2
    assert "not a readable media file" in _error_line(capsys)
    assert main(["dub", "--set", ALLOW_RANDOM_SET, "--model", str(tiny_bundle.root), "--video", str(bad["audio_only"]), "--audio",
                 str(new_speech), "--out", out]) == 2
    assert "no video stream" in _error_line(capsys)
    assert main(["dub", "--set", ALLOW_RANDOM_SET, "--model", str(tiny_bundle.root), "--video", str(video_1s), "--audio",
                 str(bad["random_bytes"]), "--out", out]) == 2
    assert "not a readable media file" in _error_line(capsys)


def test_model_of_another_whisper_encoder_is_refused(tmp_path, capsys, tiny_bundle, video_1s, new_speech):
    other = write_bundle(tmp_path / "other", tiny_bundle.iptalker, tiny_bundle.syncnet,
                         whisper=encoder_identity(random_whisper(seed=1)))
    assert main(["dub", "--set", ALLOW_RANDOM_SET, "--model", str(other), "--video", str(video_1s), "--audio", str(new_speech),
                 "--out", str(tmp_path / "o.mp4")]) == 2
    line = _error_line(capsys)
    assert "was encoded with Whisper encoder" in line and "(seed 1)" in line and "(seed 0)" in line


@pytest.mark.slow
def test_batch_survives_a_bad_row_and_resumes(tmp_path, capsys, tiny_bundle, video_1s, new_speech, long_speech):
    rows = [(video_1s, long_speech, tmp_path / "a.mp4"), (video_1s, tmp_path / "missing.wav", tmp_path / "b.mp4"),
            (video_1s, new_speech, tmp_path / "c.mp4")]
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "audio", "out"])
        w.writerows([[str(c) for c in r] for r in rows])
    args = ["dub", "--set", ALLOW_RANDOM_SET, "--model", str(tiny_bundle.root), "--batch", str(manifest), "--no-progress",
            "--set", "dub.report=false"]
    assert main(args) == 1  # a failed row: exit 1, the others done
    status = {r[2].name: json.loads((tmp_path / f"{r[2].name}.status.json").read_text()) for r in rows}
    assert status["a.mp4"]["status"] == "done" and status["c.mp4"]["status"] == "done"
    assert status["b.mp4"]["status"] == "failed" and "no such file" in status["b.mp4"]["reason"]
    assert (tmp_path / "a.mp4").is_file() and (tmp_path / "c.mp4").is_file() and not (tmp_path / "b.mp4").exists()
    assert not list(tmp_path.glob(".iptalker-dub-*"))  # every run's temp folder is gone
    first = (tmp_path / "a.mp4").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 1  # rerun: the done rows are skipped, the bad row is tried again
    assert "2 already done, 1 failed" in capsys.readouterr().out
    assert (tmp_path / "a.mp4").stat().st_mtime_ns == first


@pytest.mark.slow
def test_face_picks_the_face_nearest_the_point(tmp_path, capsys, tiny_bundle, new_speech):
    video = write_bad_inputs(tmp_path / "in", kinds=("two_faces",))["two_faces"]  # two people, 640x360
    out = tmp_path / "right.mp4"
    assert main(["dub", "--set", ALLOW_RANDOM_SET, "--model", str(tiny_bundle.root), "--video", str(video), "--audio", str(new_speech),
                 "--out", str(out), "--face", "480,180", "--set", "dub.report=false"]) == 0
    src = read_all(video, 25.0)
    dub = read_all(out, 25.0)
    n = min(len(src), len(dub))
    left = np.zeros(src.shape[1:3], bool)
    left[:, :320] = True
    assert psnr(dub[:n], src[:n], left) > 40.0  # the other person is untouched
    assert psnr(dub[:n], src[:n], ~left) < 35.0  # the picked one is dubbed
