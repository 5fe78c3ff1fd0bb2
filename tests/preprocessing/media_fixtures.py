"""ffmpeg-made media for the preprocessing tests (real files, real codecs; no mocked arrays).

The talking-head corpus comes from `preprocessing.synthetic`; these cover the container edge
cases (rotation, VFR, audio-only, truncation) and a real face photo (skimage astronaut).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
from skimage import data


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


def make_testsrc_clip(out: Path, *, size: str = "320x240", rate: float = 30, seconds: float = 2.0,
                 audio: bool = True, extra: tuple[str, ...] = ()) -> Path:
    """testsrc video + 440 Hz sine audio."""
    args = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    args += [*extra, "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    args += ["-c:a", "aac"] if audio else ["-an"]
    ffmpeg(*args, str(out))
    return out


def astronaut_frame(width: int = 1280, height: int = 720, face_height: int = 300,
                    n_faces: int = 1) -> np.ndarray:
    """[H, W, 3] uint8 RGB frame with `n_faces` copies of the astronaut photo's head."""
    head = data.astronaut()[0:260, 120:300]  # [260, 180, 3] the face with hair and chin
    scale = face_height / head.shape[0]
    head = cv2.resize(head, (int(head.shape[1] * scale), face_height), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 90, np.uint8)
    frame[:] = np.linspace(60, 160, width, dtype=np.uint8)[None, :, None]
    h, w = head.shape[:2]
    for i in range(n_faces):
        x0 = (width * (2 * i + 1)) // (2 * n_faces) - w // 2
        y0 = (height - h) // 2
        frame[y0:y0 + h, x0:x0 + w] = head
    return frame


def still_clip(out: Path, frame_rgb: np.ndarray, *, seconds: float = 2.0, rate: float = 25,
               audio: bool = True, motion_px: int = 0) -> Path:
    """Loop a still frame into an mp4 (optionally panning `motion_px` px/s so it is not static)."""
    png = out.with_suffix(".png")
    cv2.imwrite(str(png), cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
    h, w = frame_rgb.shape[:2]
    args = ["-loop", "1", "-framerate", str(rate), "-t", str(seconds), "-i", str(png)]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=16000:duration={seconds}"]
    vf = f"crop={w - 2 * motion_px}:{h}:{motion_px}+{motion_px}*sin(t*3):0,scale={w}:{h}" if motion_px else "null"
    args += ["-vf", vf, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18"]
    args += ["-c:a", "aac", "-shortest"] if audio else ["-an"]
    ffmpeg(*args, str(out))
    return out
