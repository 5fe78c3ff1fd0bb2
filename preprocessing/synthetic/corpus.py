"""Synthetic talking-head videos for tests and the demo, made offline from real material.

A real face photo (scikit-image's astronaut) speaks espeak-ng sentences: its mouth opens with the
speech envelope, the head moves a little, and per-identity framing/colour/mirroring/voice give
several pseudo-identities. Each mp4 (H.264 + AAC) has a JSON sidecar with the ground truth
(per-frame mouth opening, landmarks, face box). Everything is deterministic under a seed.
`write_bad_inputs` writes the broken and awkward files a robust job must survive.

Rendering pieces: face (photo, landmarks, mouth warp), speech (espeak,
envelope), clip (plan, motion, frames), bad (bad/edge inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from preprocessing.encode import encode_mp4
from preprocessing.synthetic.bad import BAD_KINDS, EDGE_KINDS, write_bad_inputs
from preprocessing.synthetic.clip import (
    FPS_CHOICES,
    boxes_from_landmarks,
    clip_record,
    plan_clip,
    write_plan,
    write_sidecar,
)
from preprocessing.synthetic.speech import SAMPLE_RATE

__all__ = [
    "BAD_KINDS",
    "EDGE_KINDS",
    "SyntheticClip",
    "generate_corpus",
    "render_clip",
    "write_bad_inputs",
    "write_clip",
]


@dataclass
class SyntheticClip:
    """One rendered clip with its ground truth, in memory."""

    frames: np.ndarray  # [T, H, W, 3] uint8 RGB
    audio: np.ndarray  # [N] float32 mono 16 kHz in [-1, 1]
    fps: float
    mouth_open: np.ndarray  # [T] float32 in [0, 1] (ground truth, 0 in pauses)
    face_box: np.ndarray  # [T, 4] float32 x0, y0, x1, y1 in frame pixels (landmark bounding box)
    landmarks: np.ndarray  # [T, 68, 2] float32 ground-truth landmarks after motion
    identity: str  # pseudo-identity id, e.g. "id03"
    meta: dict  # voice, text, variant params, seed


def render_clip(
    seed: int,
    *,
    seconds: float | None = None,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    identity: int | None = None,
) -> SyntheticClip:
    """Render a clip in memory; every argument left None is drawn from `seed`.

    size is (W, H), even; fps 25 or 30 when drawn; identity is an index (id00, id01, ...).
    """
    plan = plan_clip(seed, seconds=seconds, size=size, fps=fps, identity=identity)
    landmarks = plan.landmarks()
    return SyntheticClip(
        frames=np.stack(list(plan.frames())),
        audio=plan.audio,
        fps=plan.fps,
        mouth_open=plan.mouth_open,
        face_box=boxes_from_landmarks(landmarks),
        landmarks=landmarks,
        identity=plan.style.name,
        meta=plan.meta,
    )


def write_clip(clip: SyntheticClip, out_path: Path) -> Path:
    """Write clip as mp4 (H.264 + AAC) + sidecar out_path.with_suffix('.json'); returns out_path."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    encode_mp4(clip.frames, clip.fps, out_path, audio=clip.audio, sample_rate=SAMPLE_RATE)
    h, w = clip.frames.shape[1:3]
    write_sidecar(
        out_path.with_suffix(".json"),
        clip_record(
            kind="talking",
            identity=clip.identity,
            fps=clip.fps,
            size=(w, h),
            has_audio=True,
            mouth_open=clip.mouth_open,
            landmarks=clip.landmarks,
            meta=clip.meta,
        ),
    )
    return out_path


def generate_corpus(
    out_dir: Path,
    n_videos: int,
    seed: int = 0,
    *,
    n_identities: int = 3,
    seconds: tuple[float, float] = (3.0, 5.0),
    size: tuple[int, int] | None = None,
) -> list[Path]:
    """Write out_dir/<identity>/<video-id>.mp4 (+ .json) and return the mp4 paths.

    Video i belongs to identity i % n_identities (folders give curation its identity ids); fps
    alternates 25/30 between rounds of identities so any corpus larger than n_identities has both;
    size=None draws a modest resolution per video. Frames are streamed to the encoder.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    paths: list[Path] = []
    for i in range(n_videos):
        video_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        identity = i % n_identities
        fps = FPS_CHOICES[(i // n_identities) % len(FPS_CHOICES)]
        secs = float(rng.uniform(*seconds))
        plan = plan_clip(
            video_seed,
            seconds=secs,
            size=size,
            fps=fps,
            identity=identity,
            n_identities=n_identities,
        )
        out = out_dir / plan.style.name / f"{plan.style.name}_v{i:04d}.mp4"
        paths.append(write_plan(plan, out))
    return paths
