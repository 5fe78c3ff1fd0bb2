"""Session fixtures shared by the metric and evaluation tests: real-face talking clips and a
tiny SyncNet trained on them in-process (see ``tests/fixtures/talking.py``)."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.talking import AUDIO_DIM, talking_clip, train_syncnet


@pytest.fixture(scope="session")
def talking_cfg():
    from iptalker_model import ModelConfig

    return ModelConfig.tiny(audio_dim=AUDIO_DIM)


@pytest.fixture(scope="session")
def talking_clips():
    """Four 3 s clips at 64 px (seeds 0-3); the last one is never trained on."""
    return [talking_clip(seed, 64) for seed in range(4)]


@pytest.fixture(scope="session")
def talking_syncnet(talking_clips, talking_cfg):
    """A frozen tiny SyncNet trained on clips 0-2 (~1-2 min on one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 OpenMP threads on a busy 2-core box run ~10x slower
    try:
        return train_syncnet(talking_clips[:3], talking_cfg, steps=300)
    finally:
        torch.set_num_threads(before)
