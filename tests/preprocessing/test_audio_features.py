"""Whisper encoder features on real speech (espeak-ng, decoded through media.load_audio)."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import asdict

import numpy as np
import pytest
import torch

from preprocessing.audio_features import WhisperFeatureExtractor, plan_windows, random_dims
from preprocessing.config import WhisperConfig
from preprocessing.media import load_audio

SENTENCE = "Identity preserving video dubbing needs clean lip sync and stable faces across long clips. "


def _speech(path, repeats: int) -> np.ndarray:
    subprocess.run(["espeak-ng", "-w", str(path), SENTENCE * repeats], check=True, timeout=60)
    return load_audio(path)  # [N] float32 16 kHz


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    d = tmp_path_factory.mktemp("speech")
    return {"short": _speech(d / "short.wav", 1), "long": _speech(d / "long.wav", 9)}


@pytest.fixture(scope="module")
def extractor():
    return WhisperFeatureExtractor(WhisperConfig(allow_random=True, seed=0))


def _jumps(x: np.ndarray) -> np.ndarray:
    """Relative change between consecutive rows [R-1]."""
    x = x.astype(np.float32)
    return np.linalg.norm(np.diff(x, axis=0), axis=1) / np.linalg.norm(x[1:], axis=1)


def test_two_float16_rows_per_video_frame(extractor, speech):
    n_frames = int(len(speech["short"]) / 16000 * 25)
    feats = extractor(speech["short"], n_frames)
    assert feats.shape == (2 * n_frames, extractor.dim) == (2 * n_frames, 384)
    assert feats.dtype == np.float16 and np.isfinite(feats).all()
    # speech and silence give different features (the encoder sees the audio, not only positions)
    silent = extractor(np.zeros_like(speech["short"]), n_frames)
    assert np.abs(feats.astype(float) - silent).mean() > 0.05


def test_random_init_warns_loudly_and_is_seeded(caplog, speech):
    with caplog.at_level(logging.WARNING):
        a = WhisperFeatureExtractor(WhisperConfig(allow_random=True, seed=3))
    assert "NOT PRETRAINED" in caplog.text
    b, c = WhisperFeatureExtractor(WhisperConfig(allow_random=True, seed=3)), WhisperFeatureExtractor(WhisperConfig(allow_random=True, seed=4))
    clip = speech["short"][:16000]
    np.testing.assert_array_equal(a(clip, 25), b(clip, 25))
    assert not np.array_equal(a(clip, 25), c(clip, 25))


def test_openai_checkpoint_is_loaded_with_weights_only(tmp_path, extractor, speech, caplog):
    """A .pt in openai-whisper's layout ({"dims", "model_state_dict"}) gives the same features."""
    state = {f"encoder.{k}": v for k, v in extractor.encoder.state_dict().items()}
    state["decoder.token_embedding.weight"] = torch.zeros(4, 4)  # decoder weights are ignored
    path = tmp_path / "tiny.pt"
    torch.save({"dims": asdict(random_dims("tiny")), "model_state_dict": state}, path)
    with caplog.at_level(logging.WARNING):
        loaded = WhisperFeatureExtractor(WhisperConfig(checkpoint=str(path)))
    assert "NOT PRETRAINED" not in caplog.text
    clip = speech["short"][:32000]
    np.testing.assert_array_equal(loaded(clip, 50), extractor(clip, 50))


def test_padded_batch_runs_one_forward_and_matches_single_calls(speech):
    padded = WhisperFeatureExtractor(WhisperConfig(allow_random=True, seed=0, pad_short_to_30s=True))
    clips = [speech["short"][:16000], speech["short"][8000:40000], speech["short"]]
    frames = [25, 50, int(len(speech["short"]) / 16000 * 25)]
    calls = []
    hook = padded.encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        batched = padded.batch(clips, frames)
    finally:
        hook.remove()
    assert len(calls) == 1
    for audio, n, feats in zip(clips, frames, batched, strict=True):
        np.testing.assert_allclose(feats.astype(np.float32), padded(audio, n).astype(np.float32),
                                   atol=2e-2)


def test_short_audio_is_encoded_at_its_own_length(extractor, speech):
    """By default a 2 s clip runs 100 encoder rows, not a padded 1500, and its features are not
    the padded ones: curation and dubbing must agree on `pad_short_to_30s`."""
    lengths = []
    hook = extractor.encoder.blocks[0].register_forward_hook(lambda _m, args, _o: lengths.append(args[0].shape[1]))
    try:
        short = extractor(speech["short"][:32000], 50)  # [100, D]
    finally:
        hook.remove()
    assert lengths == [100] and short.shape == (100, extractor.dim)
    padded = WhisperFeatureExtractor(WhisperConfig(allow_random=True, seed=0, pad_short_to_30s=True))(speech["short"][:32000], 50)
    assert padded.shape == short.shape
    assert np.abs(padded.astype(np.float32) - short.astype(np.float32)).mean() > 1e-3


def test_long_audio_is_stitched_without_a_seam(extractor, speech):
    audio = speech["long"]
    assert len(audio) > 35 * 16000
    n_frames = int(len(audio) / 16000 * 25)
    feats = extractor(audio, n_frames)
    assert feats.shape == (2 * n_frames, 384)
    starts = plan_windows(2 * n_frames, 200)
    assert len(starts) >= 2
    jumps = _jumps(feats)
    overlap = slice(starts[1], starts[0] + 1500)
    assert jumps[overlap].max() <= 1.2 * np.quantile(jumps, 0.99)  # no jump where two windows meet
    # what the test guards against: two independent 30 s windows butted together
    naive = np.concatenate([extractor(audio[:30 * 16000], 750), extractor(audio[30 * 16000:], n_frames - 750)])
    naive_jumps = _jumps(naive)
    assert naive_jumps[1499] > 2 * np.quantile(naive_jumps, 0.99)


def test_short_or_missing_audio_is_padded(extractor):
    feats = extractor(np.zeros(100, np.float32), 10)
    assert feats.shape == (20, 384)
    assert extractor(np.zeros(0, np.float32), 0).shape == (0, 384)


def test_plan_windows_cover_every_row():
    for n_rows in (1, 1500, 1501, 2999, 4600):
        starts = plan_windows(n_rows, 200)
        covered = np.zeros(n_rows, bool)
        for s in starts:
            covered[s:s + 1500] = True
        assert covered.all() and starts[-1] + 1500 >= n_rows


def test_contiguous_clips_share_one_encoding_and_gaps_split_runs(speech, extractor):
    """Clips of one recording: a contiguous run is encoded as one stretch (rows identical to
    encoding the whole stretch), a gap starts a new run, and time stays aligned per clip."""
    from preprocessing.audio_features import features_for_clips

    audio, sr, fps = speech["short"], 16000, 25
    spans = [(0, 40), (40, 75), (90, 120)]  # frames: two touching clips, then a gap
    audios = [audio[round(s / fps * sr):round(e / fps * sr)] for s, e in spans]
    feats = features_for_clips(extractor, audios, [e - s for s, e in spans], [s for s, _ in spans])
    assert [f.shape for f in feats] == [(2 * (e - s), extractor.dim) for s, e in spans]
    run = extractor(audio[:round(75 / fps * sr)], 75)  # [150, D]: the first two clips together
    np.testing.assert_array_equal(feats[0], run[:80])
    np.testing.assert_array_equal(feats[1], run[80:150])
    np.testing.assert_array_equal(feats[2], extractor(audios[2], 30))  # after the gap: on its own
    alone = extractor(audios[1], 35)  # the second clip encoded without its neighbour's context
    assert not np.array_equal(alone, feats[1])


def test_no_checkpoint_without_opt_in_is_refused():
    from preprocessing.audio_features import EncoderConfigError, build_encoder

    with pytest.raises(EncoderConfigError, match=r"preprocess\.whisper\.checkpoint is not set"):
        build_encoder(WhisperConfig())


def test_encoder_identity_tells_encoders_apart(tmp_path):
    """The tensor hash: same seed -> same sha256 (also once saved to a .pt file), another
    seed -> another; check_encoder refuses a mismatch in one line naming the key."""
    from preprocessing.audio_features import (
        EncoderConfigError,
        build_encoder,
        check_encoder,
        encoder_identity,
    )

    a, a2 = encoder_identity(WhisperConfig(allow_random=True, seed=0)), encoder_identity(WhisperConfig(allow_random=True, seed=0))
    b = encoder_identity(WhisperConfig(allow_random=True, seed=1))
    assert a == a2 and a["sha256"] != b["sha256"] and a["random_init"] and a["name"].startswith("random-init")
    enc, dims = build_encoder(WhisperConfig(allow_random=True, seed=0))
    path = tmp_path / "enc.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": {f"encoder.{k}": v for k, v in enc.state_dict().items()}}, path)
    saved = encoder_identity(WhisperConfig(checkpoint=str(path)))
    assert saved["sha256"] == a["sha256"] and not saved["random_init"] and saved["name"] == "enc.pt"
    check_encoder(a, WhisperConfig(checkpoint=str(path)))  # same weights, other container: accepted
    with pytest.raises(EncoderConfigError, match="preprocess.whisper.checkpoint") as e:
        check_encoder(a, WhisperConfig(allow_random=True, seed=1))
    assert "\n" not in str(e.value) and a["sha256"][:12] in str(e.value)
    with pytest.raises(EncoderConfigError, match="records no Whisper encoder"):
        check_encoder({}, WhisperConfig(allow_random=True))
