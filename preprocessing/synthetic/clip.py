"""One synthetic talking-head clip: a seeded plan (identity look, framing, head motion, speech)
and the frames and ground truth rendered from it.

The plan is small (audio + per-frame numbers), frames are rendered lazily from it, so a 4K clip
can be streamed to the encoder without holding every frame in memory.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from preprocessing.encode import encode_mp4
from preprocessing.ibug68 import MIRROR_68
from preprocessing.synthetic.face import (
    FaceTemplate,
    grade_colours,
    mouth_palette,
    open_mouth,
    people,
    person_rig,
)
from preprocessing.synthetic.speech import SAMPLE_RATE, VOICES, mouth_opening, synthesize_speech

SIZES = ((480, 360), (640, 360), (640, 480), (854, 480))  # (W, H): modest, for test speed
FPS_CHOICES = (25.0, 30.0)


@dataclass(frozen=True)
class IdentityStyle:
    """What makes one pseudo-identity look and sound like itself across its videos."""

    index: int
    mirrored: bool
    stretch_x: float  # face width factor: a slightly different face shape
    grade: dict  # kwargs of grade_colours: hue_shift, saturation, gamma, gains
    voice: str
    person: int = 0  # index into face.people(): identities cycle through the real people

    @property
    def name(self) -> str:
        return f"id{self.index:02d}"

    @property
    def template(self) -> FaceTemplate:
        return people()[self.person]

    @staticmethod
    def for_index(index: int) -> IdentityStyle:
        """Deterministic per index (independent of any clip seed)."""
        rng = np.random.default_rng([0x1D5EED, index])
        grade = {
            "hue_shift": float(rng.uniform(-10, 10)),
            "saturation": float(rng.uniform(0.7, 1.3)),
            "gamma": float(rng.uniform(0.8, 1.25)),
            "gains": tuple(float(g) for g in rng.uniform(0.88, 1.08, size=3)),
        }
        return IdentityStyle(
            index=index,
            mirrored=bool(index % 2),
            stretch_x=float(rng.uniform(0.9, 1.1)),
            grade=grade,
            voice=VOICES[index % len(VOICES)],
            person=index % len(people()),
        )


@functools.lru_cache(maxsize=16)
def _graded_template(index: int) -> tuple[np.ndarray, np.ndarray]:
    """(template image [H, W, 3] uint8 RGB, mouth palette [2, 3]) graded for identity `index`."""
    style = IdentityStyle.for_index(index)
    image = grade_colours(style.template.image, **style.grade)
    image.setflags(write=False)
    return image, mouth_palette(style.grade)


@dataclass(frozen=True)
class ClipPlan:
    """Everything needed to render a clip; frames and ground truth are functions of it."""

    style: IdentityStyle
    size: tuple[int, int]  # (W, H), even
    fps: float
    audio: np.ndarray  # [N] float32 mono 16 kHz
    mouth_open: np.ndarray  # [T] float32 in [0, 1]
    affines: np.ndarray  # [T, 2, 3] float32: template pixels -> frame pixels
    meta: dict

    @property
    def n_frames(self) -> int:
        return int(self.mouth_open.shape[0])

    def landmarks(self) -> np.ndarray:
        """Ground-truth landmarks after mouth warp and motion -> [T, 68, 2] float32 frame pixels."""
        tpl, rig = self.style.template, person_rig(self.style.person)
        out = np.empty((self.n_frames, 68, 2), np.float32)
        for t in range(self.n_frames):
            lm = rig.move_points(tpl.landmarks, float(self.mouth_open[t]))
            out[t] = lm @ self.affines[t, :, :2].T + self.affines[t, :, 2]
        return out[:, MIRROR_68] if self.style.mirrored else out

    def frames(self) -> Iterator[np.ndarray]:
        """Yield [H, W, 3] uint8 RGB frames one at a time."""
        image, palette = _graded_template(self.style.index)
        tpl, rig = self.style.template, person_rig(self.style.person)
        for t in range(self.n_frames):
            opened, _ = open_mouth(image, tpl.landmarks, float(self.mouth_open[t]), rig, palette)
            yield cv2.warpAffine(
                opened,
                self.affines[t],
                self.size,
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )


def boxes_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """[T, 68, 2] -> [T, 4] float32 x0, y0, x1, y1: the landmark bounding box (brows to chin)."""
    return np.concatenate([landmarks.min(axis=1), landmarks.max(axis=1)], axis=1).astype(np.float32)


def _smooth_wobble(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Two slow sinusoids with random frequencies/phases -> [T] float in about [-1, 1]."""
    freqs = rng.uniform(0.15, 0.6, size=2)
    phases = rng.uniform(0, 2 * np.pi, size=2)
    return 0.65 * np.sin(2 * np.pi * freqs[0] * t + phases[0]) + 0.35 * np.sin(
        2 * np.pi * freqs[1] * t + phases[1]
    )


def head_affines(
    rng: np.random.Generator,
    n_frames: int,
    fps: float,
    size: tuple[int, int],
    style: IdentityStyle,
    face_frac: float,
    offset: tuple[float, float],
) -> np.ndarray:
    """Framing (face height = face_frac * H, centre offset as a fraction of W/H) plus small smooth
    head motion (rotation up to ~3 deg, shifts ~3% of the face, scale +-3%) -> [T, 2, 3] float32."""
    w, h = size
    box = style.template.box
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float32)
    base_scale = face_frac * h / float(box[3] - box[1])
    face_px = face_frac * h
    t = np.arange(n_frames) / fps
    angle = np.deg2rad(rng.uniform(1.5, 3.5)) * _smooth_wobble(rng, t)
    shift_x = 0.03 * face_px * _smooth_wobble(rng, t)
    shift_y = 0.03 * face_px * _smooth_wobble(rng, t)
    scale = base_scale * (1.0 + 0.03 * _smooth_wobble(rng, t))
    mirror = -1.0 if style.mirrored else 1.0
    out = np.empty((n_frames, 2, 3), np.float32)
    for i in range(n_frames):
        c, s = np.cos(angle[i]), np.sin(angle[i])
        lin = np.array([[c, -s], [s, c]]) @ np.diag([mirror * style.stretch_x * scale[i], scale[i]])
        dst = np.array([w / 2 + offset[0] * w + shift_x[i], h / 2 + offset[1] * h + shift_y[i]])
        out[i, :, :2] = lin
        out[i, :, 2] = dst - lin @ centre
    return out


def plan_clip(
    seed: int,
    *,
    seconds: float | None = None,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    identity: int | None = None,
    n_identities: int = 3,
    face_frac: float | None = None,
) -> ClipPlan:
    """Draw every choice of a clip from `seed` (defaults are always drawn, then overridden, so an
    override never shifts the other draws)."""
    rng = np.random.default_rng(seed)
    d_seconds = float(rng.uniform(3.0, 5.0))
    d_size = SIZES[int(rng.integers(len(SIZES)))]
    d_fps = FPS_CHOICES[int(rng.integers(len(FPS_CHOICES)))]
    d_identity = int(rng.integers(n_identities))
    d_face = float(rng.uniform(0.40, 0.52))
    offset = (float(rng.uniform(-0.06, 0.06)), float(rng.uniform(-0.04, 0.04)))
    seconds = d_seconds if seconds is None else float(seconds)
    size = d_size if size is None else (int(size[0]), int(size[1]))
    fps = d_fps if fps is None else float(fps)
    face_frac = d_face if face_frac is None else float(face_frac)
    style = IdentityStyle.for_index(d_identity if identity is None else int(identity))

    n_frames = max(1, int(round(seconds * fps)))
    speech = synthesize_speech(rng, n_frames / fps, voice=style.voice)
    mouth = mouth_opening(speech.audio, fps, n_frames)
    affines = head_affines(rng, n_frames, fps, size, style, face_frac, offset)
    meta = {
        "seed": int(seed),
        "voice": speech.voice,
        "speed": speech.speed,
        "text": list(speech.sentences),
        "size": list(size),
        "fps": fps,
        "face_frac": face_frac,
        "offset": list(offset),
        "mirrored": style.mirrored,
        "stretch_x": style.stretch_x,
        "grade": style.grade,
        "person": style.template.name,
    }
    return ClipPlan(
        style=style,
        size=size,
        fps=fps,
        audio=speech.audio,
        mouth_open=mouth,
        affines=affines,
        meta=meta,
    )


def silence_plan(plan: ClipPlan) -> ClipPlan:
    """Same clip with an all-zero audio track and a closed mouth."""
    return dataclasses.replace(
        plan,
        audio=np.zeros_like(plan.audio),
        mouth_open=np.zeros_like(plan.mouth_open),
        meta={**plan.meta, "text": []},
    )


def write_sidecar(path: Path, record: dict) -> Path:
    """JSON ground truth next to a media file (arrays as nested lists, 3 decimals)."""

    def encode(v: object) -> object:
        if isinstance(v, np.ndarray):
            return np.round(v.astype(np.float64), 3).tolist()
        raise TypeError(f"not JSON serialisable: {type(v)}")

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, default=encode))
    tmp.replace(path)
    return path


def write_plan(
    plan: ClipPlan,
    out_path: Path,
    *,
    kind: str = "talking",
    preset: str = "veryfast",
    with_audio: bool = True,
) -> Path:
    """Render `plan` streaming into out_path (mp4) + its sidecar; bounded memory."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    encode_mp4(
        plan.frames(),
        plan.fps,
        out_path,
        audio=plan.audio if with_audio else None,
        sample_rate=SAMPLE_RATE,
        preset=preset,
    )
    landmarks = plan.landmarks()
    write_sidecar(
        out_path.with_suffix(".json"),
        clip_record(
            kind=kind,
            identity=plan.style.name,
            fps=plan.fps,
            size=plan.size,
            has_audio=with_audio,
            mouth_open=plan.mouth_open,
            landmarks=landmarks,
            meta=plan.meta,
        ),
    )
    return out_path


def clip_record(
    *,
    kind: str,
    identity: str,
    fps: float,
    size: tuple[int, int],
    has_audio: bool,
    mouth_open: np.ndarray,
    landmarks: np.ndarray,
    meta: dict,
) -> dict:
    """The sidecar's content: what a test or the demo may check a decoded clip against.

    face_box is the landmark bounding box (brows to chin), not a detector's box.
    """
    return {
        "kind": kind,
        "identity": identity,
        "fps": fps,
        "n_frames": int(mouth_open.shape[0]),
        "width": size[0],
        "height": size[1],
        "sample_rate": SAMPLE_RATE,
        "has_audio": has_audio,
        "mouth_open": mouth_open,
        "face_box": boxes_from_landmarks(landmarks),
        "landmarks": landmarks,
        "meta": meta,
    }
