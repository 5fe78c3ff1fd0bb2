"""Offline speech for synthetic talking heads: espeak-ng sentences with pauses, and the mouth
opening envelope derived from that speech.

espeak-ng is deterministic for a given (text, voice, speed), so a seeded choice of those gives
reproducible audio without any downloaded model.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000

VOICES = ("en", "en-us", "en-gb", "en+f3", "en+m3", "en-us+f2", "en-gb-scotland", "en+f4")

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call me back when you get a moment.",
    "We will meet at the station around nine.",
    "Open the window, it is warm in here.",
    "Every morning she walks along the river.",
    "My favourite colour has always been blue.",
    "Can you hear the music from the garden?",
    "The results look good, but we need more data.",
    "Bring two apples and a bottle of water.",
    "Thank you very much for listening today.",
    "Hello, my name is Alex, nice to meet you.",
    "A small boat sailed across the open bay.",
)


@dataclass(frozen=True)
class SpeechTrack:
    """Seconds of speech at 16 kHz with the choices that made it (for the sidecar)."""

    audio: np.ndarray  # [N] float32 mono in [-1, 1], 16 kHz
    voice: str
    speed: int  # espeak words per minute
    sentences: tuple[str, ...]


@functools.cache
def _espeak_cached(text: str, voice: str, speed: int) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="iptalker-espeak-") as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        g = np.gcd(int(sr), SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, int(sr) // g).astype(np.float32)
    audio.setflags(write=False)  # shared by the cache
    return audio


def espeak(text: str, voice: str = "en", speed: int = 160) -> np.ndarray:
    """`text` -> [N] float32 mono 16 kHz (cached per process: espeak is deterministic)."""
    return _espeak_cached(text, voice, int(speed)).copy()


def synthesize_speech(
    rng: np.random.Generator, seconds: float, voice: str | None = None
) -> SpeechTrack:
    """Sentences separated by 0.25-0.7 s pauses, trimmed/padded to exactly `seconds`.

    Starts with a short silence so the first frames show a closed mouth, and fades out at the cut.
    """
    n_total = int(round(seconds * SAMPLE_RATE))
    voice = voice or str(rng.choice(VOICES))
    speed = int(rng.integers(140, 190))
    order = rng.permutation(len(SENTENCES))
    parts: list[np.ndarray] = [np.zeros(int(rng.uniform(0.1, 0.3) * SAMPLE_RATE), np.float32)]
    used: list[str] = []
    length = parts[0].size
    for idx in order:
        if length >= n_total:
            break
        text = SENTENCES[int(idx)]
        speech = espeak(text, voice, speed)
        pause = np.zeros(int(rng.uniform(0.25, 0.7) * SAMPLE_RATE), np.float32)
        parts += [speech, pause]
        used.append(text)
        length += speech.size + pause.size
    audio = np.concatenate(parts)[:n_total]
    audio = np.pad(audio, (0, n_total - audio.size))
    fade = min(n_total, int(0.02 * SAMPLE_RATE))
    audio[n_total - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.abs(audio).max()) or 1.0
    audio = (audio * (0.7 / peak)).astype(np.float32)
    return SpeechTrack(audio=audio, voice=voice, speed=speed, sentences=tuple(used))


def frame_rms(
    audio: np.ndarray, fps: float, n_frames: int, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """RMS of the audio in each video frame's time span -> [T] float32 (>= 0)."""
    hop = sample_rate / fps
    out = np.zeros(n_frames, np.float32)
    for t in range(n_frames):
        seg = audio[int(round(t * hop)) : int(round((t + 1) * hop))]
        out[t] = float(np.sqrt(np.mean(np.square(seg, dtype=np.float64)))) if seg.size else 0.0
    return out


def mouth_opening(audio: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """Speech envelope -> mouth opening per frame, [T] float32 in [0, 1], 0 in pauses.

    RMS per frame, smoothed over 3 frames (lips do not move at audio rate), normalised by a high
    percentile of the voiced frames and gated so that silence gives a closed mouth.
    """
    rms = frame_rms(audio, fps, n_frames)
    smooth = np.convolve(rms, np.array([0.25, 0.5, 0.25], np.float32), mode="same")
    voiced = smooth[smooth > 1e-4]
    if voiced.size == 0:
        return np.zeros(n_frames, np.float32)
    ref = float(np.percentile(voiced, 90))
    opening = np.clip(smooth / ref, 0.0, 1.0)
    opening[opening < 0.08] = 0.0  # breath noise / fades stay closed
    return opening.astype(np.float32)
