import pytest
import torch

from iptalker_model import IPTalker, ModelConfig, SyncNet, mask_source
from iptalker_model.batch import random_batch
from iptalker_model.checkpoint import load_config, load_iptalker, load_syncnet, save_weights


def test_iptalker_round_trip_rebuilds_the_same_network(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(audio_dim=32)
    model = IPTalker(cfg)
    save_weights(tmp_path / "g.pt", model, cfg)
    loaded = load_iptalker(tmp_path / "g.pt")
    assert loaded.cfg == cfg == load_config(tmp_path / "g.pt")
    b = random_batch(cfg, b=1, t=1)
    args = (mask_source(b["frames"], cfg), b["references"], b["audio"])
    assert torch.equal(model(*args)[0], loaded(*args)[0])


def test_syncnet_round_trip_and_kind_check(tmp_path):
    cfg = ModelConfig.tiny()
    save_weights(tmp_path / "s.pt", SyncNet(cfg), cfg)
    assert isinstance(load_syncnet(tmp_path / "s.pt"), SyncNet)
    with pytest.raises(ValueError, match="holds a SyncNet"):
        load_iptalker(tmp_path / "s.pt")


def test_missing_and_corrupt_files_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no IPTalker checkpoint"):
        load_iptalker(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable weights file"):
        load_syncnet(tmp_path / "bad.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an iptalker-weights"):
        load_syncnet(tmp_path / "other.pt")
