"""The frozen eval set: which clips two models are compared on, pinned to the shards' bytes.

A manifest (JSON) lists sample keys, the shard each lives in with that shard's tar sha256 (from
its ``.done.json``), and the cross-audio pairing (which clip's audio drives which clip). Its own
sha256 over that content is the eval-set version. Reusing a manifest re-checks every shard's
sha256, so a changed dataset cannot silently be evaluated under an old version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.data import shards as contract
from pipelines.data.storage import Storage
from pipelines.errors import UserError

FORMAT = "iptalker-evalset/1"


@dataclass
class EvalSet:
    split: str
    samples: list[dict]        # [{"key", "shard"}] in evaluation order
    shards: dict[str, str]     # shard name -> tar sha256 (only shards holding a sample)
    cross_audio: dict[str, str]  # key -> key of the clip whose audio drives it (cross setting)
    data_root: str = ""        # where it was built (informative; the sha256s are what count)

    def content(self) -> dict:
        return {"format": FORMAT, "split": self.split, "samples": self.samples, "shards": self.shards,
                "cross_audio": self.cross_audio}

    @property
    def version(self) -> str:
        """sha256 (first 16 hex) of the canonical manifest content: the eval-set version."""
        raw = json.dumps(self.content(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        """Write the manifest atomically (tmp + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps({**self.content(), "version": self.version, "data_root": self.data_root},
                                  indent=1, sort_keys=True))
        tmp.replace(path)
        return path


def _split_keys(storage: Storage, shard: contract.DoneShard, split: str) -> list[str]:
    """Keys of ``split`` in one shard, from each sample's json (the loader's source of truth)."""
    keys = []
    for key, files in contract.iter_shard_samples(storage, shard.tar, decode=False):
        if "json" in files and json.loads(files["json"]).get("split", "train") == split:
            keys.append(key)
    return keys


def build_evalset(data_root: str, storage: Storage, *, split: str, max_clips: int, seed: int) -> EvalSet:
    """Pick up to ``max_clips`` clips of ``split`` (seeded, then sorted) and pair each with the audio
    of the next clip in the list (another clip; none when only one is picked)."""
    if split not in contract.SPLITS:
        raise UserError(f"{data_root} has no {split!r} clips to evaluate on (splits: {', '.join(contract.SPLITS)})")
    done = contract.list_done_shards(storage, data_root, split=split)  # the split's own shard set
    if not done:
        raise UserError(f"no finished shards under {data_root}; run `iptalker curate` first")
    found = [(key, s) for s in done for key in _split_keys(storage, s, split)]
    if not found:
        raise UserError(f"{data_root} has no {split!r} clips to evaluate on")
    pick = np.random.default_rng(seed).permutation(len(found))[:max_clips]
    chosen = sorted((found[i] for i in pick), key=lambda ks: ks[0])
    samples = [{"key": k, "shard": s.name} for k, s in chosen]
    shard_sha = {s.name: s.record["sha256"] for _, s in chosen}
    keys = [k for k, _ in chosen]
    cross = {k: keys[(i + 1) % len(keys)] for i, k in enumerate(keys)} if len(keys) > 1 else {}
    return EvalSet(split, samples, shard_sha, cross, data_root)


def load_evalset(path: str | Path, data_root: str, storage: Storage) -> EvalSet:
    """Read a manifest and check every shard it names still has the same sha256 under ``data_root``."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no eval-set manifest at {path}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not an eval-set manifest (bad JSON: {e})") from None
    if d.get("format") != FORMAT:
        raise UserError(f"{path}: format {d.get('format')!r}, expected {FORMAT!r}")
    es = EvalSet(d["split"], d["samples"], d["shards"], d.get("cross_audio", {}), d.get("data_root", ""))
    if d.get("version") and d["version"] != es.version:
        raise UserError(f"{path}: content does not match its version {d['version']} (edited by hand?)")
    current = {s.name: s.record.get("sha256")
               for s in contract.list_done_shards(storage, data_root, split=es.split)}
    for name, sha in es.shards.items():
        if current.get(name) != sha:
            now = current.get(name) or "missing"
            raise UserError(f"eval set {es.version} was frozen on {name} sha256 {sha[:12]}..., but "
                            f"{data_root} has {now[:12]}: the clips changed; omit --evalset to build "
                            "a new eval set (a new version)")
    return es
