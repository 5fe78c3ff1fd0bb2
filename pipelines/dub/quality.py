"""Quality of one dubbed output, measured while it is rendered (bounded memory).

- Lip sync (LSE-D / LSE-C, syncnet_python's protocol) with the bundle's SyncNet: the output's
  aligned crops are put on SyncNet's 25 fps grid, each 5-frame window of dubbed frames is embedded
  as soon as it is complete (only its embedding is kept), and the distances to the new audio's
  windows are searched over +/- max_offset frames at the end.
- Identity: dlib 128-d face descriptor distance between matched source and output frames, on a
  few frames spread over the video (the descriptor costs ~55 ms a frame).
"""

from __future__ import annotations

import dlib
import numpy as np
import torch

from iptalker_model.syncnet import SyncNet
from pipelines.dub.generate import to_unit
from preprocessing import dlib_models

METRIC_FPS = 25.0  # SyncNet's grid: 2 Whisper rows per frame


class SyncMeter:
    """Streams dubbed crops of output frames; ``result()`` gives LSE-D, LSE-C and the offset."""

    def __init__(self, syncnet: SyncNet, fps: float, n_out: int, rows: np.ndarray, device="cpu",
                 max_offset: int = 15):
        self.net, self.t, self.device, self.max_offset = syncnet, syncnet.cfg.sync_frames, device, max_offset
        n_metric = int(np.floor(n_out * METRIC_FPS / fps + 1e-6))
        self.source = np.minimum(np.round(np.arange(n_metric) * fps / METRIC_FPS).astype(int), n_out - 1)
        self.rows = rows
        self.pending: dict[int, torch.Tensor | None] = {}  # metric frame -> lower face [3, h, w]
        self.next = 0  # next metric frame to place in the window stream
        self.window: list[torch.Tensor | None] = []  # the last T metric frames
        self.starts: list[int] = []
        self.embeddings: list[torch.Tensor] = []

    @torch.inference_mode()
    def add(self, out_frames: np.ndarray, crops: list[np.ndarray | None]) -> None:
        """Output frames (ascending) and their dubbed crops [S, S, 3] uint8 (None = passed through)."""
        lookup = dict(zip(out_frames.tolist(), crops, strict=True))
        batch, starts = [], []
        while self.next < len(self.source) and self.source[self.next] in lookup:
            crop = lookup[self.source[self.next]]
            face = None if crop is None else self.net.lower_face(to_unit(crop).to(self.device))
            self.window = (self.window + [face])[-self.t:]
            if len(self.window) == self.t and all(f is not None for f in self.window):
                batch.append(torch.stack(self.window))
                starts.append(self.next - self.t + 1)
            self.next += 1
        if batch:
            self.embeddings.append(self.net.embed_video(torch.stack(batch)).float().cpu())
            self.starts.extend(starts)

    @torch.inference_mode()
    def result(self) -> dict:
        """{"lse_d", "lse_c", "offset", "windows"}; None values when too few dubbed windows."""
        n_audio = min(len(self.source), len(self.rows) // 2) - self.t + 1
        starts = np.array([s for s in self.starts if s < n_audio], int)
        if len(starts) < 2 * self.max_offset + 1 or n_audio < 1:
            return {"lse_d": None, "lse_c": None, "offset": None, "windows": int(len(starts))}
        video = torch.cat(self.embeddings)[: len(starts)]  # [W, E]
        idx = 2 * np.arange(n_audio)[:, None] + np.arange(2 * self.t)  # [n_audio, 2T]
        audio = torch.cat([self.net.embed_audio(torch.from_numpy(self.rows[idx[i:i + 256]].astype(np.float32))
                                                .to(self.device)).float().cpu()
                           for i in range(0, n_audio, 256)])  # [n_audio, E]
        offsets = np.arange(-self.max_offset, self.max_offset + 1)
        means = []
        for off in offsets:  # mean distance over the windows whose shifted audio exists
            a = starts + off
            ok = (a >= 0) & (a < n_audio)
            means.append(float((video[ok] - audio[a[ok]]).norm(dim=1).mean()) if ok.any() else np.inf)
        means = np.array(means)
        best = int(np.argmin(means))
        finite = means[np.isfinite(means)]
        return {"lse_d": float(means[best]), "lse_c": float(np.median(finite) - means[best]),
                "offset": int(offsets[best]), "windows": int(len(starts))}


def face_descriptor(crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """dlib 128-d identity descriptor of the face in crop [H, W, 3] uint8 with its 68 landmarks [68, 2]."""
    lo, hi = landmarks.min(0), landmarks.max(0)
    rect = dlib.rectangle(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
    shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks])
    return np.array(dlib_models.face_descriptor_model().compute_face_descriptor(np.ascontiguousarray(crop), shape))


class IdentityMeter:
    """Collects up to ``n`` (source, output) aligned crop pairs at given output frames."""

    def __init__(self, frames: np.ndarray):
        self.frames = set(np.asarray(frames).tolist())
        self.pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def wants(self, out_frame: int) -> bool:
        return out_frame in self.frames

    def add(self, source_crop: np.ndarray, output_crop: np.ndarray, landmarks: np.ndarray) -> None:
        self.pairs.append((source_crop, output_crop, landmarks))

    def result(self) -> dict:
        """{"identity_distance": mean dlib distance (same person < 0.6), "frames": n}."""
        if not self.pairs:
            return {"identity_distance": None, "frames": 0}
        dists = [float(np.linalg.norm(face_descriptor(s, lm) - face_descriptor(o, lm))) for s, o, lm in self.pairs]
        return {"identity_distance": float(np.mean(dists)), "frames": len(dists)}
