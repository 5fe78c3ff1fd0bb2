"""The model over a dub's frames: audio windows on the video's own time grid, batched forwards."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from iptalker_model.iptalker import IPTalker
from iptalker_model.mask import mask_source

ROW_RATE = 50.0  # Whisper rows per second: 2 per frame at the 25 fps the model was trained on


def to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 [..., S, S, 3] -> float32 [..., 3, S, S] in [-1, 1] (the loader's convention)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0).movedim(-1, -3)


def from_unit(x: torch.Tensor) -> np.ndarray:
    """float [..., 3, S, S] in [-1, 1] -> uint8 [..., S, S, 3]."""
    return ((x.float().clamp(-1, 1) + 1.0) * 127.5).round().byte().movedim(-3, -1).cpu().numpy()


def audio_windows(rows: np.ndarray, frame_times_s: np.ndarray, context: int) -> np.ndarray:
    """Whisper rows around each frame's time, as in training: [R, D] at 50 Hz -> [B, A, D].

    Training gives frame f (25 fps) rows 2(f - c) .. 2(f + c) + 1, i.e. A = 2(2c + 1) rows starting
    c frames (2c rows) before the frame's start. Here the start row is taken at each output frame's
    own time, so 24, 30 or 60 fps videos get the same audio span per frame as training (edge-clamped).
    """
    a = 2 * (2 * context + 1)
    first = np.round(frame_times_s * ROW_RATE).astype(np.int64) - 2 * context  # [B]
    idx = np.clip(first[:, None] + np.arange(a), 0, len(rows) - 1)  # [B, A]
    return rows[idx]


class MouthGenerator:
    """IPTalker with fixed references: aligned source crops + their times -> crops with a new mouth."""

    def __init__(self, model: IPTalker, references: np.ndarray, rows: np.ndarray, fps: float,
                 device: str = "cpu", batch: int = 16):
        self.model, self.cfg, self.fps, self.batch = model, model.cfg, fps, batch
        self.device = torch.device(device)
        self.references = to_unit(references)[None].to(self.device)  # [1, K, 3, S, S]
        self.rows = rows  # [R, D] float16 at 50 Hz
        self.bf16 = self.device.type == "cuda"  # bf16 on GPU; CPU stays fp32 (bf16 convs are slow there)

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray, out_frames: np.ndarray) -> np.ndarray:
        """crops uint8 [B, S, S, 3], output frame indices [B] -> uint8 [B, S, S, 3]."""
        out = []
        for i in range(0, len(crops), self.batch):
            src = to_unit(crops[i:i + self.batch]).to(self.device)[None]  # [1, T, 3, S, S]
            win = audio_windows(self.rows, out_frames[i:i + self.batch] / self.fps, self.cfg.audio_context)
            audio = torch.from_numpy(win.astype(np.float32)).to(self.device)[None]  # [1, T, A, D]
            amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
            with amp:
                gen, _ = self.model(mask_source(src, self.cfg), self.references, audio)
            out.append(from_unit(gen[0]))
        return np.concatenate(out) if out else np.zeros((0, *crops.shape[1:]), np.uint8)
