"""The curation stages as Ray work: a per-video task, a Whisper actor pool, a shard-write task.

Each stage adapts a pure function (``preprocessing.clips.extract_clips``,
``WhisperFeatureExtractor``, ``shards.write_shard_with_retry``) to Ray with a ``make_*_fn``
factory that sets resources. No stage raises for a bad input: it returns a row with a reason.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.data import shards
from pipelines.data.storage import Storage

if TYPE_CHECKING:  # the media stack is imported by the workers that use it, not by the driver
    from preprocessing.audio_features import WhisperFeatureExtractor
    from preprocessing.clip import Clip
    from preprocessing.clips import VideoOutcome
    from preprocessing.config import FilterConfig, PreprocessConfig, WhisperConfig
    from preprocessing.filters import SyncFilter

MESSAGE_CHARS = 300  # reject messages are one line, not a traceback


@dataclass
class Stages:
    """The per-video and per-clip functions the job runs (tests swap in small stand-ins).

    extract: ``(path, PreprocessConfig, video_id) -> VideoOutcome``;
    whisper: ``(WhisperConfig) -> extractor`` with ``.dim`` and ``.batch(audios, n_frames_list)``;
    describe: ``(path, PreprocessConfig, n_frames) -> [128] face descriptor | None`` (cluster identities).
    """

    extract: Callable[[Path, PreprocessConfig, str], VideoOutcome] | None = None
    whisper: Callable[[WhisperConfig], WhisperFeatureExtractor] | None = None
    describe: Callable[..., Any] | None = None

    def resolved(self) -> Stages:
        """Fill defaults with the real primitives (imported lazily: only workers need them)."""
        extract, whisper, describe = self.extract, self.whisper, self.describe
        if extract is None:
            from preprocessing.clips import extract_clips as extract
        if whisper is None:
            from preprocessing.audio_features import WhisperFeatureExtractor as whisper
        if describe is None:
            from preprocessing.descriptors import video_descriptor as describe
        return Stages(extract, whisper, describe)


def input_row(uri: str, video_id: str, identity: str, split: str) -> dict[str, Any]:
    """The ``index/inputs.parquet`` row of one input, rejected until proven otherwise."""
    return {"uri": uri, "video_id": video_id, "identity": identity, "split": split, "sha256": None,
            "bytes": None, "status": "rejected", "reason": "not_processed", "message": "", "clips": 0,
            "rejected_clips": 0, "clip_reject_reasons": "{}", "secs": 0.0, "media_bytes": 0, "duration_s": None, "width": None, "height": None, "fps": None}


def reject(row: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
    one_line = " ".join(str(message).split())[:MESSAGE_CHARS]
    return {**row, "status": "rejected", "reason": reason, "message": one_line, "clips": 0, "secs": 0.0,
            "media_bytes": 0}


def _clip_rejects(rejected: list[tuple[str, str]]) -> dict[str, Any]:
    """Counts of the clip candidates a filter dropped, by reason (a JSON string: flat parquet)."""
    reasons = dict(collections.Counter(reason for reason, _ in rejected))
    return {"rejected_clips": len(rejected), "clip_reject_reasons": json.dumps(reasons, sort_keys=True)}


def _encode_frames(crops: np.ndarray, fps: float) -> bytes:
    from preprocessing.encode import encode_mp4

    with tempfile.TemporaryDirectory(prefix="iptalker-clip-") as d:
        out = Path(d) / "frames.mp4"
        encode_mp4(crops, fps, out)  # [T, S, S, 3] uint8 RGB -> H.264, no audio
        return out.read_bytes()


def clip_payload(clip: Clip, row: dict[str, Any], keep_crops: bool = False) -> dict[str, Any]:
    """Everything of one clip but its Whisper features: encoded media, arrays, json, parquet row
    (plus the raw crops when the actor pool runs the A/V sync filter on them)."""
    from preprocessing.encode import encode_flac

    key = shards.sample_key(row["video_id"], int(clip.index))
    t, fps = int(clip.crops.shape[0]), float(clip.fps)
    scores = {str(k): float(v) for k, v in (clip.scores or {}).items() if v is not None}
    meta = {"key": key, "video_id": row["video_id"], "clip": int(clip.index), "source_uri": row["uri"],
            "source_sha256": row["sha256"], "start_frame": int(clip.start_frame), "end_frame": int(clip.end_frame),
            "start_s": clip.start_frame / fps, "end_s": clip.end_frame / fps, "frames": t, "fps": fps,
            "size": int(clip.crops.shape[1]), "face_size": float(clip.face_size), "scores": scores,
            "identity": row["identity"], "split": row["split"]}
    flat = {k: v for k, v in meta.items() if k not in ("scores", "key")}
    flat.update({f"score_{k}": v for k, v in scores.items()}, duration_s=t / fps)
    return {"key": key, "meta": meta, "row": flat, "frames_mp4": _encode_frames(clip.crops, fps),
            "audio_flac": encode_flac(clip.audio, shards.SAMPLE_RATE), "audio": np.asarray(clip.audio, np.float32),
            "n_frames": t, "landmarks": clip.landmarks, "affine": clip.affine,
            "crops": clip.crops if keep_crops else None}


def process_video(uri: str, row: dict[str, Any], preprocess: PreprocessConfig, storage: Storage,
                  stages: Stages) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One input -> (its inputs row, its clip payloads). Probe, decode, resample, detect/track/align,
    cut at scene changes and the max clip length, filter: all inside ``stages.extract``."""
    from preprocessing.media import MediaError

    try:
        with storage.local_copy(uri) as path:
            row = {**row, "sha256": shards.file_sha256(path), "bytes": path.stat().st_size}
            outcome = stages.resolved().extract(path, preprocess, row["video_id"])
            info = getattr(outcome, "info", None)
            if info is not None:
                row.update(duration_s=float(info.duration_s), width=int(info.width), height=int(info.height),
                           fps=float(info.fps))
            row.update(_clip_rejects(outcome.rejected_clips or []))
            if outcome.status != "accepted" or not outcome.clips:
                reason = outcome.reason or (outcome.rejected_clips[0][0] if outcome.rejected_clips else "no_clips")
                message = outcome.message or (outcome.rejected_clips[0][1] if outcome.rejected_clips else "")
                return reject(row, reason, message or "no clip passed the filters"), []
            payload = [clip_payload(c, row, keep_crops=bool(preprocess.filters.syncnet_checkpoint))
                       for c in outcome.clips]
    except MediaError as e:
        return reject(row, e.reason, str(e)), []
    except Exception as e:  # noqa: BLE001 - one bad video never fails the job
        where = traceback.extract_tb(e.__traceback__)[-1]
        return reject(row, "internal_error", f"{type(e).__name__}: {e} ({Path(where.filename).name}:{where.lineno})"), []
    secs = sum(p["n_frames"] for p in payload) / shards.FPS
    media = sum(len(p["frames_mp4"]) + len(p["audio_flac"]) for p in payload)
    return {**row, "status": "accepted", "reason": None, "message": "", "clips": len(payload), "secs": secs,
            "media_bytes": media}, payload


def estimate_bytes(row: dict[str, Any], whisper_dim: int) -> int:
    """Sample bytes of one accepted input before its features exist (for shard sizing)."""
    frames = round(row["secs"] * shards.FPS)
    return int(row["media_bytes"] + frames * (2 * whisper_dim * 2 + 68 * 2 * 4 + 6 * 4) + 2048 * row["clips"])


def load_sync_filter(cfg: FilterConfig) -> SyncFilter | None:
    """The configured A/V sync filter with its SyncNet expert loaded (weights only, never pickle),
    or None when no ``preprocess.filters.syncnet_checkpoint`` is set."""
    if not cfg.syncnet_checkpoint:
        return None
    from iptalker_model.checkpoint import load_syncnet
    from preprocessing.filters import SyncFilter

    return SyncFilter(load_syncnet(cfg.syncnet_checkpoint), cfg.min_sync_confidence, cfg.max_sync_offset)


class WhisperStage:
    """Ray actor body: loads the encoder (and the SyncNet filter, when configured) once, and turns
    clip payloads into contract samples."""

    def __init__(self, preprocess: PreprocessConfig, stages: Stages):
        self.extractor = stages.resolved().whisper(preprocess.whisper)
        self.sync = load_sync_filter(preprocess.filters)

    def dim(self) -> int:
        return int(self.extractor.dim)

    def wants_crops(self) -> bool:
        return self.sync is not None

    def featurize(self, payload: list[dict[str, Any]]) -> tuple[list[shards.Sample], list[tuple[str, str]]] | str:
        """[clip payload] -> ([Sample], [(reason, message)] of clips the sync filter dropped); an
        error string instead of raising (the writer records it against the input)."""
        try:
            from preprocessing.audio_features import features_for_clips

            feats = features_for_clips(self.extractor, [p["audio"] for p in payload], [p["n_frames"] for p in payload],
                                       [p["meta"]["start_frame"] for p in payload])
            samples, rejected = [], []
            for p, f in zip(payload, feats):
                if self.sync is not None and not self._in_sync(p, f, rejected):
                    continue
                samples.append(shards.Sample(p["key"], shards.encode_sample(
                    frames_mp4=p["frames_mp4"], audio_flac=p["audio_flac"], whisper=f, landmarks=p["landmarks"],
                    affine=p["affine"], meta=p["meta"]), p["row"]))
            return samples, rejected
        except Exception as e:  # noqa: BLE001
            return f"{type(e).__name__}: {e}"

    def _in_sync(self, p: dict[str, Any], feats: np.ndarray, rejected: list[tuple[str, str]]) -> bool:
        from preprocessing.clip import Clip

        m = p["meta"]
        clip = Clip(m["video_id"], m["clip"], m["start_frame"], m["end_frame"], p["crops"], p["landmarks"],
                    p["affine"], p["audio"], m["face_size"], m["fps"], whisper=feats)
        verdict = self.sync(clip)
        scores = {**clip.scores, "sync_confidence": float(verdict.score)}
        p["meta"]["scores"].update(scores)
        p["row"].update({f"score_{k}": v for k, v in scores.items()})
        if not verdict.keep:
            rejected.append((verdict.reason, f"clip {p['key']}: {verdict.reason} ({verdict.score:.3g})"))
        return verdict.keep


def write_shard_entries(storage: Storage, root: str, index: int, entries: list[tuple[dict, Any]],
                        retries: int, backoff_s: float) -> tuple[dict | None, str | None, list[dict]]:
    """Gather each input's samples (nested refs, fetched one by one so a failed input is dropped,
    not the shard), then write the shard. Returns (done record | None, error | None, input rows)."""
    import ray

    samples, rows = [], []
    for row, ref in entries:
        if ref is None:
            rows.append(row)
            continue
        try:
            got = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - actor died: this input fails, the shard goes on
            got = f"{type(e).__name__}: {e}"
        if isinstance(got, str):
            rows.append(reject(row, "whisper_failed", got))
            continue
        kept, dropped = got
        merged = collections.Counter(json.loads(row["clip_reject_reasons"]))
        merged.update(reason for reason, _ in dropped)
        row = {**row, "rejected_clips": sum(merged.values()), "clip_reject_reasons": json.dumps(merged, sort_keys=True)}
        if not kept:
            rows.append(reject(row, dropped[0][0] if dropped else "no_clips", dropped[0][1] if dropped else ""))
            continue
        samples.extend(kept)
        rows.append({**row, "clips": len(kept),
                     "secs": sum(s.row["duration_s"] for s in kept)})
    record, error = shards.write_shard_with_retry(storage, root, index, samples, rows, retries=retries,
                                                  backoff_s=backoff_s)
    return record, error, rows


def describe_input(uri: str, preprocess: Any, storage: Storage, stages: Stages, n_frames: int) -> np.ndarray | None:
    """The median face descriptor of one input, or None (no face, unreadable: its own stage
    rejects it later with the true reason)."""
    try:
        with storage.local_copy(uri) as path:
            return stages.resolved().describe(path, preprocess, n_frames)
    except Exception:  # noqa: BLE001 - the per-video stage reports what is wrong with the file
        return None


def describe_inputs(uris: list[str], preprocess: Any, storage: Storage, stages: Stages, cpus: float,
                    n_frames: int) -> dict[str, np.ndarray | None]:
    """Face descriptors of every input, as Ray tasks (identity clustering runs before any shard
    is written, so that every sample is born with its identity and split)."""
    import ray

    task = ray.remote(num_cpus=cpus, max_retries=1)(describe_input)
    refs = {uri: task.remote(uri, preprocess, storage, stages, n_frames) for uri in uris}
    out = {}
    for uri, ref in refs.items():
        try:
            out[uri] = ray.get(ref)
        except ray.exceptions.RayError:  # the worker died on this file: no descriptor
            out[uri] = None
    return out


def make_extract_fn(cpus: float) -> Any:
    """``process_video`` as a Ray task with two returns: the small row the driver reads, and the
    payload that goes straight to a Whisper actor (the driver never holds the media)."""
    import ray

    return ray.remote(num_cpus=cpus, num_returns=2, max_retries=1)(process_video)


def make_whisper_pool(n: int, preprocess: PreprocessConfig, stages: Stages, cpus: float, gpus: float) -> list[Any]:
    """``n`` encoder actors; on a GPU cluster each takes a GPU and runs the encoder there."""
    import ray

    if gpus > 0 and preprocess.whisper.device == "cpu":
        preprocess = dataclasses.replace(preprocess, whisper=dataclasses.replace(preprocess.whisper, device="cuda"))
    actor = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=1)(WhisperStage)
    return [actor.remote(preprocess, stages) for _ in range(max(1, n))]


def make_write_fn() -> Any:
    import ray

    return ray.remote(num_cpus=0, max_retries=2)(write_shard_entries)
