"""Identity per input and the identity-disjoint train/val split.

An identity is decided on the driver before a video is processed, so every sample's json already
carries its identity and split when its shard is written (shards are never rewritten). Sources:
a folder name (default: the parent; ``identity_folder_level=2`` for person/video/clip layouts),
a mapping file (uri or file stem -> identity), the ``identity`` column of an input list, or
``cluster``: every input's median dlib face descriptor (a quick pass over a few frames of each
input, run as Ray tasks before the per-video stage) grouped by average-linkage agglomerative
clustering at ``cluster_threshold``; ``folder+cluster`` clusters inside each folder. A cluster is
named after its first input (``face-<video id>``), so reruns on the same inputs name it the same.

The split is planned per identity over the listed inputs (``plan_splits``): forced
``val_identities``, then the lowest hash ranks, at least one val identity; identities that already
have committed samples keep their split, so resumes and added data never move a face from one
split to the other.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd

from pipelines.curate.config import CurateConfig
from pipelines.curate.inputs import InputItem
from pipelines.data.shards import video_id_for
from pipelines.data.storage import Storage
from pipelines.errors import UserError

log = logging.getLogger(__name__)

UNKNOWN = "unknown"  # no identity could be told (no face for clustering): always in train


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
        self.clusters: dict[str, str] = {}  # uri -> cluster identity (cluster sources)

    @property
    def needs_descriptors(self) -> bool:
        return "cluster" in self.cfg.identity_source

    def _folder(self, uri: str) -> str:
        parts = uri.rstrip("/").split("/")
        level = self.cfg.identity_folder_level
        return parts[-1 - level] if len(parts) > level and parts[-1 - level] else UNKNOWN

    def assign_clusters(self, descriptors: dict[str, np.ndarray | None]) -> dict[str, str]:
        """Cluster inputs by face descriptor ({uri: [128] or None}); inputs without one are UNKNOWN."""
        groups: dict[str, list[str]] = collections.defaultdict(list)
        for uri in sorted(descriptors):
            if descriptors[uri] is not None:
                groups[self._folder(uri) if self.cfg.identity_source == "folder+cluster" else ""].append(uri)
        self.clusters = {}
        for folder, uris in groups.items():
            labels = cluster_descriptors(np.stack([descriptors[u] for u in uris]), self.cfg.cluster_threshold)
            first: dict[int, str] = {}
            for uri, label in zip(uris, labels, strict=True):
                name = first.setdefault(int(label), f"face-{video_id_for(uri)}")
                self.clusters[uri] = f"{folder}:{name}" if folder else name
        missing = sum(d is None for d in descriptors.values())
        log.info("identity clusters: %d from %d inputs (%d without a face descriptor)",
                 len(set(self.clusters.values())), len(descriptors), missing)
        return self.clusters

    def identity(self, item: InputItem) -> str:
        if self.mapping:
            found = self.mapping.get(item.uri) or self.mapping.get(_stem(item.uri))
            if found:
                return found
        if item.identity:
            return item.identity
        if self.cfg.identity_source == "mapping":
            return UNKNOWN
        if self.needs_descriptors:
            return self.clusters.get(item.uri, UNKNOWN)
        return self._folder(item.uri)

    def check(self, identities: list[str]) -> list[str]:
        """After `plan_splits`: an empty validation split is an error (unless val_fraction=0);
        one identity holding most of many inputs is warned about loudly. Returns the warnings."""
        counts = collections.Counter(identities)
        warnings = []
        if counts and len(identities) >= 10:
            top, n = counts.most_common(1)[0]
            if n > self.cfg.identity_warn_share * len(identities):
                warnings.append(f"identity {top!r} holds {n} of {len(identities)} inputs "
                                f"(curate.identity_source={self.cfg.identity_source}): if these are several "
                                f"people, use curate.identity_source=cluster or an identity mapping")
                log.warning("WARNING: %s", warnings[-1])
        if self.cfg.val_fraction > 0 and "val" not in self.plan.values():
            raise UserError(f"no validation split: the inputs have {len(counts)} identity(ies) "
                            f"({', '.join(sorted(counts)[:3])}) under curate.identity_source="
                            f"{self.cfg.identity_source}; give more people or set curate.val_fraction=0")
        return warnings

    def plan_splits(self, identities: Iterable[str], pinned: dict[str, str]) -> dict[str, str]:
        """Fix the split of every listed identity before any sample is written.

        ``pinned``: splits of identities that already have committed samples (never changed).
        ``val_identities`` go to val; then the identities with the lowest hash until val holds
        ``val_fraction`` of them, and at least one when there are two or more identities (a small
        corpus still gets a validation face).
        """
        ids = sorted(set(identities) | set(pinned))
        plan = dict(pinned)
        if UNKNOWN in ids and UNKNOWN not in plan:
            plan[UNKNOWN] = "train"  # faceless inputs are rejected anyway: they never make up val
            ids.remove(UNKNOWN)
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


def cluster_descriptors(descriptors: np.ndarray, threshold: float) -> np.ndarray:
    """[N, 128] descriptors -> [N] int cluster labels: average-linkage agglomerative clustering,
    clusters merged while their mean pairwise Euclidean distance is below `threshold`."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(descriptors) < 2:
        return np.ones(len(descriptors), int)
    return fcluster(linkage(descriptors, method="average", metric="euclidean"), t=threshold, criterion="distance")
