"""``dub_video``: one video + new speech -> a lip-synced mp4 at the input's size and frame rate.

    1. probe + check     inputs readable, the model's Whisper encoder and geometry match the config
    2. analyse faces     pass 1: track, shots, smoothed alignment, pass-through flags (analysis.py)
    3. features          the new audio at 16 kHz -> Whisper rows at 50 Hz (the whole track at once)
    4. timeline          which source frame each output frame shows (length modes, timeline.py)
    5. references        K frames spread over mouth openness at the typical pose (references.py)
    6. render            pass 2, chunk by chunk: decode -> crop -> model -> paste -> encode (+ debug)
    7. mux + report      the new audio muxed from its own file; quality report JSON

Frames are only ever held one chunk at a time (plus the encoder's small queue; pass 2 decodes
with ``frames.StreamingFrames``, which never reads ahead), so memory does not grow with the
video's length; per-frame numbers (landmarks, transforms, embeddings) do, by a
few KB a frame. Every run works in its own temp folder next to the output.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.data.bundle import Bundle
from pipelines.dub.analysis import FaceAnalysis, analyse_faces
from pipelines.dub.checks import check_bundle
from pipelines.dub.config import DubConfig
from pipelines.dub.frames import StreamingFrames
from pipelines.dub.generate import MouthGenerator
from pipelines.dub.paste import FacePaster
from pipelines.dub.quality import IdentityMeter, MouthMeter, SyncMeter
from pipelines.dub.references import dub_references
from pipelines.dub.render import render
from pipelines.dub.timeline import Timeline, audio_frames, plan_timeline
from pipelines.errors import UserError
from pipelines.metrics.mouth import audio_envelope
from preprocessing.config import PreprocessConfig
from preprocessing.encode import mux_audio
from preprocessing.media import FrameReader, MediaError, MediaInfo, load_audio, probe

SAMPLE_RATE = 16000


@dataclass
class DubEngine:
    """What a dub needs loaded once (models, Whisper encoder); reuse it across a batch."""

    bundle: Bundle
    model: object  # IPTalker, eval mode, on device
    syncnet: object | None  # SyncNet or None (no sync metrics then)
    whisper: object  # WhisperFeatureExtractor
    device: str


def load_engine(bundle: Bundle, cfg: DubConfig, preprocess: PreprocessConfig) -> DubEngine:
    """Load the bundle's models on ``cfg.device`` and the configured Whisper encoder; check they fit."""
    import torch

    from preprocessing.audio_features import WhisperFeatureExtractor

    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"dub.device={cfg.device!r} but no CUDA device is available; use --device cpu")
    if cfg.device == "cpu" and cfg.cpu_threads > 0:
        torch.set_num_threads(cfg.cpu_threads)
    try:
        model, syncnet = bundle.load_models(cfg.device)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"model {bundle.root}: {e}") from None
    # one 30 s window per encoder forward: a long track's windows batched 8 at a time would hold
    # 8 windows' activations at once (the peak would grow with the audio up to ~4 min)
    whisper = WhisperFeatureExtractor(dataclasses.replace(preprocess.whisper, device=cfg.device),
                                      max_windows_per_forward=1)
    check_bundle(bundle, preprocess, whisper.dim, model.cfg.audio_dim)
    return DubEngine(bundle, model, syncnet, whisper, cfg.device)


@dataclass
class DubReport:
    """The per-output report (``<out>.report.json``): what was done, how good it is, how long it took."""

    video: str
    audio: str
    out: str
    width: int
    height: int
    fps: float
    frames: int  # output frames
    source_frames: int
    audio_s: float
    length_mode: str  # what was applied: exact, cut-video, bounce, loop, freeze, cut-audio
    requested_length_mode: str
    dubbed_frames: int
    passed_through: dict[str, int]  # reason -> output frames shown unchanged
    face_coverage: float  # dubbed / output frames
    shot_changes: int
    references: list[int]
    sync: dict = field(default_factory=dict)  # lse_d, lse_c, offset, windows (bundle's SyncNet)
    identity: dict = field(default_factory=dict)  # identity_distance (dlib, same person < 0.6), frames
    mouth: dict = field(default_factory=dict)  # mouth_activity of output and source vs the new audio
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step + end-to-end fps
    debug_video: str | None = None
    report_path: str | None = None
    model: str = ""
    device: str = "cpu"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)


def _probe(path: Path, what: str) -> MediaInfo:
    try:
        info = probe(path)
    except MediaError as e:
        raise UserError(f"{what} {e}") from None
    if what == "video" and not info.has_video:
        raise UserError(f"video {path}: no video stream")
    if what == "audio" and not info.has_audio:
        raise UserError(f"audio {path}: no audio stream (give a wav/mp3/m4a/flac or a video with sound)")
    return info


def _features(engine: DubEngine, audio: np.ndarray) -> np.ndarray:
    """[N] 16 kHz -> Whisper rows [R, D] float16 at 50 Hz (asked as 25 fps frames: 2 rows each)."""
    n25 = max(1, math.ceil(len(audio) / SAMPLE_RATE * 25.0))
    return engine.whisper(audio, n25, fps=25.0)


def _references(analysis: FaceAnalysis, reader: FrameReader, paster: FacePaster, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [K], aligned crops [K, S, S, 3] uint8) of the reference frames."""
    idx = dub_references(analysis.crop_landmarks(), analysis.usable, k)
    frames = reader.get(idx)
    return idx, np.stack([paster.crop(f, analysis.affines[i]) for f, i in zip(frames, idx, strict=True)])


def _spread(candidates: np.ndarray, n: int) -> np.ndarray:
    if len(candidates) <= n:
        return candidates
    return candidates[np.linspace(0, len(candidates) - 1, n).round().astype(int)]


def dub_video(video: str, audio: str, out: str, bundle: Bundle, cfg: DubConfig, preprocess: PreprocessConfig,
              storage=None, *, engine: DubEngine | None = None) -> DubReport:
    """Dub ``video`` with the speech of ``audio`` into ``out`` (mp4); returns the report (also
    written to ``<out>.report.json`` when ``cfg.report``).

    ``video``/``audio``/``out`` are local paths, or URIs of ``storage`` (a ``Storage``) such as
    s3://. ``engine`` reuses loaded models across calls (batch, pyfunc). Raises UserError (one line)
    for unreadable inputs or a model that does not fit the configuration.
    """
    t_start = time.perf_counter()
    with ExitStack() as stack:
        if storage is not None:
            video_path = stack.enter_context(storage.local_copy(video))
            audio_path = stack.enter_context(storage.local_copy(audio))
        else:
            video_path, audio_path = Path(video), Path(audio)
        infos = _probe(video_path, "video"), _probe(audio_path, "audio")  # bad inputs fail before models load
        engine = engine or load_engine(bundle, cfg, preprocess)
        remote_out = storage is not None and "://" in str(out)
        out_dir = (Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iptalker-dub-out-")))
                   if remote_out else Path(out).parent)
        out_dir.mkdir(parents=True, exist_ok=True)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".iptalker-dub-", dir=out_dir)))
        local_out = out_dir / Path(str(out)).name
        try:
            report = _dub_local(video_path, audio_path, infos, local_out, work, engine, cfg, preprocess)
        except MediaError as e:  # a decode failure mid-way: unreadable media, one line
            raise UserError(str(e)) from None
        report.video, report.audio, report.out = str(video), str(audio), str(out)
        report.timings["total"] = time.perf_counter() - t_start
        report.timings["fps_end_to_end"] = report.frames / max(report.timings["total"], 1e-9)
        _finish(report, local_out, cfg, storage if remote_out else None)
    return report


def _finish(report: DubReport, local_out: Path, cfg: DubConfig, storage) -> None:
    """Write the report JSON beside the output; upload everything when the output is remote."""
    files = [local_out] + ([Path(report.debug_video)] if report.debug_video else [])
    if cfg.report:
        path = local_out.with_suffix(".report.json")
        report.report_path = str(path) if storage is None else report.out.rsplit(".", 1)[0] + ".report.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(report.to_json())
        tmp.replace(path)
        files.append(path)
    if storage is not None:
        base = report.out.rsplit("/", 1)[0]
        for f in files:
            storage.put(f, f"{base}/{f.name}")
        if report.debug_video:
            report.debug_video = f"{base}/{Path(report.debug_video).name}"


def _dub_local(video: Path, audio_path: Path, infos: tuple[MediaInfo, MediaInfo], out: Path, work: Path,
               engine: DubEngine, cfg: DubConfig, preprocess: PreprocessConfig) -> DubReport:
    info, audio_info = infos
    fps = info.fps
    if fps <= 0:
        raise UserError(f"video {video}: no frame rate in the container")
    model_cfg = engine.model.cfg
    analysis = analyse_faces(video, info, fps, preprocess, cfg.face, cfg.max_alignment_error, cfg.min_run_frames)
    timings = dict(analysis.timings)
    t0 = time.perf_counter()
    speech = load_audio(audio_path, SAMPLE_RATE, audio_info)
    audio_s = len(speech) / SAMPLE_RATE
    rows = _features(engine, speech)
    timings["features"] = time.perf_counter() - t0
    timeline = plan_timeline(analysis.n_frames, audio_frames(audio_s, fps), cfg.length_mode)
    envelope = audio_envelope(speech, fps, timeline.n_frames, SAMPLE_RATE)  # [N_out] loudness per frame
    del speech
    reader = FrameReader(video, fps, max_side=None, num_threads=cfg.decode_threads, info=info)
    paster = FacePaster(model_cfg, preprocess.align, cfg.paste_feather, cfg.colour_match)
    refs, generator = [], None
    if analysis.usable.any():
        refs, crops = _references(analysis, reader, paster, model_cfg.num_references)
        generator = MouthGenerator(engine.model, crops, rows, fps, engine.device, cfg.model_batch)
    sync = SyncMeter(engine.syncnet, fps, timeline.n_frames, rows, engine.device, cfg.max_sync_offset) \
        if engine.syncnet is not None and cfg.report else None
    dubbed_out = np.flatnonzero(analysis.usable[timeline.source])
    ident = IdentityMeter(_spread(dubbed_out, cfg.identity_samples if cfg.report else 0))
    mouth = MouthMeter(timeline.n_frames) if cfg.report else None
    silent = work / "video.mp4"
    debug = out.with_suffix(".debug.mp4") if cfg.debug_video else None
    grid = reader.source_indices
    del reader  # an open decord reader decodes ahead in its thread (~250 frames held): close it
    frames = StreamingFrames(video, info, fps, grid, cfg.decode_threads)
    try:
        render(frames, fps, timeline, analysis, paster, generator, cfg, silent, debug, (sync, ident, mouth), timings,
               preprocess)
    finally:
        frames.close()
    t0 = time.perf_counter()
    mux_audio(silent, audio_path, out, timeline.n_frames / fps)
    timings["mux"] = time.perf_counter() - t0
    report = _report(info, timeline, analysis, refs, sync, ident, timings, cfg, audio_s, debug, engine)
    report.mouth = _finite(mouth.result(envelope)) if mouth is not None else {}
    return report


def _finite(d):
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(d, dict):
        return {k: _finite(v) for k, v in d.items()}
    return None if isinstance(d, float) and not math.isfinite(d) else d


def _report(info: MediaInfo, timeline: Timeline, analysis: FaceAnalysis, refs, sync, ident, timings: dict,
            cfg: DubConfig, audio_s: float, debug: Path | None, engine: DubEngine) -> DubReport:
    reasons = analysis.reasons[timeline.source]
    passed = {str(r): int(c) for r, c in zip(*np.unique(reasons[reasons != ""], return_counts=True), strict=True)}
    dubbed = int((reasons == "").sum())
    t0 = time.perf_counter()
    sync_result = sync.result() if sync is not None else {"lse_d": None, "lse_c": None, "offset": None,
                                                          "windows": 0, "note": "the model has no SyncNet"}
    identity = ident.result()
    timings["metrics"] = timings.get("metrics", 0.0) + time.perf_counter() - t0  # + what render measured
    return DubReport(
        video="", audio="", out="", width=info.width, height=info.height, fps=info.fps,
        frames=timeline.n_frames, source_frames=analysis.n_frames, audio_s=audio_s,
        length_mode=timeline.mode, requested_length_mode=cfg.length_mode, dubbed_frames=dubbed,
        passed_through=passed, face_coverage=dubbed / max(timeline.n_frames, 1),
        shot_changes=len(analysis.shot_starts), references=[int(i) for i in refs], sync=_finite(sync_result),
        identity=_finite(identity), timings={k: round(v, 4) for k, v in timings.items()},
        debug_video=str(debug) if debug else None, model=str(engine.bundle.root), device=engine.device)
