"""The synthetic talking heads are real, playable media that dlib sees as one face, whose mouth
follows the speech, and the bad inputs are bad in exactly the advertised way."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2  # before decord (libpng bug), should anything import it
import numpy as np
import pytest
import soundfile as sf

from preprocessing.dlib_models import hog_detector, landmark_predictor
from preprocessing.synthetic.corpus import (
    BAD_KINDS,
    EDGE_KINDS,
    generate_corpus,
    render_clip,
    write_clip,
)
from tests.fixtures.ffprobe import ffprobe_streams


def _streams(path: Path) -> list[dict]:
    return ffprobe_streams(path, "codec_type,codec_name,width,height,r_frame_rate,avg_frame_rate")


def _codecs(path: Path) -> dict[str, str]:
    return {s["codec_type"]: s["codec_name"] for s in _streams(path)}


def _duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def _frames(path: Path) -> list[np.ndarray]:
    """Every decoded frame, [H, W, 3] uint8 BGR."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def _audio_16k(path: Path, tmp_path: Path) -> np.ndarray:
    """Audio track decoded back from the container -> [N] float32 mono 16 kHz."""
    wav = tmp_path / f"{path.stem}.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(path),
            "-vn",
            "-ac",
            "1",
            "-ar",
            "16000",
            str(wav),
        ],
        check=True,
    )
    audio, sr = sf.read(str(wav), dtype="float32")
    assert sr == 16000
    return audio


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


def _count_faces(frame_bgr: np.ndarray) -> int:
    return len(hog_detector()(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB), 0))


def test_corpus_is_playable_h264_with_aac(synthetic_corpus: list[Path]) -> None:
    assert len(synthetic_corpus) == 4
    for path in synthetic_corpus:
        assert path.suffix == ".mp4" and path.parent.name == _sidecar(path)["identity"]
        assert _codecs(path) == {"video": "h264", "audio": "aac"}
        assert len(_frames(path)) == _sidecar(path)["n_frames"]


def test_dlib_finds_exactly_one_face_matching_ground_truth(synthetic_corpus: list[Path]) -> None:
    """One HOG face in >= 95% of frames, inside the sidecar's box; on every 10th frame dlib's 68
    landmarks agree with the sidecar's (mean error < 5% of face height, mirrored clips included)."""
    for path in synthetic_corpus:
        side = _sidecar(path)
        boxes, truth = np.asarray(side["face_box"]), np.asarray(side["landmarks"])
        frames = _frames(path)
        one_face = hits = 0
        for t, frame in enumerate(frames):
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            faces = hog_detector()(rgb, 0)
            if len(faces) != 1:
                continue
            one_face += 1
            x0, y0, x1, y1 = boxes[t]
            hits += x0 <= faces[0].center().x <= x1 and y0 <= faces[0].center().y <= y1
            if t % 10 == 0:
                shape = landmark_predictor()(rgb, faces[0])
                found = np.array([[p.x, p.y] for p in shape.parts()])
                error = np.linalg.norm(found - truth[t], axis=1).mean() / (y1 - y0)
                assert error < 0.05, f"{path.name} frame {t}: landmark error {error:.3f}"
        assert one_face >= 0.95 * len(frames), f"{path.name}: one face in {one_face}/{len(frames)}"
        assert hits == one_face, f"{path.name}: detections outside the ground-truth face box"


def test_mouth_opening_follows_speech_envelope(
    synthetic_corpus: list[Path], tmp_path: Path
) -> None:
    for path in synthetic_corpus:
        side = _sidecar(path)
        mouth = np.asarray(side["mouth_open"])  # [T] in [0, 1]
        audio = _audio_16k(path, tmp_path)
        hop = 16000 / side["fps"]
        rms = np.array(
            [
                np.sqrt(np.mean(audio[int(t * hop) : int((t + 1) * hop)] ** 2) + 1e-12)
                for t in range(len(mouth))
            ]
        )
        r = np.corrcoef(mouth, rms)[0, 1]
        assert r > 0.5, f"{path.name}: r = {r:.2f}"
        assert mouth.min() == 0.0 and mouth.max() == 1.0  # closed in pauses, fully open somewhere


def test_open_mouth_is_darker_than_closed_mouth() -> None:
    clip = render_clip(3, seconds=2.0, size=(480, 360))
    lum = []
    for frame, lm in zip(clip.frames, clip.landmarks):  # mean luminance inside the inner lips
        mask = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(lm[60:68]).astype(np.int32)], 1)
        lum.append(frame.mean(axis=2)[mask > 0].mean() if mask.any() else np.nan)
    lum = np.asarray(lum)
    open_, shut = clip.mouth_open > 0.7, clip.mouth_open < 0.05
    assert open_.any() and shut.any()
    assert np.nanmean(lum[open_]) < np.nanmean(lum[shut]) - 20


def test_whole_face_needs_every_landmark_inside_and_room_below_the_chin() -> None:
    from preprocessing.synthetic.face import astronaut_template, whole_face

    tpl = astronaut_template()
    h, w = tpl.image.shape[:2]
    lm = np.asarray(tpl.landmarks)
    chin, jaw = float(lm[:, 1].max()), float(np.linalg.norm(lm[16] - lm[0]))
    assert tpl.whole and whole_face(lm, h, w)
    assert not whole_face(lm, int(chin), w)                    # the photo ends above the chin
    assert not whole_face(lm, int(chin + 0.05 * jaw), w)       # no room for the jaw to drop
    assert whole_face(lm, int(chin + 0.2 * jaw), w)
    assert not whole_face(lm - [lm[:, 0].min() + 1, 0], h, w)  # a jaw point left of the photo


def test_face_bank_marks_the_truncated_face_and_holds_out_whole_people_only() -> None:
    from preprocessing.synthetic.face import people
    from tests.fixtures.talking_shards import held_out_split

    bank = people()
    if len(bank) < 8:
        pytest.skip("face bank not fetched (run `make setup`)")
    assert {p.name: p.whole for p in bank if not p.whole} == {"tom_hanks": False}
    train, test = held_out_split(6, 2)
    held = {i % len(bank) for i in test}
    assert all(bank[i].whole for i in held) and len(held) == 2
    assert [bank[i].name for i in sorted(held)] == ["t1_4", "t1_5"]  # tests/learning names them
    assert held.isdisjoint(i % len(bank) for i in train)
    assert "tom_hanks" in {bank[i % len(bank)].name for i in train}  # trains, never measured


def test_render_is_deterministic_under_seed() -> None:
    a, b = render_clip(7), render_clip(7)
    for field in ("frames", "audio", "mouth_open", "face_box", "landmarks"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert (a.fps, a.identity, a.meta) == (b.fps, b.identity, b.meta)
    assert (
        a.frames.dtype == np.uint8
        and a.frames.shape[0] == a.mouth_open.shape[0] == a.landmarks.shape[0]
    )
    assert a.audio.size == pytest.approx(a.frames.shape[0] / a.fps * 16000, abs=1)


def test_write_clip_matches_the_clip_in_memory(tmp_path: Path) -> None:
    clip = render_clip(11, seconds=1.0, size=(480, 360), fps=25)
    out = write_clip(clip, tmp_path / "one" / "clip.mp4")
    assert _codecs(out) == {"video": "h264", "audio": "aac"}
    decoded = _frames(out)
    assert len(decoded) == len(clip.frames) == 25
    assert (
        np.abs(decoded[12][..., ::-1].astype(int) - clip.frames[12]).mean() < 6
    )  # H.264 error only
    side = _sidecar(out)
    assert (side["identity"], side["kind"]) == (clip.identity, "talking")
    np.testing.assert_allclose(side["landmarks"], clip.landmarks, atol=1e-3)
    np.testing.assert_allclose(side["mouth_open"], clip.mouth_open, atol=1e-3)


def test_corpus_has_several_identities_and_frame_rates(tmp_path: Path) -> None:
    paths = generate_corpus(tmp_path, 6, seed=2, seconds=(0.5, 0.8))
    sides = [_sidecar(p) for p in paths]
    assert len({s["identity"] for s in sides}) >= 2
    assert len({s["meta"]["voice"] for s in sides}) >= 2
    assert {_streams(p)[0]["r_frame_rate"] for p in paths} >= {"25/1", "30/1"}
    assert len({(s["width"], s["height"]) for s in sides}) >= 2


def test_bad_inputs_are_bad_in_the_advertised_way(bad_inputs: dict[str, Path]) -> None:
    assert set(bad_inputs) == set(BAD_KINDS + EDGE_KINDS)
    for kind, path in bad_inputs.items():
        assert path.exists() and _sidecar(path)["kind"] == kind
    assert bad_inputs["empty"].stat().st_size == 0
    probe = subprocess.run(
        ["ffprobe", "-v", "error", str(bad_inputs["random_bytes"])], capture_output=True
    )
    assert probe.returncode != 0
    truncated = _sidecar(bad_inputs["truncated"])
    assert bad_inputs["truncated"].stat().st_size == truncated["original_bytes"] // 2
    assert len(_frames(bad_inputs["truncated"])) < truncated["n_frames"]
    assert _codecs(bad_inputs["no_audio"]) == {"video": "h264"}
    assert _codecs(bad_inputs["audio_only"]) == {"audio": "aac"}
    assert _duration(bad_inputs["too_short"]) < 0.5
    no_face = _frames(bad_inputs["no_face"])
    assert not any(_count_faces(f) for f in no_face[::5])
    two = _frames(bad_inputs["two_faces"])
    assert all(_count_faces(f) == 2 for f in two[::5])
    tiny = np.asarray(_sidecar(bad_inputs["tiny_face"])["face_box"])
    assert (tiny[:, 2] - tiny[:, 0]).max() < 30 and (tiny[:, 3] - tiny[:, 1]).max() < 30


def test_edge_inputs_are_valid_but_awkward(bad_inputs: dict[str, Path], tmp_path: Path) -> None:
    silent = _audio_16k(bad_inputs["silent"], tmp_path)
    assert silent.size > 16000 and np.abs(silent).max() < 1e-3
    vfr = _streams(bad_inputs["vfr"])[0]
    assert vfr["r_frame_rate"] != vfr["avg_frame_rate"]
    huge = _streams(bad_inputs["huge"])[0]
    assert (huge["width"], huge["height"]) == (3840, 2160)
    assert _codecs(bad_inputs["huge"]) == {"video": "h264", "audio": "aac"}
