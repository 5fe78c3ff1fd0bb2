"""Training and validation windows from curated WebDataset shards (the reader side of the contract).

The pipeline is a chain of small stages (open_clip's ``data.py``):

  done shards of one split's set -> resample (per node+worker seed) -> open via Storage
  (local or s3://) -> tar samples -> keep split -> decode clip -> cut windows -> shuffle -> batch

Why these choices:
- ``resampled`` shards make the stream infinite and balanced across any number of ranks and
  workers (no shard-count/world-size constraint); ``with_epoch`` on the loader gives a nominal
  epoch length. Each rank and worker draws from its own seed (seed, rank, worker).
- Shards are opened through ``pipelines.data.storage.Storage`` (s3fs built per process), not
  ``pipe:aws``: no subprocess, same credentials/endpoint as the rest of the project.
- Only ``.json``, ``.npy`` (``allow_pickle=False``), ``.flac`` and ``.mp4`` are decoded; never
  pickle. The audio itself only yields a per-frame loudness (``audio_rms``) for validation.
- A corrupt sample or shard is skipped and counted, never fatal: the count travels with the batch
  (``batch["corrupt_skipped"]``, a delta since the worker's previous window) because DataLoader
  workers are separate processes.
- One decoded clip yields several windows, so video decoding is amortised.
- Training reads only ``shards/train/``, validation only ``shards/val/`` (the contract's shard
  sets); the per-sample split check stays for datasets written before the sets existed.
- A stream that yields no window at all (empty split, every clip too short) stops with an error
  instead of resampling forever.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

import cv2  # noqa: F401  (before decord: with decord imported first, cv2.imread of a PNG fails)
import numpy as np
import torch
import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_expander

from pipelines.data import shards as contract
from pipelines.data.augment import Augment, augment_window
from pipelines.data.storage import Storage
from pipelines.errors import UserError
from preprocessing.config import ReferenceConfig
from preprocessing.references import select_references

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowSpec:
    """Geometry of one training window; built from the ModelConfig so loader and model agree."""

    frames: int  # T consecutive target frames
    references: int  # K reference frames from the same clip, outside the window
    image_size: int  # S: crops are resized to S x S
    audio_context: int  # c: frame t sees Whisper rows of frames t-c .. t+c
    audio_dim: int  # D: Whisper width the model expects
    reference: ReferenceConfig = ReferenceConfig()  # how the K references are chosen
    augment: Augment = Augment()  # training windows only (``pipelines.data.augment``)

    @classmethod
    def from_model(cls, model_cfg, reference: ReferenceConfig | None = None,
                   augment: Augment | None = None) -> WindowSpec:
        return cls(model_cfg.sync_frames, model_cfg.num_references, model_cfg.image_size,
                   model_cfg.audio_context, model_cfg.audio_dim, reference or ReferenceConfig(),
                   augment or Augment())


# ------------------------------------------------------------------ shard listing and opening
def list_shards(root: str, storage: Storage | None = None, split: str = "train") -> list[str]:
    """Tar URIs of the committed shards with samples in the ``split`` set (a UserError if none)."""
    storage = storage or Storage()
    everything = contract.list_done_shards(storage, root)
    tars = [s.tar for s in everything if s.split in (split, None) and s.record.get("samples", 1)]
    if tars:
        return tars
    where = contract.shard_dir(root, split)
    if not everything:
        raise UserError(f"no finished shards under {contract.shard_dir(root, None)}; run `iptalker curate` "
                        "first (a shard needs its .done.json)")
    if split == "train":
        raise UserError(f"the train split of {root} is empty (no samples under {where}): every curated "
                        "identity is in val; curate more identities or lower curate.val_fraction")
    raise UserError(f"no {split} samples under {where}")


def has_split(root: str, split: str, storage: Storage | None = None) -> bool:
    """Whether the ``split`` set (or a pre-split flat shard) holds any committed sample."""
    return any(s.split in (split, None) and s.record.get("samples", 1)
               for s in contract.list_done_shards(storage or Storage(), root, split))


class CorruptCounter:
    """Worker-local count of skipped samples; ``take()`` returns the count since the last take."""

    def __init__(self):
        self.pending = 0

    def __call__(self, exn: Exception) -> bool:  # a webdataset handler: count and continue
        self.pending += 1
        log.warning("skipping corrupt shard data: %s", str(exn)[:200])
        return True

    def take(self) -> int:
        n, self.pending = self.pending, 0
        return n


def open_shards(urls, storage: Storage, handler: CorruptCounter):
    """Stage: {"url"} -> {"url", "stream"}, via Storage so s3:// and local paths behave alike."""
    for item in urls:
        try:
            stream = storage.open(item["url"], "rb")
        except Exception as exn:  # unreadable shard: skip it
            handler(exn)
            continue
        try:
            yield {**item, "stream": stream}
        finally:
            stream.close()


# ------------------------------------------------------------------ decoding and windows
def decode_clip(sample: dict, spec: WindowSpec) -> dict:
    """Raw tar sample -> {"frames": uint8 [N, S, S, 3], "whisper": float32 [2N, D],
    "landmarks": float32 [N, 68, 2] in crop fractions [0, 1], "meta"}."""
    import decord

    meta = json.loads(sample["json"])
    whisper = contract.load_npy(sample["whisper.npy"])
    if whisper.ndim != 2 or whisper.shape[1] != spec.audio_dim:
        raise ValueError(f"{sample['__key__']}: whisper.npy shape {whisper.shape}, "
                         f"model expects [2T, {spec.audio_dim}] (model.audio_dim)")
    vr = decord.VideoReader(io.BytesIO(sample["frames.mp4"]), width=spec.image_size,
                            height=spec.image_size)
    frames = vr.get_batch(list(range(len(vr)))).asnumpy()  # [N, S, S, 3] uint8 RGB
    landmarks = contract.load_npy(sample["landmarks.npy"]).astype(np.float32)
    if landmarks.shape != (len(frames), 68, 2):
        raise ValueError(f"{sample['__key__']}: landmarks.npy shape {landmarks.shape}, "
                         f"expected [{len(frames)}, 68, 2]")
    landmarks /= float(meta.get("size", contract.CROP_SIZE))  # crop pixels -> fractions of the crop
    return {"key": sample["__key__"], "frames": frames, "whisper": whisper.astype(np.float32),
            "landmarks": landmarks, "rms": frame_loudness(sample.get("audio.flac"), len(frames)),
            "meta": meta}


def frame_loudness(flac: bytes | None, n_frames: int) -> np.ndarray:
    """RMS of the clip's audio per video frame, float32 [N]; NaN when the audio does not decode
    (loudness only feeds validation metrics, so a clip without usable audio still trains)."""
    import soundfile as sf

    try:
        audio, rate = sf.read(io.BytesIO(flac), dtype="float32", always_2d=True)
    except Exception:  # noqa: BLE001 - missing or broken audio: no loudness, not a broken clip
        return np.full(n_frames, np.nan, np.float32)
    audio = audio.mean(1)
    edges = np.round(np.arange(n_frames + 1) * rate / contract.FPS).astype(int).clip(0, len(audio))
    return np.array([np.sqrt(np.mean(np.square(audio[a:b]))) if b > a else 0.0
                     for a, b in zip(edges[:-1], edges[1:])], np.float32)


def _to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 [..., S, S, 3] -> float32 [..., 3, S, S] in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0)
    return t.movedim(-1, -3)


def _rows(whisper: np.ndarray, first_frame: int, n_frames: int) -> np.ndarray:
    """Whisper rows of frames [first, first + n) (2 rows per frame), edge-clamped: [2n, D]."""
    idx = np.arange(2 * first_frame, 2 * (first_frame + n_frames)).clip(0, len(whisper) - 1)
    return whisper[idx]


def reference_indices(landmarks: np.ndarray, start: int, t: int, k: int, rng: np.random.Generator | None,
                      cfg: ReferenceConfig | None = None) -> np.ndarray:
    """K sorted reference frame indices for the window [start, start + t) of a clip with
    landmarks [N, 68, 2]: ``preprocessing.references.select_references`` (other times, similar
    pose, spread over mouth openness; rng None = deterministic, as dubbing uses it)."""
    return select_references(landmarks, range(start, start + t), k, cfg, rng)


def audio_windows(whisper: np.ndarray, start: int, t: int, context: int) -> np.ndarray:
    """Whisper rows centred on each frame of [start, start + t): [t, 2 * (2c + 1), D], edge-clamped."""
    return np.stack([_rows(whisper, f - context, 2 * context + 1) for f in range(start, start + t)])


def cut_window(clip: dict, spec: WindowSpec, rng: np.random.Generator) -> dict | None:
    """One training window (batch contract, without the batch axis), or None if the clip is short.

    frames [T,3,S,S], references [K,3,S,S] (``select_references``: other times of the clip,
    similar pose, spread over mouth openness), audio [T,A,D] centred on each
    frame, sync_audio [2T,D] aligned, sync_audio_off [2T,D] from a window >= T frames away,
    landmarks [T,68,2] of the target frames in crop fractions, audio_rms [T] their loudness.
    """
    n, t, c = len(clip["frames"]), spec.frames, spec.audio_context
    if n < 3 * t:  # need room for the window, references and an off-sync window
        return None
    start = int(rng.integers(0, n - t + 1))
    far = [s for s in range(0, n - t + 1) if abs(s - start) >= t]
    off = int(rng.choice(far))
    refs = reference_indices(clip["landmarks"], start, t, spec.references, rng, spec.reference)
    wh = clip["whisper"]
    return {
        "frames": _to_unit(clip["frames"][start:start + t]),
        "references": _to_unit(clip["frames"][refs]),
        "audio": torch.from_numpy(audio_windows(wh, start, t, c)),
        "sync_audio": torch.from_numpy(_rows(wh, start, t)),
        "sync_audio_off": torch.from_numpy(_rows(wh, off, t)),
        "landmarks": torch.from_numpy(clip["landmarks"][start:start + t]),
        "audio_rms": torch.from_numpy(clip["rms"][start:start + t]),
    }


class WindowCutter:
    """Stage: raw samples -> windows; decodes each clip once and cuts ``per_clip`` windows.

    ``starve_after``: raise once this many samples passed without a single window ever (an
    endless resampled stream would otherwise spin forever on an empty split); None: never.
    ``spec.augment`` applies to the train split only: validation measures unaltered windows.
    """

    def __init__(self, spec: WindowSpec, split: str, per_clip: int, seed: int,
                 counter: CorruptCounter, starve_after: int | None = None):
        self.spec, self.split, self.per_clip, self.seed = spec, split, per_clip, seed
        self.counter, self.passes, self.starve_after = counter, 0, starve_after
        self.seen, self.windows = 0, 0
        self.augment = spec.augment if split == "train" and spec.augment.active else None

    def __call__(self, samples):
        self.passes += 1  # a new pass (epoch) cuts new windows
        rng = np.random.default_rng([_worker_seed(self.seed), self.passes])
        for sample in samples:
            self.seen += 1
            if not self.windows and self.starve_after is not None and self.seen > self.starve_after:
                raise UserError(f"no {self.split} window in {self.seen} samples: the {self.split} split is "
                                f"empty or every clip is shorter than 3 x {self.spec.frames} frames "
                                "(model.sync_frames)")
            try:
                if json.loads(sample["json"]).get("split", "train") != self.split:
                    continue
                clip = decode_clip(sample, self.spec)
            except Exception as exn:  # broken mp4/npy/json: skip and count
                self.counter(exn)
                continue
            for _ in range(self.per_clip):
                window = cut_window(clip, self.spec, rng)
                if window is None:
                    break
                if self.augment is not None:
                    augment_window(window, self.augment, rng)
                window["corrupt_skipped"] = self.counter.take()
                self.windows += 1
                yield window


def collate(windows: list[dict]) -> dict:
    """Stack windows into the batch contract; ``corrupt_skipped`` sums to a scalar tensor."""
    batch = {k: torch.stack([w[k] for w in windows]) for k in windows[0] if k != "corrupt_skipped"}
    batch["corrupt_skipped"] = torch.tensor(sum(w["corrupt_skipped"] for w in windows))
    return batch


# ------------------------------------------------------------------ seeds
def _worker_seed(seed: int) -> int:
    info = torch.utils.data.get_worker_info()
    return seed * 7919 + (info.id if info else 0)


class RankWorkerSeed:
    """Seed for ``ResampledShards``: distinct per (data seed, rank, DataLoader worker)."""

    def __init__(self, seed: int, rank: int):
        self.seed, self.rank = seed, rank

    def __call__(self) -> int:
        return _worker_seed(self.seed * 1009 + self.rank)


# ------------------------------------------------------------------ pipelines
def build_train_loader(root: str, spec: WindowSpec, *, batch_size: int, rank: int, seed: int,
                       num_workers: int = 1, shuffle_buffer: int = 64, windows_per_clip: int = 4,
                       epoch_batches: int = 1000, storage: Storage | None = None):
    """Infinite, resampled loader of training batches for one rank; ``with_epoch`` sets the epoch.

    Returns a ``wds.WebLoader`` yielding the batch contract plus ``corrupt_skipped``.
    """
    storage = storage or Storage()
    counter = CorruptCounter()
    rank_seed = seed * 1009 + rank
    tars = list_shards(root, storage, "train")
    done = contract.list_done_shards(storage, root, "train")
    starve = 100 + 10 * sum(int(s.record.get("samples", 0)) for s in done)  # ~10 passes, no window
    pipeline = wds.DataPipeline(
        wds.ResampledShards(tars, worker_seed=RankWorkerSeed(seed, rank), deterministic=True),
        lambda src: open_shards(src, storage, counter),
        lambda src: tar_file_expander(src, handler=counter),
        lambda src: group_by_keys(src, handler=counter),
        WindowCutter(spec, "train", windows_per_clip, rank_seed, counter, starve_after=starve),
        lambda src: wds.shuffle(shuffle_buffer, initial=max(1, shuffle_buffer // 2),
                                seed=_worker_seed(rank_seed))(src),
        wds.batched(batch_size, collation_fn=collate, partial=False),
    )
    loader = wds.WebLoader(pipeline, batch_size=None, num_workers=num_workers,
                           persistent_workers=num_workers > 0)
    return loader.with_epoch(epoch_batches)


def build_val_loader(root: str, spec: WindowSpec, *, batch_size: int, max_batches: int,
                     seed: int = 0, windows_per_clip: int = 1, storage: Storage | None = None):
    """Deterministic batches from the identity-disjoint ``val`` shard set (same on every rank).

    Every rank reads the same windows so the all-reduced metrics do not depend on world size.
    ``windows_per_clip`` > 1 measures more of a small val set (each clip is decoded once).
    A UserError when the set is empty (check ``has_split`` first to make validation optional).
    """
    storage = storage or Storage()
    counter = CorruptCounter()
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(list_shards(root, storage, "val")),
        lambda src: open_shards(src, storage, counter),
        lambda src: tar_file_expander(src, handler=counter),
        lambda src: group_by_keys(src, handler=counter),
        WindowCutter(spec, "val", windows_per_clip, seed, counter),
        wds.batched(batch_size, collation_fn=collate, partial=True),
        wds.slice(max_batches),
    )
    return wds.WebLoader(pipeline, batch_size=None, num_workers=0)
