"""Mouth geometry and mouth activity against the driving audio.

Users' top complaint about open dubbing tools is a mouth that keeps moving in silence; these
measures make it a number: the mouth opening per frame (from dlib's 68 landmarks), the audio
envelope per video frame, and the mean opening over silent vs spoken frames plus the correlation
of opening with loudness.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from preprocessing.faces import Box, DlibHogDetector, LandmarkPredictor68

MIN_DETECT_SIDE = 256  # dlib HOG finds faces >= ~80 px: small crops are upscaled to this first
SPEECH_REL_DB = -30.0  # a frame is speech when its RMS is within 30 dB of the clip's loudest frame
SPEECH_ABS_RMS = 1e-3  # ... and above -60 dBFS, so an all-silent clip has no speech at all

_UPPER_INNER, _LOWER_INNER = [61, 62, 63], [67, 66, 65]  # inner-lip pairs (iBUG 68 numbering)
_MOUTH_CORNERS = (48, 54)


def landmarks_of(frames: np.ndarray, min_side: int = MIN_DETECT_SIDE) -> np.ndarray:
    """dlib 68 landmarks of the most confident face in each frame.

    frames: uint8 [T, H, W, 3] RGB (any size; aligned crops are upscaled to ``min_side`` so the
    HOG detector finds them). Returns float32 [T, 68, 2] in the input's pixels; NaN rows where no
    face was found (a frame without a face has no mouth to measure).
    """
    frames = np.asarray(frames)
    detector, predictor = DlibHogDetector(max_side=10 ** 6, upsample=0), LandmarkPredictor68()
    out = np.full((len(frames), 68, 2), np.nan, np.float32)
    for i, frame in enumerate(frames):
        scale = max(1.0, min_side / min(frame.shape[:2]))
        big = frame if scale == 1.0 else cv2.resize(frame, None, fx=scale, fy=scale,
                                                    interpolation=cv2.INTER_CUBIC)
        gray = cv2.cvtColor(np.ascontiguousarray(big), cv2.COLOR_RGB2GRAY)
        boxes = detector.detect(big)
        if not boxes:
            continue
        b: Box = boxes[0]
        out[i] = predictor.predict(gray, b) / scale
    return out


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap normalised by mouth width: [T, 68, 2] -> float32 [T] (0 = closed; NaN = no face).

    Normalising by the corner-to-corner width makes it independent of crop size and distance.
    """
    lm = np.asarray(landmarks, np.float64)
    gap = np.linalg.norm(lm[:, _UPPER_INNER] - lm[:, _LOWER_INNER], axis=-1).mean(-1)
    width = np.linalg.norm(lm[:, _MOUTH_CORNERS[0]] - lm[:, _MOUTH_CORNERS[1]], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (gap / np.where(width > 0, width, np.nan)).astype(np.float32)


def mouth_box(landmarks: np.ndarray, size, margin: float = 0.25) -> tuple[int, int, int, int]:
    """One box (y0, y1, x0, x1) around the mouth (points 48-67) for a whole clip.

    The median box over frames with a face, grown by ``margin`` x mouth width on every side and
    clipped to ``size`` (S or (H, W)). Raises ValueError when no frame has landmarks.
    """
    h, w = (size, size) if isinstance(size, int) else size
    pts = np.asarray(landmarks, np.float64)[:, 48:68]
    ok = np.isfinite(pts).all(axis=(1, 2))
    if not ok.any():
        raise ValueError("no frame has landmarks: cannot place the mouth box")
    pts = pts[ok]
    x0, x1 = np.median(pts[..., 0].min(1)), np.median(pts[..., 0].max(1))
    y0, y1 = np.median(pts[..., 1].min(1)), np.median(pts[..., 1].max(1))
    pad = margin * (x1 - x0)
    box = (max(0, math.floor(y0 - pad)), min(h, math.ceil(y1 + pad)),
           max(0, math.floor(x0 - pad)), min(w, math.ceil(x1 + pad)))
    if box[1] <= box[0] or box[3] <= box[2]:
        raise ValueError(f"mouth box {box} is empty inside {h}x{w}")
    return box


def audio_envelope(audio: np.ndarray, fps: float, n_frames: int, sample_rate: int = 16000) -> np.ndarray:
    """RMS of the audio under each video frame: float32 mono [N] -> float32 [n_frames].

    Frame t covers samples [t * sr / fps, (t + 1) * sr / fps); audio past the end counts as silence.
    """
    audio = np.asarray(audio, np.float64).reshape(-1)
    edges = np.round(np.arange(n_frames + 1) * sample_rate / fps).astype(np.int64)
    padded = np.zeros(int(edges[-1]))
    padded[:min(len(audio), len(padded))] = audio[:len(padded)]
    sq = np.concatenate([[0.0], np.cumsum(padded ** 2)])
    counts = np.diff(edges).clip(min=1)
    return np.sqrt((sq[edges[1:]] - sq[edges[:-1]]) / counts).astype(np.float32)


def speech_mask(envelope: np.ndarray, rel_db: float = SPEECH_REL_DB, abs_rms: float = SPEECH_ABS_RMS) -> np.ndarray:
    """bool [T]: frames whose RMS is within ``rel_db`` dB of the loudest frame and above ``abs_rms``."""
    env = np.asarray(envelope, np.float64)
    if env.size == 0:
        return np.zeros(0, bool)
    floor = max(abs_rms, float(env.max()) * 10 ** (rel_db / 20))
    return env >= floor


def mouth_activity(opening: np.ndarray, envelope: np.ndarray, speech: np.ndarray | None = None) -> dict[str, float]:
    """Mouth opening over silent vs spoken frames of the driving audio.

    Returns ``silent_mean`` / ``speech_mean`` (mean opening on each; NaN when a clip has no such
    frame), ``silence_ratio`` = silent_mean / speech_mean (lower is better: ~0 for a mouth that
    closes in pauses, ~1 for one that ignores them) and ``corr``, the Pearson correlation of the
    opening with the envelope (NaN when either is constant). Frames without a face are ignored.
    """
    op = np.asarray(opening, np.float64)
    env = np.asarray(envelope, np.float64)[:len(op)]
    op = op[:len(env)]
    speech = speech_mask(env) if speech is None else np.asarray(speech, bool)[:len(op)]
    ok = np.isfinite(op)
    silent_mean = float(op[ok & ~speech].mean()) if (ok & ~speech).any() else math.nan
    speech_mean = float(op[ok & speech].mean()) if (ok & speech).any() else math.nan
    ratio = silent_mean / speech_mean if speech_mean and math.isfinite(speech_mean) else math.nan
    corr = math.nan
    if ok.sum() >= 3 and np.std(op[ok]) > 0 and np.std(env[ok]) > 0:
        corr = float(np.corrcoef(op[ok], env[ok])[0, 1])
    return {"silent_mean": silent_mean, "speech_mean": speech_mean, "silence_ratio": float(ratio),
            "corr": corr}
