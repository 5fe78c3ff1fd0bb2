"""The dataset's index and lineage: resume state, ``index/{inputs,clips}.parquet``, ``dataset.json``.

Everything here is derived from the committed shards (their ``done.json`` input rows and their
parquet), plus the rows of inputs this run could not commit, so a resumed run rebuilds a complete
index and a crashed run never leaves an index that disagrees with the shards.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.data import shards
from pipelines.data.geometry import GEOMETRY_KEY
from pipelines.data.storage import Storage, join

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


def prepare_output(storage: Storage, root: str, overwrite: bool) -> tuple[dict[str, dict], int]:
    """Start over (``overwrite``) or resume: remove what a crash left half-written, and return
    (committed input rows by uri, the next free shard index)."""
    if overwrite:
        for part in (shards.SHARDS_DIR, shards.INDEX_DIR, shards.REPORT_DIR):
            storage.rm(join(root, part), recursive=True)
        storage.rm(join(root, shards.DATASET_JSON))
    shards.remove_incomplete(storage, root)
    done = shards.list_done_shards(storage, root)
    committed: dict[str, dict] = {}
    for shard in done:
        for row in shard.record.get("inputs", []):
            committed.setdefault(row["uri"], row)
    next_index = max((shards.shard_index(s.name) for s in done), default=-1) + 1
    return committed, next_index


def _write_parquet(storage: Storage, uri: str, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    storage.write_bytes(uri, buf.getvalue())


def build_index(storage: Storage, root: str, listed_uris: list[str],
                uncommitted: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, list[shards.DoneShard]]:
    """Write ``index/inputs.parquet`` (every input: committed rows, then this run's failures, then
    anything listed but unaccounted as ``not_processed``) and ``index/clips.parquet``."""
    done = shards.list_done_shards(storage, root)
    rows: dict[str, dict] = {}
    for shard in done:
        for row in shard.record.get("inputs", []):
            rows.setdefault(row["uri"], {**row, "shard": shard.name if row.get("clips") else None})
    for row in uncommitted:
        rows.setdefault(row["uri"], {**row, "shard": None})
    for uri in listed_uris:
        rows.setdefault(uri, {"uri": uri, "status": "rejected", "reason": "not_processed",
                              "message": "no result was recorded for this input", "clips": 0})
    inputs = pd.DataFrame(sorted(rows.values(), key=lambda r: r["uri"]))
    clip_frames = [pd.read_parquet(io.BytesIO(storage.read_bytes(s.parquet))) for s in done if s.record["samples"]]
    clips = pd.concat(clip_frames, ignore_index=True) if clip_frames else pd.DataFrame(columns=["key", "shard"])
    duplicated = clips.loc[clips["key"].duplicated(), "key"].tolist()
    if duplicated:  # only possible if a dead driver's write task committed after a rerun started
        log.warning("%d sample keys occur in two committed shards, e.g. %s", len(duplicated), duplicated[:3])
    _write_parquet(storage, join(root, shards.INPUTS_PARQUET), inputs)
    _write_parquet(storage, join(root, shards.CLIPS_PARQUET), clips)
    return inputs, clips, done


def code_version() -> str:
    """Package version + git commit (``-dirty`` when the tree has changes), when available."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("iptalker")
    except PackageNotFoundError:
        v = "unknown"
    try:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{v}+g{sha}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return v


def counts(inputs: pd.DataFrame, clips: pd.DataFrame, done: list[shards.DoneShard]) -> dict[str, Any]:
    accepted = inputs[inputs["status"] == "accepted"]
    split = clips["split"].value_counts().to_dict() if "split" in clips else {}
    ids = clips.groupby("split")["identity"].nunique().to_dict() if len(clips) else {}
    return {
        "inputs": len(inputs), "accepted": len(accepted), "rejected": int((inputs["status"] != "accepted").sum()),
        "rejected_by_reason": inputs.loc[inputs["status"] != "accepted", "reason"].value_counts().to_dict(),
        "clips": len(clips), "hours": float(clips["duration_s"].sum() / 3600) if "duration_s" in clips else 0.0,
        "clips_by_split": {str(k): int(v) for k, v in split.items()},
        "identities_by_split": {str(k): int(v) for k, v in ids.items()},
        "shards": len(done), "shard_bytes": int(sum(s.record["bytes"] for s in done)),
    }


def write_dataset_json(storage: Storage, root: str, version: str | None, configs: dict[str, Any],
                       summary_counts: dict[str, Any], done: list[shards.DoneShard],
                       geometry: dict[str, Any]) -> dict[str, Any]:
    """``dataset.json``: the lineage MLflow logs. ``version`` defaults to a hash of the shards.
    ``geometry``: crop size, alignment template and mask (``pipelines.data.geometry``)."""
    content = hashlib.sha256("".join(s.record["sha256"] for s in done).encode()).hexdigest()[:16]
    doc = {
        "version": version or content, "content_sha256": content, "created_unix": time.time(),
        "code_version": code_version(), GEOMETRY_KEY: geometry,
        "config": {k: asdict(v) if is_dataclass(v) else v for k, v in configs.items()},
        "counts": summary_counts,
        "shards": [{"name": s.name, "samples": s.record["samples"], "bytes": s.record["bytes"],
                    "sha256": s.record["sha256"]} for s in done],
    }
    storage.write_bytes(join(root, shards.DATASET_JSON), json.dumps(doc, indent=1, default=str).encode())
    return doc
