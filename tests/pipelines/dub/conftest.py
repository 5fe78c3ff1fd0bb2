"""Dub test fixtures: a tiny random-weight model bundle and real synthetic talking-head media.

The videos are the synthetic generator's (a real face photo whose mouth follows espeak-ng speech);
the new speech is another espeak-ng sentence in another voice, so the dub's audio is not the one
the video was made with.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from iptalker_model.checkpoint import save_weights
from iptalker_model.config import ModelConfig
from iptalker_model.iptalker import IPTalker
from iptalker_model.syncnet import SyncNet
from pipelines.data.bundle import resolve_bundle, write_bundle
from preprocessing.audio_features import encoder_identity
from preprocessing.encode import encode_mp4, write_wav
from preprocessing.media import FrameReader
from preprocessing.synthetic.clip import plan_clip, write_plan
from preprocessing.synthetic.speech import SAMPLE_RATE, espeak
from tests.fixtures.whisper import random_whisper


@pytest.fixture(scope="session")
def dub_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dub")


@pytest.fixture(scope="session")
def tiny_bundle(dub_dir):
    """A model bundle of ModelConfig.tiny() with seeded random weights (the pipeline, not learning)."""
    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    save_weights(dub_dir / "iptalker.pt", IPTalker(cfg), cfg)
    save_weights(dub_dir / "syncnet.pt", SyncNet(cfg), cfg)
    write_bundle(dub_dir / "bundle", dub_dir / "iptalker.pt", dub_dir / "syncnet.pt", whisper=encoder_identity(random_whisper()))
    return resolve_bundle(str(dub_dir / "bundle"))


def talking_head(path: Path, *, seconds: float, fps: float, size=(640, 360), seed: int = 3) -> Path:
    return write_plan(plan_clip(seed, seconds=seconds, size=size, fps=fps, identity=0, face_frac=0.5), path)


@pytest.fixture(scope="session")
def video_30fps(dub_dir) -> Path:
    """3 s, 30 fps, 640x360 talking head (its own speech muxed)."""
    return talking_head(dub_dir / "talk30.mp4", seconds=3.0, fps=30.0)


@pytest.fixture(scope="session")
def video_1s(dub_dir) -> Path:
    """1 s, 25 fps talking head: the length-mode and batch tests' input."""
    return talking_head(dub_dir / "talk1s.mp4", seconds=1.0, fps=25.0, seed=5)


@pytest.fixture(scope="session")
def new_speech(dub_dir) -> Path:
    """A different sentence in a different voice, ~2.3 s (shorter than video_30fps)."""
    audio = espeak("Bring two apples and a bottle of water.", "en-gb", 175)
    write_wav(dub_dir / "speech.wav", audio, SAMPLE_RATE)
    return dub_dir / "speech.wav"


@pytest.fixture(scope="session")
def long_speech(dub_dir) -> Path:
    """1.6 s of speech as an m4a (longer than video_1s: exercises the length modes)."""
    from preprocessing.encode import encode_m4a

    audio = espeak("Open the window, it is warm in here.", "en-us", 220)[: int(1.6 * SAMPLE_RATE)]
    audio = np.pad(audio, (0, int(1.6 * SAMPLE_RATE) - len(audio)))
    encode_m4a(audio, dub_dir / "long.m4a", SAMPLE_RATE)
    return dub_dir / "long.m4a"


def no_face_frames(n: int, size=(640, 360)) -> list[np.ndarray]:
    """A slow pan over scikit-image's coffee cup: no face anywhere."""
    w, h = size
    image = skdata.coffee()
    out = []
    for t in range(n):
        s = max(w / image.shape[1], h / image.shape[0]) * (1.1 + 0.002 * t)
        m = np.array([[s, 0, -3.0 * t], [0, s, (h - s * image.shape[0]) / 2]], np.float32)
        out.append(cv2.warpAffine(image, m, size, borderMode=cv2.BORDER_REFLECT))
    return out


@pytest.fixture(scope="session")
def video_with_gap(dub_dir) -> tuple[Path, tuple[int, int]]:
    """25 fps: 1 s of face, 0.8 s without a face (two cuts), 1 s of face. Returns (path, gap frames)."""
    plan = plan_clip(7, seconds=2.0, size=(640, 360), fps=25.0, identity=1, face_frac=0.5)
    face = list(plan.frames())
    frames = face[:25] + no_face_frames(20) + face[25:50]
    path = dub_dir / "gap.mp4"
    encode_mp4(frames, 25.0, path, audio=plan.audio, sample_rate=SAMPLE_RATE)
    return path, (25, 45)


@pytest.fixture(scope="session")
def video_no_face(dub_dir) -> Path:
    path = dub_dir / "noface.mp4"
    encode_mp4(no_face_frames(30), 25.0, path, audio=np.zeros(SAMPLE_RATE, np.float32), sample_rate=SAMPLE_RATE)
    return path


def read_all(path: Path, fps: float) -> np.ndarray:
    """Every frame of ``path`` on its fps grid: [N, H, W, 3] uint8 (test videos are short)."""
    reader = FrameReader(path, fps)
    return reader.get(np.arange(len(reader)))


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over the pixels where ``mask`` (broadcast over [..., H, W]) is True."""
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        diff = diff[..., mask, :]
    mse = float(diff.mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
