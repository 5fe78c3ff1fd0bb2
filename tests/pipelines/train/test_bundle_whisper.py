"""The bundle records the encoder its training data was featurised with, in the form dub checks."""

from __future__ import annotations

import json

import pytest

from pipelines.data.storage import Storage
from pipelines.train.bundle_export import dataset_record
from preprocessing.audio_features import EncoderConfigError, check_encoder, encoder_identity
from tests.fixtures.whisper import random_whisper


def test_bundle_whisper_is_the_datasets_encoder_identity(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"version": "v", "whisper": encoder_identity(random_whisper())}))
    _, whisper = dataset_record(str(tmp_path), Storage())
    check_encoder(whisper, random_whisper())  # what dub does with the same encoder: accepted
    with pytest.raises(EncoderConfigError, match="sha256"):
        check_encoder(whisper, random_whisper(seed=1))  # another encoder: refused
    (tmp_path / "dataset.json").write_text(json.dumps({"version": "old"}))  # curated before identities
    assert dataset_record(str(tmp_path), Storage())[1] == {}
