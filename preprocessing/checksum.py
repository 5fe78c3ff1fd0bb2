"""One streaming sha256 of a local file: input fingerprints, shard markers, pinned downloads."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of ``path``, read in 1 MiB blocks (constant memory for multi-GB shards)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
