"""Refuse a model that cannot dub with this configuration, before any frame is decoded.

A model only works with the Whisper encoder its training data was featurised with (another
encoder's states are noise to it) and with the crop/mask geometry it was trained on. The bundle
records both (``bundle.json``: ``whisper``, ``model``, optionally ``geometry``); this compares them
with the configured encoder and alignment. Each mismatch is one line (``UserError``, exit 2).
"""

from __future__ import annotations

import functools
from pathlib import Path

from pipelines.data.bundle import Bundle
from pipelines.data.shards import file_sha256
from pipelines.errors import UserError
from preprocessing.config import PreprocessConfig, WhisperConfig


@functools.cache
def _sha256(path: str) -> str:
    return file_sha256(Path(path))


def whisper_identity(cfg: WhisperConfig) -> dict:
    """The configured encoder as a bundle records it: ``{"sha256"}`` of the checkpoint file, or
    ``{"random_init": True, "model_name", "seed"}`` for the seeded random encoder (tests, demo)."""
    if cfg.checkpoint:
        path = cfg.checkpoint.removeprefix("file://")
        if not Path(path).is_file():
            raise UserError(f"preprocess.whisper.checkpoint={cfg.checkpoint!r}: no such file")
        return {"sha256": _sha256(path), "random_init": False}
    return {"random_init": True, "model_name": cfg.model_name, "seed": cfg.seed}


def whisper_mismatch(recorded: dict, configured: dict) -> str | None:
    """Why an encoder recorded as ``recorded`` differs from ``configured`` (one line), or None.

    Compares the sha256 when both have one; a random-init encoder matches only the same
    architecture and seed. A bundle that records nothing is accepted (older exports).
    """
    if not recorded:
        return None
    if recorded.get("sha256") or configured.get("sha256"):
        if recorded.get("sha256") != configured.get("sha256"):
            return (f"the model was trained on Whisper features of encoder sha256 {recorded.get('sha256') or 'random-init'}"
                    f" but preprocess.whisper is {configured.get('sha256') or 'random-init'}: set "
                    "preprocess.whisper.checkpoint to the encoder the model was trained with")
        return None
    for key in ("model_name", "seed"):
        if key in recorded and recorded[key] != configured.get(key):
            return (f"the model was trained on random-init Whisper {key}={recorded[key]!r} but "
                    f"preprocess.whisper.{key}={configured.get(key)!r}")
    return None


def geometry_mismatch(bundle: Bundle, preprocess: PreprocessConfig) -> str | None:
    """Why the bundle's recorded alignment template differs from ``preprocess.align`` (or None)."""
    geometry = bundle.meta.get("geometry") or bundle.meta.get("dataset", {}).get("geometry") or {}
    template = geometry.get("template") or {}
    align = preprocess.align
    for key, mine in (("scale", align.template_scale), ("shift_y", align.template_shift_y)):
        if key in template and abs(float(template[key]) - float(mine)) > 1e-9:
            return (f"the model was trained on crops with alignment template {key}={template[key]!r} but "
                    f"preprocess.align.template_{key}={mine!r}: use the training data's alignment settings")
    return None


def check_bundle(bundle: Bundle, preprocess: PreprocessConfig, encoder_dim: int, model_audio_dim: int) -> None:
    """Raise UserError (one line) if the bundle cannot dub with ``preprocess`` and this encoder width."""
    if model_audio_dim != encoder_dim:
        raise UserError(f"model {bundle.root}: expects Whisper width {model_audio_dim} but the configured "
                        f"encoder (preprocess.whisper) gives {encoder_dim}")
    why = whisper_mismatch(bundle.whisper, whisper_identity(preprocess.whisper)) or geometry_mismatch(bundle, preprocess)
    if why:
        raise UserError(f"model {bundle.root}: {why}")
