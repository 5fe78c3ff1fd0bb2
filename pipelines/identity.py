"""Identity per input and the identity-disjoint train/val split.

An identity is decided on the driver before a video is processed, so every sample's json already
carries its identity and split when its shard is written (shards are never rewritten). Sources:
the parent folder name (default), a mapping file (uri or file stem -> identity), or the
``identity`` column of an input list. Clustering of dlib face descriptors is not implemented:
it needs all videos processed before any split is known, which contradicts streaming shards.

The split is a pure function of the identity (hash below ``val_fraction``, or listed in
``val_identities``): stable across runs, resumes and added data, and never mixes one face into
both splits.
"""

from __future__ import annotations

import hashlib
import io
import json

import pandas as pd

from pipelines.curate_config import CurateConfig
from pipelines.errors import UserError
from pipelines.inputs import InputItem
from pipelines.storage import Storage

UNKNOWN = "unknown"


def _stem(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]


def load_mapping(storage: Storage, uri: str) -> dict[str, str]:
    """CSV/parquet with columns (uri|stem, identity), or a JSON object {uri-or-stem: identity}."""
    data = storage.read_bytes(uri)
    if uri.endswith(".json"):
        return {str(k): str(v) for k, v in json.loads(data).items()}
    df = pd.read_parquet(io.BytesIO(data)) if uri.endswith(".parquet") else pd.read_csv(io.BytesIO(data))
    key = "uri" if "uri" in df.columns else "stem"
    if key not in df.columns or "identity" not in df.columns:
        raise UserError(f"identity mapping {uri} needs columns (uri or stem, identity), has {list(df.columns)}")
    return dict(zip(df[key].astype(str), df["identity"].astype(str)))


class IdentityResolver:
    """``identity(item)`` and ``split(identity)`` per the ``curate`` config."""

    def __init__(self, cfg: CurateConfig, storage: Storage):
        self.cfg = cfg
        self.mapping = load_mapping(storage, cfg.identity_mapping) if cfg.identity_mapping else {}

    def identity(self, item: InputItem) -> str:
        if self.mapping:
            found = self.mapping.get(item.uri) or self.mapping.get(_stem(item.uri))
            if found:
                return found
        if item.identity:
            return item.identity
        if self.cfg.identity_source == "mapping":
            return UNKNOWN
        parts = item.uri.rstrip("/").split("/")
        return parts[-2] if len(parts) >= 2 and parts[-2] else UNKNOWN

    def split(self, identity: str) -> str:
        if identity in self.cfg.val_identities:
            return "val"
        h = int(hashlib.sha256(f"{self.cfg.split_seed}:{identity}".encode()).hexdigest()[:8], 16)
        return "val" if h / 2**32 < self.cfg.val_fraction else "train"
