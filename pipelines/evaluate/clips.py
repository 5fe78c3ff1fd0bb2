"""Eval-set clips from the shards, and the candidates scored on them: the model and the baselines.

Decoding and the reference draw are the training loader's (``pipelines.data.loader``), so the
model sees references chosen exactly as in training: K frames of the same clip outside the
T-frame window being generated. The baselines a lazy model would match, on the same windows
with the same references:

- ``source``: the untouched source frames (self-reconstruction: the ground truth itself; cross
  audio: a mouth that follows the original speech, not the new one);
- ``copy_reference``: the first reference frame pasted into the masked lower face;
- ``mean_reference``: the mean of the K references pasted into the masked lower face.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import numpy as np
import soundfile
import torch

from iptalker_model.mask import lower_face_mask, mask_source
from pipelines.data import shards as contract
from pipelines.data.loader import WindowSpec, audio_windows, decode_clip, reference_indices
from pipelines.data.storage import Storage, join
from pipelines.evaluate.evalset import EvalSet

log = logging.getLogger(__name__)
BASELINES = ("source", "copy_reference", "mean_reference")


def read_clips(es: EvalSet, data_root: str, storage: Storage, spec: WindowSpec,
               max_frames: int) -> Iterator[dict]:
    """{"key", "frames" uint8 [N, S, S, 3], "whisper" [2N, D], "audio" float32 16 kHz | None,
    "meta"} for each eval-set sample, in manifest order; N <= max_frames."""
    wanted = {s["key"]: s["shard"] for s in es.samples}
    # shards live in per-split sets (or the flat pre-split layout): find each by its name
    tars = {d.name: d.tar for d in contract.list_done_shards(storage, data_root)}
    by_key = {}
    for shard in sorted(set(wanted.values())):
        tar = tars.get(shard) or join(data_root, contract.SHARDS_DIR, shard + ".tar")
        for key, files in contract.iter_shard_samples(storage, tar, decode=False):
            if wanted.get(key) == shard:
                by_key[key] = _decode(key, files, spec, max_frames)
    for s in es.samples:
        if s["key"] not in by_key:
            raise ValueError(f"sample {s['key']} is not in {s['shard']} (eval set {es.version})")
        yield by_key[s["key"]]


def _decode(key: str, files: dict, spec: WindowSpec, max_frames: int) -> dict:
    clip = decode_clip({**files, "__key__": key}, spec)
    n = min(len(clip["frames"]), len(clip["whisper"]) // 2, max_frames)
    clip["frames"], clip["whisper"] = clip["frames"][:n], clip["whisper"][:2 * n]
    clip["landmarks"], clip["rms"] = clip["landmarks"][:n], clip["rms"][:n]
    try:
        audio, rate = soundfile.read(io.BytesIO(files["audio.flac"]), dtype="float32", always_2d=True)
        clip["audio"] = audio.mean(1) if rate == contract.SAMPLE_RATE else None
        clip["audio_error"] = "" if rate == contract.SAMPLE_RATE else f"audio at {rate} Hz, not 16 kHz"
    except Exception as e:  # noqa: BLE001  (a broken flac only loses the mouth-activity numbers)
        clip["audio"], clip["audio_error"] = None, f"audio.flac unreadable: {str(e)[:120]}"
        log.warning("%s: %s", key, clip["audio_error"])
    return clip


def _unit(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1.0).permute(0, 3, 1, 2)


def _uint8(x: torch.Tensor) -> np.ndarray:
    """[..., 3, S, S] in [-1, 1] -> uint8 [..., S, S, 3]."""
    return ((x.movedim(-3, -1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def window_starts(n: int, t: int) -> list[int]:
    """T-frame windows covering n frames: 0, T, 2T, ... and a last one ending at n (may overlap)."""
    if n < t:
        raise ValueError(f"clip of {n} frames is shorter than one {t}-frame window")
    starts = list(range(0, n - t + 1, t))
    return starts + ([n - t] if starts[-1] + t < n else [])


def draw_references(landmarks: np.ndarray, t: int, k: int, seed: int) -> list[np.ndarray]:
    """One reference set per window (``window_starts``), the loader's selection, seeded per clip;
    landmarks [N, 68, 2] of the clip."""
    rng = np.random.default_rng(seed)
    return [reference_indices(landmarks, s, t, k, rng) for s in window_starts(len(landmarks), t)]


def baselines(frames: np.ndarray, refs: list[np.ndarray], cfg) -> dict[str, np.ndarray]:
    """The three lazy answers for a clip: name -> uint8 [N, S, S, 3]."""
    x, t = _unit(frames), cfg.sync_frames
    hidden = lower_face_mask(cfg)[0]                                  # [1, S, S]
    copy, mean = x.clone(), x.clone()
    for s, r in zip(window_starts(len(x), t), refs, strict=True):
        masked = mask_source(x[s:s + t], cfg)
        copy[s:s + t] = masked + hidden * x[r[0]]
        mean[s:s + t] = masked + hidden * x[r].mean(0)
    return {"source": frames, "copy_reference": _uint8(copy), "mean_reference": _uint8(mean)}


@torch.no_grad()
def generate(model, frames: np.ndarray, whisper: np.ndarray, refs: list[np.ndarray],
             batch_windows: int = 4) -> np.ndarray:
    """The model's frames for a clip driven by ``whisper`` rows [2N, D]: uint8 [N, S, S, 3].

    Each T-frame window sees its masked source, its K references and the audio rows around each
    frame, exactly as in training (``cut_window``).
    """
    cfg, x = model.cfg, _unit(frames)
    t, out = cfg.sync_frames, x.clone()
    starts = window_starts(len(x), t)
    for i in range(0, len(starts), batch_windows):
        chunk = list(zip(starts[i:i + batch_windows], refs[i:i + batch_windows], strict=True))
        src = torch.stack([mask_source(x[s:s + t], cfg) for s, _ in chunk])          # [B, T, 3, S, S]
        ref = torch.stack([x[r] for _, r in chunk])                                   # [B, K, 3, S, S]
        aud = torch.from_numpy(np.stack([audio_windows(whisper, s, t, cfg.audio_context)
                                         for s, _ in chunk])).float()                 # [B, T, A, D]
        y, _ = model(src, ref, aud)
        for (s, _), frames_out in zip(chunk, y, strict=True):
            out[s:s + t] = frames_out
    return _uint8(out)


def driving_audio(clip: dict, driver: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """The driver's Whisper rows and audio cut/padded to ``clip``'s length (cross-audio setting).

    A shorter driver is padded with its last row / silence, so the tail reads as a pause.
    """
    n = len(clip["frames"])
    rows = driver["whisper"][np.minimum(np.arange(2 * n), len(driver["whisper"]) - 1)]
    audio = None
    if driver["audio"] is not None:
        need = int(round(n * contract.SAMPLE_RATE / contract.FPS))
        audio = np.zeros(need, np.float32)
        audio[:min(need, len(driver["audio"]))] = driver["audio"][:need]
    return rows, audio
