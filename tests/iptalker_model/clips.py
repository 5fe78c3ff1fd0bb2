"""Test batches: random ones for shape tests, synthetic talking-face clips for overfitting.

Frames come from ``preprocessing.synthetic.render_clip`` (a face whose mouth opening follows its
speech), cropped square around the face box and resized to S. Audio rows are Whisper's log-mel
(100 Hz, 80 bins) averaged in pairs to 50 Hz = 2 rows per 25 fps frame, standing in for Whisper
encoder states (D = 80) so these tests do not depend on the feature extractor.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

FPS = 25.0


def face_crops(frames: np.ndarray, boxes: np.ndarray, size: int, scale: float = 1.5,
               landmarks: np.ndarray | None = None):
    """[T, H, W, 3] uint8 + boxes [T, 4] -> [T, 3, size, size] in [-1, 1], square crops around
    boxes; with landmarks [T, 68, 2] (frame pixels) also returns them in crop fractions."""
    t, h, w, _ = frames.shape
    box = np.median(boxes, axis=0)                   # one crop per clip: head motion stays in
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = scale * max(box[2] - box[0], box[3] - box[1]) / 2
    x0, x1 = int(max(cx - half, 0)), int(min(cx + half, w))
    y0, y1 = int(max(cy - half, 0)), int(min(cy + half, h))
    x = torch.from_numpy(frames[:, y0:y1, x0:x1]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    crops = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if landmarks is None:
        return crops
    fractions = (landmarks - np.float32([x0, y0])) / np.float32([x1 - x0, y1 - y0])
    return crops, torch.from_numpy(fractions.astype(np.float32))


def audio_rows(audio: np.ndarray, n_frames: int) -> torch.Tensor:
    """16 kHz audio -> [2 * n_frames, 80] log-mel rows at 50 Hz."""
    import whisper

    mel = whisper.audio.log_mel_spectrogram(torch.from_numpy(audio.astype(np.float32)))  # [80, M]
    need = 4 * n_frames
    mel = F.pad(mel, (0, max(0, need - mel.shape[1])), value=float(mel.min()))[:, :need]
    return mel.reshape(80, 2 * n_frames, 2).mean(-1).T.contiguous()                    # [2N, 80]


def load_clips(seeds, size: int, seconds: float = 3.0) -> list[dict]:
    from preprocessing.synthetic.corpus import render_clip

    clips = []
    for seed in seeds:
        clip = render_clip(seed, seconds=seconds, size=(192, 192), fps=FPS)
        frames, landmarks = face_crops(clip.frames, clip.face_box, size, landmarks=clip.landmarks)
        clips.append({"frames": frames, "rows": audio_rows(clip.audio, len(frames)),
                      "landmarks": landmarks, "mouth_open": clip.mouth_open})
    return clips


def window_rows(rows: torch.Tensor, centre: int, context: int) -> torch.Tensor:
    """Rows of frames centre-context .. centre+context (edges clamped) -> [2 * (2c + 1), D]."""
    frames = torch.arange(centre - context, centre + context + 1).clamp(0, rows.shape[0] // 2 - 1)
    index = torch.stack([2 * frames, 2 * frames + 1], dim=1).flatten()
    return rows[index]


def sample_batch(clips: list[dict], cfg, batch_size: int, gen: torch.Generator, t: int | None = None) -> dict:
    """A batch following iptalker_model/batch.py, drawn at random from clips."""
    t = t or cfg.sync_frames
    out = {k: [] for k in ("frames", "references", "audio", "sync_audio", "sync_audio_off", "landmarks")}
    for _ in range(batch_size):
        clip = clips[int(torch.randint(len(clips), (1,), generator=gen))]
        frames, rows = clip["frames"], clip["rows"]
        n = len(frames)
        t0 = int(torch.randint(n - t + 1, (1,), generator=gen))
        outside = torch.cat([torch.arange(0, t0), torch.arange(t0 + t, n)])
        refs = outside[torch.randperm(len(outside), generator=gen)[: cfg.num_references]]
        far = torch.cat([torch.arange(0, max(t0 - t, 0) + 1), torch.arange(min(t0 + t, n - t), n - t + 1)])
        far = far[(far - t0).abs() >= t]
        t1 = int(far[torch.randint(len(far), (1,), generator=gen)])
        out["frames"].append(frames[t0 : t0 + t])
        out["references"].append(frames[refs])
        out["audio"].append(torch.stack([window_rows(rows, i, cfg.audio_context) for i in range(t0, t0 + t)]))
        out["sync_audio"].append(rows[2 * t0 : 2 * (t0 + t)])
        out["sync_audio_off"].append(rows[2 * t1 : 2 * (t1 + t)])
        out["landmarks"].append(clip["landmarks"][t0 : t0 + t])
    return {k: torch.stack(v) for k, v in out.items()}
