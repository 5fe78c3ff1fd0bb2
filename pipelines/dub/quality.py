"""Quality of one dubbed output, measured while it is rendered (bounded memory).

- Lip sync (LSE-D / LSE-C, syncnet_python's protocol, ``pipelines.metrics.sync``) with the
  bundle's SyncNet: the output's aligned crops are put on SyncNet's 25 fps grid, each 5-frame window
  of dubbed frames is embedded as soon as it is complete (only its embedding is kept), and the
  offset search against the new audio runs at the end over the longest dubbed stretch.
- Mouth activity (``pipelines.metrics.mouth``): the mouth opening of every dubbed frame (dlib 68
  landmarks in the aligned crop, the face box known from the source) against the new audio's
  envelope: mean opening in silence vs speech and the correlation; the same for the source frames
  is the baseline (a dub that left the mouth alone would score like it).
- Identity: dlib 128-d face descriptor distance between matched source and output frames, on a
  few frames spread over the video (the descriptor costs ~55 ms a frame).
"""

from __future__ import annotations

import numpy as np
import torch

from iptalker_model.syncnet import SyncNet
from pipelines.dub.generate import to_unit
from pipelines.metrics.identity import face_descriptors, identity_scores
from pipelines.metrics.mouth import mouth_activity, mouth_opening
from pipelines.metrics.sync import lse_from_embeddings
from preprocessing.faces import Box, LandmarkPredictor68

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

    def _longest_run(self) -> tuple[int, int]:
        """(first, count) of the longest run of consecutive dubbed windows."""
        starts = np.asarray(self.starts, int)
        if len(starts) == 0:
            return 0, 0
        breaks = np.flatnonzero(np.diff(starts) != 1) + 1
        bounds = np.concatenate([[0], breaks, [len(starts)]])
        k = int(np.argmax(np.diff(bounds)))
        return int(bounds[k]), int(bounds[k + 1] - bounds[k])

    @torch.inference_mode()
    def result(self) -> dict:
        """{"lse_d", "lse_c", "offset", "windows"} over the longest dubbed stretch (None when it is
        too short for the offset search)."""
        first, count = self._longest_run()
        if count == 0:
            return {"lse_d": None, "lse_c": None, "offset": None, "windows": 0}
        s0 = self.starts[first]
        count = min(count, len(self.rows) // 2 - self.t + 1 - s0)  # windows whose audio exists
        if count <= self.max_offset:
            return {"lse_d": None, "lse_c": None, "offset": None, "windows": int(max(count, 0))}
        video = torch.cat(self.embeddings)[first:first + count]  # [W, E]
        idx = 2 * (s0 + np.arange(count))[:, None] + np.arange(2 * self.t)  # [W, 2T] rows
        audio = torch.cat([self.net.embed_audio(torch.from_numpy(self.rows[idx[i:i + 256]].astype(np.float32))
                                                .to(self.device)).float().cpu()
                           for i in range(0, count, 256)])  # [W, E]
        lse = lse_from_embeddings(video, audio, self.max_offset)
        return {"lse_d": lse.distance, "lse_c": lse.confidence, "offset": lse.offset, "windows": count}


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
        """{"identity_distance": mean dlib distance (same person < 0.6), "identity_cosine", "frames"}.

        The source frame's landmarks locate the face in both crops (the dub moves only the mouth).
        """
        if not self.pairs:
            return {"identity_distance": None, "identity_cosine": None, "frames": 0}
        source, output, lms = (np.stack(x) for x in zip(*self.pairs, strict=True))
        scores = identity_scores(output, source, generated_desc=face_descriptors(output, lms),
                                 source_desc=face_descriptors(source, lms))
        ok = scores.frames > 0
        return {"identity_distance": scores.distance if ok else None,
                "identity_cosine": scores.cosine if ok else None, "frames": scores.frames}


class MouthMeter:
    """Mouth opening per output frame, of the dubbed output and of its source frame (NaN = not dubbed)."""

    def __init__(self, n_out: int):
        self.output = np.full(n_out, np.nan, np.float32)
        self.source = np.full(n_out, np.nan, np.float32)
        self.predictor = LandmarkPredictor68()

    def add(self, out_frame: int, source_crop: np.ndarray, output_crop: np.ndarray, landmarks: np.ndarray) -> None:
        """Aligned crops [S, S, 3] uint8 of one output frame; landmarks [68, 2] of the source in the crop."""
        lo, hi = landmarks.min(0), landmarks.max(0)
        pad = 0.1 * (hi - lo)
        box = Box(*(lo - pad), *(hi + pad))
        for crop, into in ((source_crop, self.source), (output_crop, self.output)):
            lm = self.predictor.predict(np.ascontiguousarray(crop[..., 1]), box)  # green ~ luma, no conversion
            into[out_frame] = mouth_opening(lm[None])[0]

    def result(self, envelope: np.ndarray) -> dict:
        """{"output": mouth_activity(...), "source": mouth_activity(...)} against ``envelope`` [N_out]."""
        if not np.isfinite(self.output).any():
            return {}
        return {"output": mouth_activity(self.output, envelope), "source": mouth_activity(self.source, envelope)}
