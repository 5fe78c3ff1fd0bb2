"""One way to read, write, list and rename paths on local disk and ``s3://`` (fsspec + s3fs).

Lives in ``pipelines`` (not ``orchestration``) because the curation and training jobs are the
ones that touch storage, and pipelines may not import orchestration.

Why a class and not bare fsspec calls:
- the S3 endpoint and credentials come from config or the usual AWS env vars in one place;
- a ``Storage`` pickles as its config only, and builds its filesystem lazily *per process*
  (an s3fs instance made before a fork is not fork-safe), so it can be shipped to Ray workers
  and DataLoader workers;
- ``atomic_write`` is the single implementation of "temp name, then rename";
- what goes wrong with the store itself (no credentials, a missing bucket, an unreachable
  endpoint, access denied) becomes one ``StorageError`` (a UserError: one line, exit 2, in every
  verb) instead of a botocore traceback; a missing object stays a FileNotFoundError.
Credentials are never part of ``repr``/``str`` and never logged.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec

from pipelines.errors import UserError


class StorageError(UserError):
    """The store cannot be used as configured: credentials, bucket, endpoint or permissions."""


_NO_CREDENTIALS = ("NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError")
_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError",
                "ClientConnectorError", "ServerDisconnectedError", "ProxyConnectionError")
_DENIED = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
           "InvalidToken", "AllAccessDisabled", "403")


def storage_error(exc: BaseException, uri: str, endpoint: str | None) -> StorageError | None:
    """The one-line StorageError an s3fs/botocore failure on ``uri`` stands for, or None when
    it is not a problem of the store's configuration (a missing key, a bad file, ...)."""
    if not is_remote(uri) or isinstance(exc, StorageError):
        return None
    names = {t.__name__ for t in type(exc).__mro__}
    text = " ".join(str(exc).split())
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", "")) if hasattr(exc, "response") else ""
    where = endpoint or "the default AWS endpoint"
    bucket = str(uri).split("://", 1)[-1].split("/", 1)[0]
    if names & set(_NO_CREDENTIALS):
        return StorageError(f"no S3 credentials for {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                            "in the environment of this process and of every worker")
    if names & set(_UNREACHABLE):
        return StorageError(f"cannot reach the S3 endpoint {where} for {uri}: check storage.s3_endpoint_url "
                            "(or AWS_ENDPOINT_URL) and the network")
    if (isinstance(exc, FileNotFoundError) and "bucket does not exist" in text) or code == "NoSuchBucket":
        return StorageError(f"S3 bucket {bucket!r} does not exist at {where} ({uri}): create it or fix the URI")
    if isinstance(exc, PermissionError) or code in _DENIED:
        return StorageError(f"access denied to {uri} at {where} ({text[:160]}): check the credentials and "
                            "the bucket policy")
    return None


def _mapped(method):
    """Storage method decorator: store configuration failures -> ``StorageError``."""

    @functools.wraps(method)
    def wrapper(self, uri, *args, **kwargs):
        try:
            return method(self, uri, *args, **kwargs)
        except Exception as e:
            target = next((str(a) for a in (uri, *args) if isinstance(a, str) and is_remote(a)), str(uri))
            err = storage_error(e, target, self.endpoint())
            if err is None:
                raise
            raise err from None
    return wrapper


@dataclass
class StorageConfig:
    """S3 settings; anything left unset falls back to the standard AWS environment variables."""

    s3_endpoint_url: str | None = None  # e.g. http://127.0.0.1:9000 (MinIO, moto); env AWS_ENDPOINT_URL
    s3_region: str | None = None  # leave unset for us-east-1 (s3fs mkdir of a bucket fails with it)
    s3_anon: bool = False
    s3_key: str | None = None  # prefer env AWS_ACCESS_KEY_ID; never printed or logged
    s3_secret: str | None = None  # prefer env AWS_SECRET_ACCESS_KEY; never printed or logged

    def __repr__(self) -> str:  # keep secrets out of logs, tracebacks and MLflow params
        return (
            f"StorageConfig(s3_endpoint_url={self.s3_endpoint_url!r}, s3_region={self.s3_region!r}, "
            f"s3_anon={self.s3_anon}, s3_key={'***' if self.s3_key else None}, "
            f"s3_secret={'***' if self.s3_secret else None})"
        )

    def public_dict(self) -> dict[str, Any]:
        """The config without credentials: what may be logged."""
        return {"s3_endpoint_url": self.s3_endpoint_url, "s3_region": self.s3_region, "s3_anon": self.s3_anon}


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def join(uri: str, *parts: str) -> str:
    """Join path parts with '/', for local paths and URIs alike."""
    out = str(uri).rstrip("/")
    for p in parts:
        out = f"{out}/{str(p).strip('/')}"
    return out


class Storage:
    """fsspec filesystems for the protocols a URI names, configured once."""

    def __init__(self, cfg: StorageConfig | None = None):
        self.cfg = cfg or StorageConfig()
        self._fs: dict[str, tuple[int, fsspec.AbstractFileSystem]] = {}

    def __getstate__(self) -> dict:
        return {"cfg": self.cfg}

    def __setstate__(self, state: dict) -> None:
        self.cfg = state["cfg"]
        self._fs = {}

    def __repr__(self) -> str:
        return f"Storage({self.cfg!r})"

    # -- filesystem resolution -------------------------------------------------------------
    def endpoint(self) -> str | None:
        """The S3 endpoint URL in use (config, then the AWS environment); None: AWS itself."""
        return self.cfg.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")

    def s3_options(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` (contain credentials: never log)."""
        c = self.cfg
        endpoint = self.endpoint()
        opts: dict[str, Any] = {"anon": c.s3_anon}
        if c.s3_key or c.s3_secret:
            opts.update(key=c.s3_key, secret=c.s3_secret)
        client_kwargs: dict[str, Any] = {}
        if endpoint:
            opts["endpoint_url"] = endpoint
        if c.s3_region:
            client_kwargs["region_name"] = c.s3_region
        if client_kwargs:
            opts["client_kwargs"] = client_kwargs
        return opts

    def fs(self, uri: str) -> fsspec.AbstractFileSystem:
        protocol = str(uri).split("://", 1)[0] if is_remote(uri) else "file"
        cached = self._fs.get(protocol)
        if cached and cached[0] == os.getpid():
            return cached[1]
        if protocol in ("s3", "s3a"):
            import s3fs

            fs = s3fs.S3FileSystem(skip_instance_cache=True, **self.s3_options())
        else:
            fs = fsspec.filesystem(protocol)
        self._fs[protocol] = (os.getpid(), fs)
        return fs

    def _path(self, uri: str) -> str:
        uri = str(uri)
        if uri.startswith("file://"):
            return uri[len("file://") :]
        if uri.startswith("s3a://"):
            return uri[len("s3a://") :]
        if uri.startswith("s3://"):
            return uri[len("s3://") :]
        return uri

    def _uri(self, template: str, path: str) -> str:
        """Re-attach the protocol of ``template`` to a bare path an fsspec call returned."""
        return f"s3://{path}" if is_remote(template) else path

    # -- operations -----------------------------------------------------------------------
    @_mapped
    def open(self, uri: str, mode: str = "rb", **kwargs: Any) -> IO:
        if "w" in mode and not is_remote(uri):
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        return self.fs(uri).open(self._path(uri), mode, **kwargs)

    @_mapped
    def exists(self, uri: str) -> bool:
        return self.fs(uri).exists(self._path(uri))

    @_mapped
    def isdir(self, uri: str) -> bool:
        return self.fs(uri).isdir(self._path(uri))

    @_mapped
    def size(self, uri: str) -> int:
        return int(self.fs(uri).size(self._path(uri)))

    @_mapped
    def read_bytes(self, uri: str) -> bytes:
        with self.open(uri, "rb") as f:
            return f.read()

    @_mapped
    def write_bytes(self, uri: str, data: bytes) -> None:
        """Atomic: readers see the old file or the whole new one, never a part."""
        with self.atomic_write(uri) as f:
            f.write(data)

    def makedirs(self, uri: str) -> None:
        if is_remote(uri):
            return  # object stores have no directories
        Path(uri).mkdir(parents=True, exist_ok=True)

    @_mapped
    def ls(self, uri: str) -> list[str]:
        """Entries directly under ``uri`` (full URIs, sorted); empty when it does not exist."""
        fs = self.fs(uri)
        path = self._path(uri)
        if not fs.exists(path):
            self._check_bucket(uri)
            return []
        fs.invalidate_cache(path)
        return sorted(self._uri(uri, p) for p in fs.ls(path, detail=False))

    @_mapped
    def glob(self, pattern: str) -> list[str]:
        fs = self.fs(pattern)
        fs.invalidate_cache()
        return sorted(self._uri(pattern, p) for p in fs.glob(self._path(pattern)))

    @_mapped
    def find(self, uri: str) -> list[str]:
        """All files below ``uri`` (recursive), sorted."""
        fs = self.fs(uri)
        fs.invalidate_cache()
        path = self._path(uri)
        if not fs.exists(path):
            self._check_bucket(uri)
            return []
        return sorted(self._uri(uri, p) for p in fs.find(path))

    def _check_bucket(self, uri: str) -> None:
        """An empty listing of a missing bucket is a configuration error, not an empty folder."""
        if is_remote(uri):
            bucket = self._path(uri).split("/", 1)[0]
            if not self.fs(uri).exists(bucket):
                raise FileNotFoundError("The specified bucket does not exist")

    @_mapped
    def rename(self, src: str, dst: str) -> None:
        """Atomic on local disk (os.replace); copy+delete on S3, where readers rely on markers."""
        if not is_remote(src) and not is_remote(dst):
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            return
        self.fs(src).mv(self._path(src), self._path(dst))

    @_mapped
    def rm(self, uri: str, recursive: bool = False) -> None:
        fs = self.fs(uri)
        path = self._path(uri)
        if fs.exists(path):
            fs.rm(path, recursive=recursive)

    @_mapped
    def put(self, local_path: str | Path, uri: str) -> None:
        """Upload a local file (atomically on local disk: copy to temp, then rename)."""
        if is_remote(uri):
            self.fs(uri).put_file(str(local_path), self._path(uri))
            return
        tmp = temp_name(uri)
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, uri)

    @_mapped
    def get(self, uri: str, local_path: str | Path) -> None:
        self.fs(uri).get_file(self._path(uri), str(local_path))

    @contextlib.contextmanager
    def atomic_write(self, uri: str, mode: str = "wb") -> Iterator[IO]:
        """Write to a temp name beside ``uri`` and rename on success; remove the temp on error."""
        tmp = temp_name(uri)
        try:
            with self.open(tmp, mode) as f:
                yield f
            self.rename(tmp, uri)
        except BaseException:
            with contextlib.suppress(Exception):
                self.rm(tmp)
            raise

    @contextlib.contextmanager
    def local_copy(self, uri: str) -> Iterator[Path]:
        """A local path with the content of ``uri`` (the path itself when already local).

        Decoders such as decord need a real file; remote objects are downloaded to a temp dir
        that is removed on exit.
        """
        if not is_remote(uri):
            yield Path(self._path(uri))
            return
        with tempfile.TemporaryDirectory(prefix="iptalker-") as d:
            local = Path(d) / Path(self._path(uri)).name
            self.get(uri, local)
            yield local


TEMP_MARK = ".tmp-"


def temp_name(uri: str) -> str:
    """A unique hidden sibling name; readers skip names that contain ``TEMP_MARK``."""
    head, _, tail = str(uri).rstrip("/").rpartition("/")
    name = f"{TEMP_MARK}{uuid.uuid4().hex[:12]}-{tail}"
    return f"{head}/{name}" if head else name


def is_temp(uri: str) -> bool:
    return TEMP_MARK in str(uri).rsplit("/", 1)[-1]
