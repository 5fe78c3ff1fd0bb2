"""A model bundle: the one folder that ``evaluate``, ``dub`` and the registry load a trained model from.

Layout (``<dir>/``)::

    bundle.json    {"format", "model": ModelConfig dict, "whisper": encoder identity,
                    "dataset": lineage of the training data, "created"}
    iptalker.pt    fp32 IPTalker weights (``iptalker_model.checkpoint`` format, weights_only)
    syncnet.pt     fp32 SyncNet expert the model was trained against (sync metrics, dub report)

A bundle is addressed by a URI: a local bundle folder, a local ``iptalker.pt`` exported by
``iptalker export`` (its SyncNet then comes from ``--syncnet`` / the caller), or
``models:/NAME@alias`` / ``models:/NAME/VERSION`` (the registry's pyfunc, whose artifacts hold the
bundle folder). Nothing here unpickles: weights load with ``weights_only=True``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import UserError

FORMAT = "iptalker-bundle/1"
BUNDLE_JSON = "bundle.json"
IPTALKER_WEIGHTS = "iptalker.pt"
SYNCNET_WEIGHTS = "syncnet.pt"
ARTIFACT_KEY = "bundle"  # the pyfunc artifact name that holds the bundle folder


@dataclass
class Bundle:
    """A resolved bundle on local disk. ``syncnet`` may be None for a bare exported file."""

    root: Path
    iptalker: Path
    syncnet: Path | None
    meta: dict = field(default_factory=dict)

    @property
    def whisper(self) -> dict:
        """The Whisper encoder identity the model was trained with (``sha256``, ``random_init``...)."""
        return self.meta.get("whisper", {})

    def weights_sha256(self) -> str:
        """One sha256 over the IPTalker weights then the SyncNet weights (if any): which model an
        evaluation measured, so ``register --evaluation`` can refuse metrics of another model."""
        import hashlib

        from preprocessing.checksum import file_sha256

        parts = [file_sha256(self.iptalker)] + ([file_sha256(self.syncnet)] if self.syncnet else [])
        return hashlib.sha256(" ".join(parts).encode()).hexdigest()

    def load_models(self, device: str = "cpu"):
        """(IPTalker, SyncNet | None) in eval mode on ``device``."""
        from iptalker_model.checkpoint import load_iptalker, load_syncnet

        g = load_iptalker(self.iptalker, map_location=device).eval()
        s = load_syncnet(self.syncnet, map_location=device).eval() if self.syncnet else None
        return g, s


def write_bundle(out_dir: str | Path, iptalker_weights: str | Path, syncnet_weights: str | Path,
                 *, whisper: dict, dataset: dict | None = None, extra: dict | None = None) -> Path:
    """Copy the two weight files into ``out_dir`` and write ``bundle.json`` last (it marks it whole)."""
    from iptalker_model.checkpoint import load_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / BUNDLE_JSON).unlink(missing_ok=True)
    shutil.copyfile(iptalker_weights, out / IPTALKER_WEIGHTS)
    shutil.copyfile(syncnet_weights, out / SYNCNET_WEIGHTS)
    meta = {"format": FORMAT, "model": load_config(out / IPTALKER_WEIGHTS).to_dict(),
            "whisper": dict(whisper), "dataset": dict(dataset or {}),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(extra or {})}
    tmp = out / (BUNDLE_JSON + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, default=str))
    tmp.replace(out / BUNDLE_JSON)
    return out


def _from_dir(root: Path) -> Bundle:
    meta_path = root / BUNDLE_JSON
    if not meta_path.is_file():
        raise UserError(f"{root} is not a model bundle (no {BUNDLE_JSON}); write one with "
                        "`iptalker export --run-dir RUN --out DIR --bundle` or pass an exported .pt file")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise UserError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    syncnet = root / SYNCNET_WEIGHTS
    return Bundle(root, root / IPTALKER_WEIGHTS, syncnet if syncnet.is_file() else None, meta)


def _from_registry(uri: str, cache_dir: str | Path | None) -> Bundle:
    """Download only the bundle folder of a registered pyfunc (never its Python code).

    MLflow 3 stores a pyfunc artifact under ``artifacts/<source folder name>``, not under its key,
    so the path comes from the model's ``MLmodel`` (``python_function.artifacts.bundle.path``).
    """
    import mlflow
    import yaml

    base = uri.rstrip("/")
    try:
        mlmodel = mlflow.artifacts.load_text(base + "/MLmodel")
        artifacts = (yaml.safe_load(mlmodel).get("flavors", {}).get("python_function", {})
                     .get("artifacts") or {})
        if ARTIFACT_KEY not in artifacts:
            raise UserError(f"model {uri!r} has no {ARTIFACT_KEY!r} artifact: it was not "
                            "registered by `iptalker register`")
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{base}/{artifacts[ARTIFACT_KEY]['path']}", dst_path=cache_dir)
    except UserError:
        raise
    except Exception as e:  # unknown name/alias/version, unreachable server
        raise UserError(f"model {uri!r} does not resolve: {str(e).splitlines()[0]}") from None
    return _from_dir(Path(local))


def resolve_bundle(uri: str, *, syncnet: str | Path | None = None,
                   cache_dir: str | Path | None = None) -> Bundle:
    """A model URI -> a local :class:`Bundle` (see the module docstring for the accepted URIs).

    ``syncnet`` overrides/sets the SyncNet expert (needed for a bare exported ``.pt``).
    Raises UserError (one line) when the URI does not resolve to a model.
    """
    if uri.startswith("models:/"):
        bundle = _from_registry(uri, cache_dir)
    else:
        p = Path(uri)
        if p.is_dir():
            bundle = _from_dir(p)
        elif p.is_file():
            sidecar = p.with_suffix(p.suffix + ".json")
            meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
            bundle = Bundle(p.parent, p, None, meta)
        else:
            raise UserError(f"no model at {uri!r} (expected a bundle folder, an exported .pt or "
                            "models:/NAME@alias)")
    if syncnet:
        if not Path(syncnet).is_file():
            raise UserError(f"no SyncNet weights at {syncnet!r}")
        bundle.syncnet = Path(syncnet)
    return bundle
