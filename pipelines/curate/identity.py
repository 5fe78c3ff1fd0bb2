"""Identity per input and the identity-disjoint train/val split.

An identity is decided on the driver before a video is processed, so every sample's json already
carries its identity and split when its shard is written (shards are never rewritten). Sources:
the parent folder name (default), a mapping file (uri or file stem -> identity), or the
``identity`` column of an input list. Clustering of dlib face descriptors is not implemented:
it needs all videos processed before any split is known, which contradicts streaming shards.

The split is planned per identity over the listed inputs (``plan_splits``): forced
``val_identities``, then the lowest hash ranks, at least one val identity; identities that already
have committed samples keep their split, so resumes and added data never move a face from one
split to the other.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable

import pandas as pd

from pipelines.curate.config import CurateConfig
from pipelines.curate.inputs import InputItem
from pipelines.data.storage import Storage
from pipelines.errors import UserError

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
        self.plan: dict[str, str] = {}

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

    def plan_splits(self, identities: Iterable[str], pinned: dict[str, str]) -> dict[str, str]:
        """Fix the split of every listed identity before any sample is written.

        ``pinned``: splits of identities that already have committed samples (never changed).
        ``val_identities`` go to val; then the identities with the lowest hash until val holds
        ``val_fraction`` of them, and at least one when there are two or more identities (a small
        corpus still gets a validation face).
        """
        ids = sorted(set(identities) | set(pinned))
        plan = dict(pinned)
        plan.update({i: "val" for i in ids if i not in plan and i in self.cfg.val_identities})
        target = round(self.cfg.val_fraction * len(ids))
        if self.cfg.val_fraction > 0 and len(ids) >= 2:
            target = max(1, target)
        free = sorted((i for i in ids if i not in plan), key=self._rank)
        need = max(0, target - sum(v == "val" for v in plan.values()))
        plan.update({i: "val" if k < need else "train" for k, i in enumerate(free)})
        self.plan = plan
        return plan

    def split(self, identity: str) -> str:
        """The planned split; an identity outside the plan falls back to the hash rule."""
        if identity in self.plan:
            return self.plan[identity]
        if identity in self.cfg.val_identities:
            return "val"
        return "val" if self._rank(identity) < self.cfg.val_fraction else "train"

    def _rank(self, identity: str) -> float:
        """A stable pseudo-random number in [0, 1) per identity (seeded by ``split_seed``)."""
        return int(hashlib.sha256(f"{self.cfg.split_seed}:{identity}".encode()).hexdigest()[:8], 16) / 2**32
