"""Lips and sound stay aligned through curation, whatever the input's timing: 25 fps, 30 fps,
variable fps, and audio that starts 0.3 s after the video.

Synthetic talking heads (mouth opening driven by their own speech envelope) are encoded that way
with ffmpeg and curated by the real job (real per-video stage; a stand-in Whisper encoder, whose
features this test does not read). In every curated sample, the mouth opening measured on
``landmarks.npy`` must correlate best with the RMS envelope of ``audio.flac`` at lag 0 +/- 1
frame. The same measurement on the audio the decoder gave before the fix (0.3 s early) fails.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import soundfile as sf
import webdataset as wds

from pipelines.curate.config import CurateConfig
from pipelines.curate.job import run_curation
from pipelines.data import shards
from pipelines.data.storage import Storage, StorageConfig
from preprocessing.encode import encode_mp4
from preprocessing.media import probe
from preprocessing.synthetic.clip import plan_clip, write_plan
from preprocessing.synthetic.speech import SAMPLE_RATE
from tests.fixtures import curate_standins as standins
from tests.fixtures.whisper import random_preprocess

pytestmark = pytest.mark.slow

FPS = 25  # curated samples
DELAY_S = 0.3


def _plan(seed, fps):
    return plan_clip(seed, seconds=3.0, size=(480, 360), fps=fps, face_frac=0.5)


def _vfr(path, seed):
    """Frames of a 50 fps render taken at 3/50 s then 1/50 s gaps (average 25 fps, r_frame_rate
    50): each frame shows the mouth of its own display time."""
    plan = _plan(seed, 50)
    keep = {k for n in range(plan.n_frames) if (k := 2 * n + n % 2) < plan.n_frames}
    frames = (f for k, f in enumerate(plan.frames()) if k in keep)
    encode_mp4(frames, 50, path, audio=plan.audio, sample_rate=SAMPLE_RATE, setpts="(2*N+mod(N,2))/50/TB")
    return path


def _late_audio(path, seed):
    """Audio stream starting DELAY_S after the video (its first DELAY_S of speech cut)."""
    plan = _plan(seed, 25)
    encode_mp4(plan.frames(), 25, path, audio=plan.audio[round(DELAY_S * SAMPLE_RATE):], sample_rate=SAMPLE_RATE,
               audio_delay_s=DELAY_S)
    return path


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("av")
    raw = root / "raw" / "speaker"
    raw.mkdir(parents=True)
    inputs = {"fps25": write_plan(_plan(21, 25), raw / "fps25.mp4"),
              "fps30": write_plan(_plan(22, 30), raw / "fps30.mp4"),
              "vfr": _vfr(raw / "vfr.mp4", 23),
              "late_audio": _late_audio(raw / "late_audio.mp4", 24)}
    assert probe(inputs["vfr"]).variable_fps
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=f"/tmp/rt-av{os.getpid()}", log_to_driver=False)
    try:
        stages = standins.stages()
        stages.extract = None  # the real per-video stage
        run_curation([str(root / "raw")], str(root / "ds"), CurateConfig(val_fraction=0.0), random_preprocess(),
                     StorageConfig(), progress=False, stages=stages)
    finally:
        ray.shutdown()
    samples = {}
    st = Storage()
    for shard in shards.list_done_shards(st, str(root / "ds")):
        for s in wds.WebDataset(shard.tar, shardshuffle=False, empty_check=False).decode():
            name = s["json"]["source_uri"].rsplit("/", 1)[-1].removesuffix(".mp4")
            samples.setdefault(name, []).append(s)
    return samples


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """[T, 68, 2] -> [T] inner-lip gap over mouth width."""
    gap = landmarks[:, [65, 66, 67], 1].mean(1) - landmarks[:, [61, 62, 63], 1].mean(1)
    return gap / np.linalg.norm(landmarks[:, 54] - landmarks[:, 48], axis=-1)


def rms_envelope(audio: np.ndarray, n_frames: int) -> np.ndarray:
    hop = SAMPLE_RATE // FPS
    audio = np.pad(audio, (0, max(0, n_frames * hop - len(audio))))[: n_frames * hop]
    return np.sqrt(np.mean(audio.reshape(n_frames, hop).astype(np.float64) ** 2, axis=1))


def best_lag(mouth: np.ndarray, envelope: np.ndarray, max_lag: int = 10) -> tuple[int, float]:
    """Lag (frames; > 0: the sound comes after the lips) of the highest Pearson correlation."""
    def corr(lag: int) -> float:
        a, b = (mouth[: len(mouth) - lag], envelope[lag:]) if lag >= 0 else (mouth[-lag:], envelope[: lag])
        return float(np.corrcoef(a, b)[0, 1])

    scores = {lag: corr(lag) for lag in range(-max_lag, max_lag + 1)}
    lag = max(scores, key=scores.get)
    return lag, scores[lag]


@pytest.mark.parametrize("name", ["fps25", "fps30", "vfr", "late_audio"])
def test_lips_and_sound_are_aligned_in_curated_samples(curated, name):
    assert curated.get(name), f"{name}: no curated sample"
    for s in curated[name]:
        audio, sr = sf.read(io.BytesIO(s["audio.flac"]), dtype="float32")
        assert sr == SAMPLE_RATE
        mouth = mouth_opening(s["landmarks.npy"])
        lag, score = best_lag(mouth, rms_envelope(audio, len(mouth)))
        assert abs(lag) <= 1 and score > 0.5, (name, lag, score)


def test_the_measurement_sees_the_old_offset(curated):
    """The same sample's audio moved by DELAY_S (about the 6-frame error the decoder made before
    the fix, when it started audio at its own first sample) peaks >= 5 frames away: the check
    above is not blind to the bug it guards against."""
    s = curated["late_audio"][0]
    audio, _ = sf.read(io.BytesIO(s["audio.flac"]), dtype="float32")
    early = audio[round(DELAY_S * SAMPLE_RATE):]
    mouth = mouth_opening(s["landmarks.npy"])
    lag, _ = best_lag(mouth, rms_envelope(early, len(mouth)))
    assert abs(lag) >= 5, lag
