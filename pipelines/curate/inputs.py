"""List the inputs of a curation job: local dirs, globs, ``s3://`` prefixes, single files, or a
parquet/CSV list of URIs (column ``uri``, optional ``identity``).

Runs on the driver and touches only listings, never file contents: a million-file corpus is
listed in a few paginated calls, and hashing happens in the workers.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import pandas as pd

from pipelines.data.storage import Storage, is_remote, is_temp
from pipelines.errors import UserError

LIST_SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True)
class InputItem:
    uri: str
    identity: str | None = None  # from an input list's ``identity`` column


def _read_list(storage: Storage, uri: str) -> list[InputItem]:
    data = storage.read_bytes(uri)
    df = pd.read_parquet(io.BytesIO(data)) if uri.endswith(".parquet") else pd.read_csv(io.BytesIO(data))
    if "uri" not in df.columns:
        raise UserError(f"input list {uri} needs a 'uri' column (has {list(df.columns)})")
    ids = df["identity"].astype(str) if "identity" in df.columns else [None] * len(df)
    return [InputItem(_absolute(str(u)), i) for u, i in zip(df["uri"], ids)]


def _absolute(uri: str) -> str:
    """Local paths absolute, so that the video id (and resume) do not depend on the cwd."""
    return uri if is_remote(uri) else os.path.abspath(uri.removeprefix("file://"))


def _wanted(uri: str, extensions: tuple[str, ...]) -> bool:
    name = uri.rsplit("/", 1)[-1]
    return not name.startswith(".") and not is_temp(uri) and name.lower().endswith(extensions)


def _expand(storage: Storage, spec: str, extensions: tuple[str, ...]) -> list[InputItem]:
    if spec.lower().endswith(LIST_SUFFIXES):
        return _read_list(storage, spec)
    if any(c in spec for c in "*?["):
        return [InputItem(u) for u in storage.glob(spec) if not storage.isdir(u) and _wanted(u, extensions)]
    if storage.isdir(spec) or (is_remote(spec) and not storage.exists(spec)):
        return [InputItem(u) for u in storage.find(spec) if _wanted(u, extensions)]
    if storage.exists(spec):
        return [InputItem(_absolute(spec))]  # named explicitly: kept whatever its extension
    raise UserError(f"input not found: {spec} (give a file, folder, glob, s3:// prefix, or .parquet/.csv list)")


def list_inputs(storage: Storage, specs: list[str], extensions: tuple[str, ...]) -> list[InputItem]:
    """All inputs named by ``specs``, de-duplicated by URI, in a stable (sorted) order."""
    seen: dict[str, InputItem] = {}
    for spec in specs:
        for item in _expand(storage, str(spec), extensions):
            if item.uri not in seen or item.identity is not None:
                seen[item.uri] = item
    if not seen:
        raise UserError(f"no inputs found under {specs} (extensions {', '.join(extensions)})")
    return [seen[u] for u in sorted(seen)]
