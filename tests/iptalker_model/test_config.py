import pytest

from iptalker_model.config import ModelConfig
from iptalker_model.losses import LossConfig


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_presets_round_trip_through_json(name):
    cfg = ModelConfig.preset(name)
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_defaults_match_the_data_contract():
    cfg = ModelConfig.paper()
    assert (cfg.image_size, cfg.num_references, cfg.sync_frames) == (256, 5, 5)
    assert cfg.audio_rows == 10  # +/-2 frames, 2 Whisper rows per frame


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="unknown ModelConfig key 'x'"):
        ModelConfig.from_dict({"x": 1})
    with pytest.raises(ValueError, match="unknown LossConfig key 'l2_weight'"):
        LossConfig.from_dict({"l2_weight": 1.0})


def test_bad_values_name_the_field():
    with pytest.raises(ValueError, match="image_size=100"):
        ModelConfig.tiny(image_size=100)
    with pytest.raises(ValueError, match="mask_top"):
        ModelConfig.tiny(mask_top=1.5)
    with pytest.raises(ValueError, match="unknown ModelConfig preset"):
        ModelConfig.preset("huge")


def test_loss_config_round_trip_and_weights():
    lc = LossConfig(perceptual_weights="/x/vgg19.pth", sync_weight=0.5)
    assert LossConfig.from_dict(lc.to_dict()) == lc
    assert lc.weight("sync_loss") == 0.5
