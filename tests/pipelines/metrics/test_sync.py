"""LSE-D / LSE-C / offset: the protocol on known embeddings, on a trained SyncNet with shifted
audio, and the public SyncNet (syncnet_v2 layout) loading a state dict and running on a clip."""

import numpy as np
import pytest
import torch

from iptalker_model import sync_scores
from pipelines.metrics import PublicSyncNet, lse_from_embeddings, lse_ours, lse_public
from pipelines.metrics.mfcc import mfcc


def delayed(rows: np.ndarray, k: int) -> np.ndarray:
    """Audio rows delayed by k frames (2 rows per frame): row j now holds frame j/2 - k (edges held)."""
    return rows[np.clip(np.arange(len(rows)) - 2 * k, 0, len(rows) - 1)]


def test_protocol_on_known_embeddings():
    v = torch.randn(40, 8)
    for k in (-4, 0, 3):
        a = torch.roll(v, k, 0)                    # audio window i + k holds video window i's match
        lse = lse_from_embeddings(v, a, max_offset=6)
        assert lse.offset == k and lse.distance == pytest.approx(0.0, abs=1e-6)
        assert lse.confidence == pytest.approx(float(np.median(lse.curve)))
        assert len(lse.curve) == 13
    with pytest.raises(ValueError, match="too short"):
        lse_from_embeddings(v[:6], v[:6], max_offset=6)


@pytest.mark.slow
def test_shifted_audio_moves_the_offset_on_a_trained_syncnet(talking_syncnet, talking_clips):
    """Held-out clip, audio delayed by k in -5..5 frames: the offset follows k (+/-1), and the
    distance at offset 0 grows with |k|. LSE-C (median - min over offsets) cannot tell an in-range
    shift from sync by its definition; it drops for audio of another clip or a shift past the
    search range, which is what the sync baselines in ``evaluate`` rely on."""
    clip = talking_clips[3]
    frames, rows = clip["uint8"], clip["rows"].numpy()
    in_sync = lse_ours(talking_syncnet, frames, rows)
    assert in_sync.offset == 0
    at_zero = {}
    for k in range(-5, 6):
        lse = lse_ours(talking_syncnet, frames, delayed(rows, k))
        assert abs(lse.offset - k) <= 1, (k, lse.offset)
        at_zero[k] = lse.curve[len(lse.curve) // 2]
    assert at_zero[0] < min(at_zero[k] for k in (-5, -3, 3, 5))
    other = lse_ours(talking_syncnet, frames, talking_clips[0]["rows"].numpy()[:len(rows)])
    far = lse_ours(talking_syncnet, frames, delayed(rows, 30), max_offset=5)
    # measured with this fixture's SyncNet: other clip 0.257 vs in sync 0.336
    assert other.confidence < in_sync.confidence, (other, in_sync)
    assert far.confidence < in_sync.confidence, (far, in_sync)
    assert other.distance > in_sync.distance
    # the same offset as the model package's own search
    unit = torch.from_numpy(frames).float().div(127.5).sub(1).permute(0, 3, 1, 2)
    assert sync_scores(talking_syncnet, unit, torch.from_numpy(delayed(rows, 3))).offset == \
        lse_ours(talking_syncnet, frames, delayed(rows, 3), max_offset=5).offset


def test_mfcc_matches_python_speech_features():
    """Regenerate: python_speech_features 0.6, ``mfcc(x, 16000)`` on the signal below, rows 0, 7, 18."""
    t = np.arange(3200) / 16000
    x = (8000 * np.sin(2 * np.pi * 440 * t) + 3000 * np.sin(2 * np.pi * 1234 * t * (1 + t))).round()
    ref = np.array([
        [19.8069, 17.0461, -15.2747, -25.3611, -10.8312, -7.4251, -29.7851, -44.6634, -17.8739, 26.3059,
         40.4879, 16.4095, -6.8547],
        [19.9538, 30.2602, -21.1117, -22.6002, 2.6868, -5.0417, -40.6843, -42.6147, 3.0366, 36.96,
         24.6599, 0.5969, 2.7396],
        [19.9356, 8.6143, -13.9801, 2.1466, 7.6877, -36.4016, -63.0711, -18.0055, 33.3245, 20.4887,
         -8.0068, 6.1501, 26.9974]])
    ours = mfcc(x, 16000)
    assert ours.shape == (19, 13)
    assert ours[[0, 7, 18]] == pytest.approx(ref, abs=1e-3)


def test_public_syncnet_loads_its_state_dict_layout_and_runs_on_a_clip(tmp_path):
    torch.manual_seed(0)
    original = PublicSyncNet().eval()
    state = original.state_dict()
    # the published layout: these names and shapes are what syncnet_v2.model holds
    assert state["netcnnaud.0.weight"].shape == (64, 1, 3, 3)
    assert state["netcnnaud.18.weight"].shape == (512, 256, 5, 4)
    assert state["netcnnlip.0.weight"].shape == (96, 3, 5, 7, 7)
    assert state["netcnnlip.18.weight"].shape == (512, 256, 1, 6, 6)
    assert state["netfcaud.3.weight"].shape == state["netfclip.3.weight"].shape == (1024, 512)
    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path)
    loaded = PublicSyncNet.from_file(path)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (22, 48, 48, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(22 * 640)).astype(np.float32)
    lse = lse_public(loaded, frames, audio, max_offset=3)
    with torch.no_grad():
        lip = torch.randn(2, 3, 5, 224, 224) * 50 + 128
        assert torch.equal(loaded.forward_lip(lip), original.forward_lip(lip))
    assert np.isfinite([lse.distance, lse.confidence]).all() and -3 <= lse.offset <= 3
    torch.save({"netcnnaud.0.weight": state["netcnnaud.0.weight"]}, tmp_path / "partial.model")
    with pytest.raises(ValueError, match="not a syncnet_v2 state dict"):
        PublicSyncNet.from_file(tmp_path / "partial.model")
