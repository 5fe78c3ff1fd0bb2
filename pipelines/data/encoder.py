"""Which Whisper encoder a dataset's features come from, and the checks against it.

Curation identifies the configured encoder before any video is read (no checkpoint and no explicit
``allow_random`` stops it with one line) and records the identity in ``dataset.json``. Whatever
later reads those features (training, evaluation, dubbing) must use the same encoder: features of
another encoder are not what the model learnt to read. The identity and the comparison live in
``preprocessing.audio_features`` (``encoder_identity``, ``check_encoder``); this module adds the
dataset side and turns their errors into UserErrors.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pipelines.data import shards
from pipelines.data.storage import Storage, join
from pipelines.errors import UserError

log = logging.getLogger(__name__)


def whisper_identity(cfg: Any) -> dict[str, Any]:
    """``encoder_identity`` of the configured encoder (``WhisperConfig``); a missing checkpoint, or
    one that does not load, is a UserError naming the key."""
    from preprocessing.audio_features import EncoderConfigError, encoder_identity

    try:
        return encoder_identity(cfg)
    except EncoderConfigError as e:
        raise UserError(str(e)) from None
    except (OSError, KeyError, RuntimeError, TypeError) as e:  # unreadable, or not an openai-whisper .pt
        detail = str(e).splitlines()[0] if str(e) else ""
        raise UserError(f"preprocess.whisper.checkpoint {cfg.checkpoint} could not be loaded as an "
                        f"openai-whisper .pt ({type(e).__name__}: {detail})") from None


def recorded_encoder(root: str, storage: Storage | None = None) -> dict[str, Any] | None:
    """The encoder identity ``<root>/dataset.json`` records, or None (no dataset.json, or one
    written before encoders were recorded)."""
    storage = storage or Storage()
    uri = join(root, shards.DATASET_JSON)
    if not storage.exists(uri):
        return None
    return json.loads(storage.read_bytes(uri)).get("whisper") or None


def check_data_encoder(root: str, cfg: Any, storage: Storage | None = None) -> None:
    """UserError (one line) when the dataset at ``root`` was encoded with another Whisper encoder
    than ``cfg`` (``WhisperConfig``) configures. A dataset without a record is let through with a
    warning (nothing to compare); a config without a checkpoint and without ``allow_random``
    configures no encoder, so there is nothing to compare either."""
    from preprocessing.audio_features import EncoderConfigError, check_encoder

    if not cfg.checkpoint and not cfg.allow_random:
        return
    recorded = recorded_encoder(root, storage)
    if recorded is None:
        log.warning("%s records no Whisper encoder (no dataset.json or an old one): cannot check that its "
                    "features match preprocess.whisper", root)
        return
    whisper_identity(cfg)  # a checkpoint that does not load: its own one-line error
    try:
        check_encoder(recorded, cfg, what=f"dataset {root}")
    except EncoderConfigError as e:
        raise UserError(str(e)) from None
