"""Broken and awkward inputs for robustness tests: every file a curation or dubbing job may meet
in the wild and must reject (BAD_KINDS) or process without crashing (EDGE_KINDS).

Each file is out_dir/<kind>.mp4 with a sidecar <kind>.json whose "kind" names what it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

from preprocessing.encode import encode_m4a, encode_mp4
from preprocessing.synthetic.clip import (
    ClipPlan,
    boxes_from_landmarks,
    plan_clip,
    silence_plan,
    write_plan,
    write_sidecar,
)
from preprocessing.synthetic.speech import SAMPLE_RATE, mouth_opening, synthesize_speech

BAD_KINDS = (
    "empty",
    "random_bytes",
    "truncated",
    "no_audio",
    "audio_only",
    "no_face",
    "too_short",
    "two_faces",
    "tiny_face",
)
EDGE_KINDS = ("silent", "vfr", "huge")

# Variable frame rate: ~30 fps with jitter for the first second, ~15 fps after (monotone).
VFR_SETPTS = "(N+0.35*sin(1.7*N)+if(gt(N,30),N-30,0))/30/TB"


def write_bad_inputs(
    out_dir: Path, seed: int = 0, kinds: Iterable[str] = BAD_KINDS + EDGE_KINDS
) -> dict[str, Path]:
    """Write one file per kind into out_dir -> {kind: path}. Deterministic under seed; each kind
    uses its own sub-seed, so the files do not depend on which other kinds are asked for."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_kinds = BAD_KINDS + EDGE_KINDS
    written: dict[str, Path] = {}
    for kind in kinds:
        if kind not in _WRITERS:
            raise ValueError(f"unknown bad-input kind {kind!r}; choose from {all_kinds}")
        sub_seed = int(np.random.SeedSequence([seed, all_kinds.index(kind)]).generate_state(1)[0])
        written[kind] = _WRITERS[kind](out_dir / f"{kind}.mp4", sub_seed)
    return written


def _note(path: Path, kind: str, **info: object) -> Path:
    write_sidecar(path.with_suffix(".json"), {"kind": kind, **info})
    return path


def _empty(path: Path, seed: int) -> Path:
    path.write_bytes(b"")
    return _note(path, "empty")


def _random_bytes(path: Path, seed: int) -> Path:
    # A zero first byte keeps probers from taking the noise for an MPEG audio stream.
    payload = b"\x00" + np.random.default_rng(seed).bytes(64 * 1024)
    path.write_bytes(payload)
    return _note(path, "random_bytes", bytes=len(payload))


def _truncated(path: Path, seed: int) -> Path:
    """A faststart mp4 cut in half: it probes fine (the index is at the front) but decoding runs
    out of data halfway, like an interrupted download or copy."""
    plan = plan_clip(seed, seconds=1.5, size=(480, 360))
    write_plan(plan, path, kind="truncated")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return _note(
        path, "truncated", original_bytes=len(data), bytes=len(data) // 2, n_frames=plan.n_frames
    )


def _no_audio(path: Path, seed: int) -> Path:
    return write_plan(
        plan_clip(seed, seconds=1.5, size=(480, 360)), path, kind="no_audio", with_audio=False
    )


def _audio_only(path: Path, seed: int) -> Path:
    speech = synthesize_speech(np.random.default_rng(seed), 2.0)
    encode_m4a(speech.audio, path, sample_rate=SAMPLE_RATE)
    return _note(path, "audio_only", seconds=2.0, voice=speech.voice)


def _too_short(path: Path, seed: int) -> Path:
    return write_plan(plan_clip(seed, seconds=0.3, size=(480, 360)), path, kind="too_short")


def _tiny_face(path: Path, seed: int) -> Path:
    """Face about 24 px tall in a 640x480 frame: below any sensible minimum face size."""
    return write_plan(
        plan_clip(seed, seconds=1.5, size=(640, 480), face_frac=0.05), path, kind="tiny_face"
    )


def _silent(path: Path, seed: int) -> Path:
    return write_plan(
        silence_plan(plan_clip(seed, seconds=1.5, size=(480, 360))), path, kind="silent"
    )


def _huge(path: Path, seed: int) -> Path:
    """3840x2160, 1 s: streamed to the encoder so memory stays at a few frames."""
    return write_plan(
        plan_clip(seed, seconds=1.0, size=(3840, 2160), fps=25),
        path,
        kind="huge",
        preset="ultrafast",
    )


def _vfr(path: Path, seed: int) -> Path:
    plan = plan_clip(seed, seconds=2.0, size=(480, 360), fps=30)
    n = np.arange(plan.n_frames)
    pts = (n + 0.35 * np.sin(1.7 * n) + np.where(n > 30, n - 30, 0)) / 30.0  # mirrors VFR_SETPTS
    duration = float(pts[-1] + 1 / 15)
    audio = np.pad(plan.audio, (0, max(0, int(duration * SAMPLE_RATE) - plan.audio.size)))
    encode_mp4(
        plan.frames(), plan.fps, path, audio=audio, sample_rate=SAMPLE_RATE, setpts=VFR_SETPTS
    )
    landmarks = plan.landmarks()
    return _note(
        path,
        "vfr",
        identity=plan.style.name,
        n_frames=plan.n_frames,
        pts=pts,
        face_box=boxes_from_landmarks(landmarks),
        mouth_open=plan.mouth_open,
        meta=plan.meta,
    )


def _two_faces(path: Path, seed: int) -> Path:
    """Two astronauts side by side (two identities, each in its own 320x360 half)."""
    rng = np.random.default_rng(seed)
    halves = [_centred_plan(int(rng.integers(2**31)), identity=i) for i in (0, 1)]
    frames = (np.concatenate(pair, axis=1) for pair in zip(halves[0].frames(), halves[1].frames()))
    encode_mp4(frames, halves[0].fps, path, audio=halves[0].audio, sample_rate=SAMPLE_RATE)
    boxes = [boxes_from_landmarks(h.landmarks()) for h in halves]
    boxes[1][:, [0, 2]] += halves[0].size[0]  # right half
    return _note(
        path,
        "two_faces",
        n_faces=2,
        fps=halves[0].fps,
        face_boxes=np.stack(boxes, axis=1),
        identities=[h.style.name for h in halves],
    )


def _centred_plan(seed: int, identity: int) -> ClipPlan:
    """A 320x360 clip whose face stays well inside its frame (for side-by-side composition)."""
    plan = plan_clip(seed, seconds=1.5, size=(320, 360), fps=25, identity=identity, face_frac=0.42)
    affines = plan.affines.copy()
    box = boxes_from_landmarks(plan.landmarks())
    centre = (box[:, :2] + box[:, 2:]) / 2
    affines[:, :, 2] += np.array([160.0, 170.0], np.float32) - centre  # undo the drawn offset
    return dataclasses.replace(plan, affines=affines)


def _no_face(path: Path, seed: int) -> Path:
    """A talking clip without a face: speech over a slow pan across scikit-image's coffee cup."""
    rng = np.random.default_rng(seed)
    fps, n_frames, size = 25.0, 50, (640, 360)
    speech = synthesize_speech(rng, n_frames / fps)
    encode_mp4(
        _pan_frames(skdata.coffee(), size, n_frames),
        fps,
        path,
        audio=speech.audio,
        sample_rate=SAMPLE_RATE,
    )
    return _note(
        path,
        "no_face",
        fps=fps,
        n_frames=n_frames,
        n_faces=0,
        mouth_open=mouth_opening(speech.audio, fps, n_frames),
        voice=speech.voice,
    )


def _pan_frames(image: np.ndarray, size: tuple[int, int], n_frames: int) -> Iterator[np.ndarray]:
    """Slow zoom-and-pan over `image` [H, W, 3] uint8 RGB -> [h, w, 3] frames covering `size`."""
    w, h = size
    ih, iw = image.shape[:2]
    for t in range(n_frames):
        s = max(w / iw, h / ih) * (1.1 + 0.1 * t / max(n_frames - 1, 1))
        dx = (w - s * iw) / 2 + 0.05 * w * np.sin(t / 15)
        affine = np.array([[s, 0, dx], [0, s, (h - s * ih) / 2]], np.float32)
        yield cv2.warpAffine(
            image, affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )


_WRITERS: dict[str, Callable[[Path, int], Path]] = {
    "empty": _empty,
    "random_bytes": _random_bytes,
    "truncated": _truncated,
    "no_audio": _no_audio,
    "audio_only": _audio_only,
    "no_face": _no_face,
    "too_short": _too_short,
    "two_faces": _two_faces,
    "tiny_face": _tiny_face,
    "silent": _silent,
    "vfr": _vfr,
    "huge": _huge,
}
