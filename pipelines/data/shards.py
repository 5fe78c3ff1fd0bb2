"""The curated-dataset contract (docs/data-contract.md): names, sample layout, writer, reader.

One source of truth for the on-disk format. The writer commits a shard in three steps, each an
atomic rename or an atomic object PUT: ``shard-NNNNNN.tar``, then ``shard-NNNNNN.parquet`` (one row
per sample), then ``shard-NNNNNN.done.json`` LAST. A shard without its ``done.json`` does not exist
for any reader (``list_done_shards``) and is deleted by the next run (``remove_incomplete``).
``done.json`` also lists the inputs the shard *finishes* (accepted ones whose samples are all in it,
rejected ones that completed since the previous shard), so it is the job's resume ledger too: the
shard and the accounting of its inputs become visible in one atomic step.

Samples contain only ``.npy`` (``allow_pickle=False``), ``.json``, ``.flac`` and ``.mp4``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.data.storage import Storage, is_temp, join, temp_name

# -- layout -----------------------------------------------------------------------------------
SHARDS_DIR = "shards"
INDEX_DIR = "index"
REPORT_DIR = "report"
DATASET_JSON = "dataset.json"
INPUTS_PARQUET = "index/inputs.parquet"
CLIPS_PARQUET = "index/clips.parquet"
SHARD_PREFIX = "shard-"
DONE_SUFFIX = ".done.json"

# -- sample content ---------------------------------------------------------------------------
FPS = 25
SAMPLE_RATE = 16000
CROP_SIZE = 256  # default; the real size is in each sample's json ("size")
WHISPER_TOKENS_PER_FRAME = 2  # whisper.npy is [2 * T, D]
SAMPLE_FIELDS = ("frames.mp4", "audio.flac", "whisper.npy", "landmarks.npy", "affine.npy", "json")
ALLOWED_EXTENSIONS = (".npy", ".json", ".flac", ".mp4")  # nothing else is ever decoded
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")  # webdataset splits keys at the first dot: no dots


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:06d}"


def shard_index(name: str) -> int:
    """``.../shard-000012.done.json`` -> 12."""
    return int(name.rsplit("/", 1)[-1][len(SHARD_PREFIX) :][:6])


def sample_key(video_id: str, clip_index: int) -> str:
    key = f"{video_id}-{clip_index:04d}"
    if not KEY_RE.match(key):
        raise ValueError(f"sample key {key!r} must match {KEY_RE.pattern}")
    return key


def video_id_for(uri: str, max_stem: int = 40) -> str:
    """Stable id of an input: sanitised file stem + 12 hex of sha256(uri); no dots, no slashes."""
    stem = str(uri).rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")[:max_stem] or "video"
    return f"{stem}_{hashlib.sha256(str(uri).encode()).hexdigest()[:12]}"


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_sample(*, frames_mp4: bytes, audio_flac: bytes, whisper: np.ndarray, landmarks: np.ndarray,
                  affine: np.ndarray, meta: dict[str, Any]) -> dict[str, bytes]:
    """One sample's files (suffix -> bytes), with the contract's shapes and dtypes enforced.

    whisper: [2T, D] (stored float16); landmarks: [T, 68, 2] float32; affine: [T, 2, 3] float32.
    """
    t = landmarks.shape[0]
    if landmarks.shape[1:] != (68, 2) or affine.shape != (t, 2, 3):
        raise ValueError(f"landmarks {landmarks.shape} / affine {affine.shape} do not match T={t}")
    if whisper.ndim != 2 or whisper.shape[0] != WHISPER_TOKENS_PER_FRAME * t:
        raise ValueError(f"whisper features {whisper.shape} must be [{WHISPER_TOKENS_PER_FRAME * t}, D]")
    return {
        "frames.mp4": frames_mp4,
        "audio.flac": audio_flac,
        "whisper.npy": npy_bytes(whisper.astype(np.float16)),
        "landmarks.npy": npy_bytes(landmarks.astype(np.float32)),
        "affine.npy": npy_bytes(affine.astype(np.float32)),
        "json": json.dumps(meta, sort_keys=True).encode(),
    }


def decode_sample(files: dict[str, bytes]) -> dict[str, Any]:
    """Inverse of ``encode_sample`` for our own reader: arrays and dict; media stays bytes."""
    out: dict[str, Any] = {}
    for suffix, data in files.items():
        if suffix.endswith(".npy"):
            out[suffix] = load_npy(data)
        elif suffix == "json" or suffix.endswith(".json"):
            out[suffix] = json.loads(data)
        elif suffix.endswith((".mp4", ".flac")):
            out[suffix] = data
        else:
            raise ValueError(f"refusing to decode {suffix!r}: only {ALLOWED_EXTENSIONS} are allowed")
    return out


# -- writer -----------------------------------------------------------------------------------
@dataclass
class Sample:
    key: str
    files: dict[str, bytes]  # suffix ("frames.mp4", "json", ...) -> content
    row: dict[str, Any]  # the shard parquet / clips.parquet row (flat scalars)

    def nbytes(self) -> int:
        return sum(len(v) for v in self.files.values())


def _write_tar(samples: Sequence[Sample], path: Path) -> None:
    """Deterministic tar: sample files contiguous, fixed order, mtime 0 (same input, same bytes)."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for s in samples:
            if not KEY_RE.match(s.key):
                raise ValueError(f"bad sample key {s.key!r}")
            for suffix in SAMPLE_FIELDS:
                if suffix not in s.files:
                    raise ValueError(f"sample {s.key} lacks {suffix}")
                info = tarfile.TarInfo(f"{s.key}.{suffix}")
                info.size, info.mode, info.mtime = len(s.files[suffix]), 0o644, 0
                tar.addfile(info, io.BytesIO(s.files[suffix]))


def file_sha256(path: Path) -> str:
    """Streaming sha256 of a local file (1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_shard(storage: Storage, root: str, index: int, samples: Sequence[Sample],
                inputs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Write shard ``index`` under ``<root>/shards`` (tar, parquet, then done.json last).

    ``inputs``: the rows of the inputs this shard finishes (see module docstring). Returns the
    done record. Each file goes to a temp name and is renamed; a failure leaves no done.json.
    """
    name = shard_name(index)
    base = join(root, SHARDS_DIR, name)
    rows = [{**s.row, "key": s.key, "shard": name, "bytes": s.nbytes()} for s in samples]
    with tempfile.TemporaryDirectory(prefix="iptalker-shard-") as d:
        tar_path, pq_path = Path(d) / f"{name}.tar", Path(d) / f"{name}.parquet"
        _write_tar(samples, tar_path)
        pd.DataFrame(rows, columns=list(rows[0]) if rows else ["key", "shard", "bytes"]).to_parquet(pq_path, index=False)
        record = {
            "shard": name, "samples": len(samples), "bytes": tar_path.stat().st_size,
            "sha256": file_sha256(tar_path), "parquet_sha256": file_sha256(pq_path),
            "keys": [s.key for s in samples], "inputs": list(inputs), "created_unix": time.time(),
        }
        for local, suffix in ((tar_path, ".tar"), (pq_path, ".parquet")):
            tmp = temp_name(base + suffix)  # readers never see a partial tar (S3: server-side copy)
            storage.put(local, tmp)
            storage.rename(tmp, base + suffix)
    storage.write_bytes(base + DONE_SUFFIX, json.dumps(record, sort_keys=True).encode())
    return record


def write_shard_with_retry(storage: Storage, root: str, index: int, samples: Sequence[Sample],
                           inputs: Sequence[dict[str, Any]], *, retries: int = 3,
                           backoff_s: float = 1.0) -> tuple[dict[str, Any] | None, str | None]:
    """``write_shard`` retried with exponential backoff; returns (record, None) or (None, error)."""
    error = None
    for attempt in range(retries + 1):
        try:
            return write_shard(storage, root, index, samples, inputs), None
        except Exception as e:  # noqa: BLE001 - any storage error is retried, then reported
            error = f"{type(e).__name__}: {e}"
            remove_shard(storage, root, index)
            if attempt < retries:
                time.sleep(backoff_s * 2**attempt)
    return None, error


# -- reader -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DoneShard:
    name: str
    tar: str
    parquet: str
    record: dict[str, Any]  # the done.json content


def list_done_shards(storage: Storage, root: str) -> list[DoneShard]:
    """The committed shards under ``<root>/shards`` (those with a done.json), in index order."""
    out = []
    for uri in storage.ls(join(root, SHARDS_DIR)):
        if uri.endswith(DONE_SUFFIX) and not is_temp(uri):
            base = uri[: -len(DONE_SUFFIX)]
            record = json.loads(storage.read_bytes(uri))
            out.append(DoneShard(base.rsplit("/", 1)[-1], base + ".tar", base + ".parquet", record))
    return sorted(out, key=lambda s: s.name)


def remove_shard(storage: Storage, root: str, index: int) -> None:
    base = join(root, SHARDS_DIR, shard_name(index))
    for suffix in (DONE_SUFFIX, ".parquet", ".tar"):  # done.json first: the shard stops existing
        storage.rm(base + suffix)


def remove_incomplete(storage: Storage, root: str) -> list[str]:
    """Delete temp files and shard files that have no done.json (what a crash leaves behind)."""
    entries = storage.ls(join(root, SHARDS_DIR))
    done = {u[: -len(DONE_SUFFIX)] for u in entries if u.endswith(DONE_SUFFIX) and not is_temp(u)}
    removed = []
    for uri in entries:
        base = uri.rsplit(".", 2)[0] if uri.endswith(DONE_SUFFIX) else uri.rsplit(".", 1)[0]
        if is_temp(uri) or base not in done:
            storage.rm(uri, recursive=True)
            removed.append(uri)
    return removed


def iter_shard_samples(storage: Storage, tar_uri: str, *, decode: bool = True) -> Iterator[tuple[str, dict]]:
    """(key, files) for each sample of one shard tar; ``decode`` loads npy/json (never pickle)."""
    with storage.open(tar_uri, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        key, files = None, {}
        for member in tar:
            if not member.isfile():
                continue
            k, _, suffix = member.name.rsplit("/", 1)[-1].partition(".")
            if k != key and key is not None:
                yield key, decode_sample(files) if decode else files
                files = {}
            key = k
            files[suffix] = tar.extractfile(member).read()
        if key is not None:
            yield key, decode_sample(files) if decode else files
