"""Whisper encoder features at 50 Hz: 2 rows per 25 fps video frame, float16.

openai-whisper's encoder takes exactly 30 s of log-mel (3000 mel frames -> 1500 rows). Longer
audio is cut into 30 s windows that overlap by `overlap_s`, and the overlaps are crossfaded:
encoder states depend on the position inside the window, so a hard cut would leave a jump at
every 30 s boundary. Shorter audio is encoded at its own length (the sinusoidal positional
embedding sliced, as whisper.cpp's reduced audio context does) unless `pad_short_to_30s`: a 4 s
clip then costs a tenth of a padded window. The log-mel is computed once over the whole clip
(whisper normalises by the clip's maximum).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os

import numpy as np
import torch
import torch.nn.functional as F
import whisper
from whisper.audio import HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE
from whisper.model import AudioEncoder, ModelDimensions

from preprocessing.config import WhisperConfig

log = logging.getLogger(__name__)

RANDOM_INIT = "random-init"  # how a seeded random encoder is named in every record
ROWS_PER_WINDOW = N_FRAMES // 2  # 1500 encoder rows per 30 s window
ROW_RATE = SAMPLE_RATE / (2 * HOP_LENGTH)  # 50 rows per second
# Encoder sizes of the openai-whisper checkpoints (used for the random-init fallback only).
_ENCODER_DIMS = {"tiny": (384, 6, 4), "base": (512, 8, 6), "small": (768, 12, 12)}


def random_dims(model_name: str) -> ModelDimensions:
    state, heads, layers = _ENCODER_DIMS[model_name]
    return ModelDimensions(n_mels=80, n_audio_ctx=ROWS_PER_WINDOW, n_audio_state=state, n_audio_head=heads,
                           n_audio_layer=layers, n_vocab=51865, n_text_ctx=448, n_text_state=state,
                           n_text_head=heads, n_text_layer=layers)


def _read_checkpoint(uri: str) -> dict:
    """openai-whisper .pt ({"dims", "model_state_dict"}) from a path or fsspec URI; tensors only."""
    if "://" in uri and not uri.startswith("file://"):
        import fsspec  # remote checkpoints only

        with fsspec.open(uri, "rb") as f:
            return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
    return torch.load(uri.removeprefix("file://"), map_location="cpu", weights_only=True)


class EncoderConfigError(ValueError):
    """The Whisper encoder is not configured, or is not the one some data was encoded with.

    The message is one line naming the setting to change; ``pipelines`` turns it into a UserError.
    """


def require_configured(cfg: WhisperConfig) -> None:
    """Refuse a config that would silently give random features (no checkpoint, no opt-in)."""
    if not cfg.checkpoint and not cfg.allow_random:
        raise EncoderConfigError(
            "preprocess.whisper.checkpoint is not set: point it at an openai-whisper .pt (README "
            "'Weights'; `make setup` caches tiny.en at .cache/whisper/tiny.en.pt), or set "
            "preprocess.whisper.allow_random=true for tests only (random features)")


def build_encoder(cfg: WhisperConfig, warn: bool = True) -> tuple[AudioEncoder, ModelDimensions]:
    """Whisper's audio encoder from `cfg.checkpoint`, or (``allow_random`` only) a seeded random one
    (with a loud warning when ``warn``: identifying it computes no features, so need not warn)."""
    require_configured(cfg)
    if cfg.checkpoint:
        ckpt = _read_checkpoint(cfg.checkpoint)
        dims = ModelDimensions(**ckpt["dims"])
        state = {k.removeprefix("encoder."): v for k, v in ckpt["model_state_dict"].items()
                 if k.startswith("encoder.")}
        encoder = AudioEncoder(dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head,
                               dims.n_audio_layer)
        encoder.load_state_dict(state)
    else:
        if warn:
            log.warning("WHISPER FEATURES ARE NOT PRETRAINED: preprocess.whisper.allow_random is set, using a "
                        "random-init %r encoder (seed %d). Fine for tests, useless for training a real "
                        "model: set preprocess.whisper.checkpoint to an openai-whisper .pt.",
                        cfg.model_name, cfg.seed)
        dims = random_dims(cfg.model_name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            encoder = AudioEncoder(dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head,
                                   dims.n_audio_layer)
    return encoder.to(cfg.device).eval(), dims


def encoder_sha256(encoder: torch.nn.Module) -> str:
    """sha256 over the encoder's state tensors (sorted names, shapes, float32 bytes).

    Hashing tensors, not the file, identifies a seeded random-init encoder too, and the same
    weights saved as fp16 or fp32, or in another container, hash alike.
    """
    h = hashlib.sha256()
    for name, t in sorted(encoder.state_dict().items()):
        t = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _identity(cfg: WhisperConfig, encoder: torch.nn.Module) -> dict:
    random_init = not cfg.checkpoint
    name = (f"{RANDOM_INIT} {cfg.model_name} (seed {cfg.seed})" if random_init
            else cfg.checkpoint.rstrip("/").rsplit("/", 1)[-1])
    return {"name": name, "sha256": encoder_sha256(encoder), "random_init": random_init,
            "pad_short_to_30s": bool(cfg.pad_short_to_30s), "checkpoint": cfg.checkpoint,
            "dim": int(encoder.ln_post.normalized_shape[0])}


_IDENTITIES: dict[tuple, dict] = {}  # (config fields, checkpoint file stamp) -> identity


def encoder_identity(cfg: WhisperConfig) -> dict:
    """What dataset.json, every sample and a model bundle record about the encoder:
    ``{"name", "sha256", "random_init", "pad_short_to_30s", "checkpoint", "dim"}``.

    Loads the encoder once per config and checkpoint file version (cached in-process). Raises
    EncoderConfigError when nothing is configured (see ``require_configured``).
    """
    require_configured(cfg)
    path = (cfg.checkpoint or "").removeprefix("file://")
    stamp = (os.stat(path).st_mtime_ns, os.stat(path).st_size) if path and os.path.isfile(path) else ()
    key = (dataclasses.astuple(dataclasses.replace(cfg, device="cpu")), stamp)
    if key not in _IDENTITIES:
        _IDENTITIES[key] = _identity(cfg, build_encoder(dataclasses.replace(cfg, device="cpu"), warn=False)[0])
    return dict(_IDENTITIES[key])


def check_encoder(recorded: dict | None, cfg: WhisperConfig, what: str = "the data") -> None:
    """Raise EncoderConfigError (one line) unless ``recorded`` (an ``encoder_identity`` dict from
    dataset.json or a bundle) is the encoder ``cfg`` configures: features of another encoder, or
    of the same one with other padding, are not what the model learnt to read."""
    if not recorded or not recorded.get("sha256"):
        raise EncoderConfigError(f"{what} records no Whisper encoder identity: re-curate it with this version")
    mine = encoder_identity(cfg)
    if recorded["sha256"] != mine["sha256"]:
        raise EncoderConfigError(
            f"{what} was encoded with Whisper encoder {recorded.get('name')!r} (sha256 {recorded['sha256'][:12]}) "
            f"but preprocess.whisper configures {mine['name']!r} (sha256 {mine['sha256'][:12]}): set "
            f"preprocess.whisper.checkpoint to the encoder the data was curated with, or re-curate")
    if bool(recorded.get("pad_short_to_30s")) != mine["pad_short_to_30s"]:
        raise EncoderConfigError(
            f"{what} was encoded with preprocess.whisper.pad_short_to_30s={bool(recorded.get('pad_short_to_30s'))} "
            f"but it is {mine['pad_short_to_30s']} here: set it to match")


def plan_windows(n_rows: int, overlap_rows: int) -> list[int]:
    """Start rows of the 1500-row windows covering [0, n_rows); neighbours overlap >= overlap_rows.

    The last window ends at the clip's end, so no window is mostly padding.
    """
    stride = max(ROWS_PER_WINDOW - overlap_rows, 1)
    starts = [0]
    while starts[-1] + ROWS_PER_WINDOW < n_rows:
        starts.append(min(starts[-1] + stride, n_rows - ROWS_PER_WINDOW))
    return starts


def crossfade_weights(starts: list[int], n_rows: int) -> list[np.ndarray]:
    """Per-window [<=1500] weights: linear ramps across each overlap, so stitched rows have no jump."""
    weights = []
    for k, start in enumerate(starts):
        w = np.ones(min(ROWS_PER_WINDOW, n_rows - start), np.float32)
        if k > 0:  # ramp in over the overlap with the previous window
            n = starts[k - 1] + ROWS_PER_WINDOW - start
            w[:n] = (np.arange(n) + 0.5) / n
        if k + 1 < len(starts):  # ramp out over the overlap with the next window
            n = start + ROWS_PER_WINDOW - starts[k + 1]
            w[len(w) - n:] = np.minimum(w[len(w) - n:], 1.0 - (np.arange(n) + 0.5) / n)
        weights.append(w)
    return weights


class WhisperFeatureExtractor:
    """Audio [N] float32 16 kHz -> float16 [2 * n_frames, D] Whisper encoder states."""

    def __init__(self, cfg: WhisperConfig, max_windows_per_forward: int = 8):
        self.cfg = cfg
        self.encoder, self.dims = build_encoder(cfg)
        self.dim = self.dims.n_audio_state
        self.max_windows = max_windows_per_forward
        self._identity: dict | None = None

    @property
    def identity(self) -> dict:
        """``encoder_identity`` of this extractor's own encoder (computed once)."""
        if self._identity is None:
            self._identity = _identity(self.cfg, self.encoder)
        return self._identity

    def _mel(self, audio: np.ndarray, n_rows: int) -> torch.Tensor:
        """[n_mels, 2 * n_rows + N_FRAMES] log-mel of the audio cut/padded to n_rows rows."""
        n_samples = n_rows * 2 * HOP_LENGTH
        audio = np.asarray(audio, np.float32)[:n_samples]
        audio = np.pad(audio, (0, n_samples - len(audio)))
        return whisper.log_mel_spectrogram(torch.from_numpy(audio), self.dims.n_mels, padding=N_SAMPLES)

    @torch.inference_mode()
    def _encode(self, mels: list[torch.Tensor]) -> list[np.ndarray]:
        """Run the encoder on [n_mels, 3000] windows, a few at a time: [1500, D] float32 each."""
        out = []
        for i in range(0, len(mels), self.max_windows):
            batch = torch.stack(mels[i:i + self.max_windows]).to(self.cfg.device)
            out.extend(self.encoder(batch).float().cpu().numpy())
        return out

    @torch.inference_mode()
    def _encode_short(self, mel: torch.Tensor) -> np.ndarray:
        """whisper's AudioEncoder.forward on [n_mels, 2n] (< 3000) mel frames -> [n, D] float32."""
        enc = self.encoder
        x = F.gelu(enc.conv1(mel[None].to(self.cfg.device)))
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)  # [1, n, D]
        x = (x + enc.positional_embedding[:x.shape[1]]).to(x.dtype)
        for block in enc.blocks:
            x = block(x)
        return enc.ln_post(x)[0].float().cpu().numpy()

    def batch(self, audios: list[np.ndarray], n_frames: list[int], fps: float = 25.0) -> list[np.ndarray]:
        """Features for several clips; padded 30 s windows share forwards (<= 8 per forward)."""
        overlap = int(self.cfg.overlap_s * ROW_RATE)
        jobs, mels = [], []  # per clip: (n_rows, frames, rows [n_rows, D] | None, window starts, first)
        for audio, frames in zip(audios, n_frames, strict=True):
            n_rows = max(1, int(np.ceil(frames / fps * ROW_RATE)))
            mel = self._mel(audio, n_rows)
            if n_rows < ROWS_PER_WINDOW and not self.cfg.pad_short_to_30s:
                jobs.append((n_rows, frames, self._encode_short(mel[:, :2 * n_rows]), [], 0))
                continue
            starts = plan_windows(n_rows, overlap)
            jobs.append((n_rows, frames, None, starts, len(mels)))
            mels.extend(mel[:, 2 * s:2 * s + N_FRAMES] for s in starts)
        states = self._encode(mels) if mels else []
        results = []
        for n_rows, frames, rows, starts, first in jobs:
            if rows is None:  # stitch the crossfaded windows
                rows = np.zeros((n_rows, self.dim), np.float32)  # [n_rows, D] at 50 Hz
                for k, (start, w) in enumerate(zip(starts, crossfade_weights(starts, n_rows), strict=True)):
                    rows[start:start + len(w)] += w[:, None] * states[first + k][:len(w)]
            pick = np.minimum(np.round(np.arange(2 * frames) * ROW_RATE / (2 * fps)).astype(int), n_rows - 1)
            results.append(rows[pick].astype(np.float16))  # [2 * frames, D]
        return results

    def __call__(self, audio_16k: np.ndarray, n_frames: int, fps: float = 25.0) -> np.ndarray:
        return self.batch([audio_16k], [n_frames], fps)[0]


def features_for_clips(extractor, audios: list[np.ndarray], n_frames: list[int],
                       start_frames: list[int]) -> list[np.ndarray]:
    """Features for the clips of ONE recording: clips that follow each other without a gap are
    encoded as one stretch of audio and the rows sliced back per clip.

    Why: each clip's rows then see the real audio around them, as they do when dubbing encodes a
    whole new track, and one encoder pass serves the whole run instead of one per clip. ``extractor`` is anything with
    ``batch(audios, n_frames)``; ``audios[i]`` must span exactly ``n_frames[i]`` frames from
    ``start_frames[i]`` (as ``Clip.audio`` does), so concatenating a run keeps time aligned.
    """
    runs: list[list[int]] = []
    for i, start in enumerate(start_frames):
        prev = runs[-1][-1] if runs else None
        if prev is not None and start == start_frames[prev] + n_frames[prev]:
            runs[-1].append(i)
        else:
            runs.append([i])
    run_rows = extractor.batch([np.concatenate([np.asarray(audios[i], np.float32) for i in run]) for run in runs],
                               [sum(n_frames[i] for i in run) for run in runs])
    out: list[np.ndarray] = [np.empty(0)] * len(audios)
    for run, rows in zip(runs, run_rows, strict=True):  # rows: [2 * run frames, D]
        offset = 0
        for i in run:
            out[i] = rows[2 * offset:2 * (offset + n_frames[i])]
            offset += n_frames[i]
    return out
