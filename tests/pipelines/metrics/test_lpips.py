"""LPIPS loads its two weight files by path (layouts of torchvision's vgg16 and lpips' vgg.pth,
written here with random weights) and measures 0 for identical frames, more for more noise."""

import numpy as np
import pytest
import torch
from skimage import data as skdata

from pipelines.metrics.lpips import LPIPS, _vgg16_features, lpips


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    vgg = {f"features.{k}": v for k, v in _vgg16_features().state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)             # torchvision's head: ignored
    torch.save(vgg, d / "vgg16.pth")
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(heads, d / "vgg.pth")
    return d / "vgg16.pth", d / "vgg.pth"


def test_lpips_is_zero_for_identical_frames_and_grows_with_noise(weight_files):
    net = LPIPS.from_files(*weight_files)
    img = skdata.astronaut()[::8, ::8]                          # [64, 64, 3]
    video = np.stack([img, img[:, ::-1]])
    assert lpips(video, video, net) == 0.0
    rng = np.random.default_rng(0)
    scores = [lpips(video, (video + rng.normal(0, s, video.shape)).clip(0, 255).astype(np.uint8), net)
              for s in (5, 40)]
    assert 0 < scores[0] < scores[1]


def test_wrong_layout_is_refused(weight_files, tmp_path):
    torch.save({"lin0.model.1.weight": torch.rand(1, 64, 1, 1)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="unexpected LPIPS weight layout"):
        LPIPS.from_files(weight_files[0], tmp_path / "partial.pth")
