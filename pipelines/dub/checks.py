"""Refuse a model that cannot dub with this configuration, before any frame is decoded.

A model only works with the Whisper encoder its training data was featurised with (another
encoder's states are noise to it) and with the crop geometry it was trained on. The bundle records
both (``bundle.json``: ``whisper`` = ``encoder_identity``, ``model``, optionally ``geometry``);
this compares them with the configured encoder (the same ``check_encoder`` as curation and
training) and alignment template. Each mismatch is one line (``UserError``, exit 2).
"""

from __future__ import annotations

from pipelines.data.bundle import Bundle
from pipelines.errors import UserError
from preprocessing.audio_features import EncoderConfigError, check_encoder
from preprocessing.config import PreprocessConfig


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
    try:
        check_encoder(bundle.whisper, preprocess.whisper, what=f"model {bundle.root}")
    except EncoderConfigError as e:
        raise UserError(str(e)) from None
    why = geometry_mismatch(bundle, preprocess)
    if why:
        raise UserError(f"model {bundle.root}: {why}")
