"""Pass 2 of a dub: chunk by chunk, decode -> crop -> model -> paste -> encode (+ debug, metrics).

The model is frame-wise given its references and audio window, and transforms were smoothed over
the whole track in pass 1, so a chunk boundary changes nothing in the output (no seam to hide).
The edges that could show are where a dubbed run meets passed-through frames: the paste fades in
and out over ``fade_frames`` there, so a face that re-enters after a cut or a lost track blends in.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipelines.dub.analysis import FaceAnalysis
from pipelines.dub.config import DubConfig
from pipelines.dub.frames import StreamingFrames
from pipelines.dub.paste import FacePaster
from pipelines.dub.sink import EncoderSink
from pipelines.dub.timeline import Timeline
from preprocessing.align import transform_points, warp_to_crop
from preprocessing.config import PreprocessConfig
from preprocessing.media import prefetch


def fade_weights(usable: np.ndarray, fade: int) -> np.ndarray:
    """[N] paste weight per source frame: ramps 1/(fade+1) .. 1 away from passed-through frames."""
    n = len(usable)
    if fade <= 0 or usable.all():
        return usable.astype(np.float32)
    gaps = np.flatnonzero(~usable)
    pos = np.arange(n)
    nearest = np.searchsorted(gaps, pos)
    left = np.where(nearest > 0, pos - gaps[np.maximum(nearest - 1, 0)], n)
    right = np.where(nearest < len(gaps), gaps[np.minimum(nearest, len(gaps) - 1)] - pos, n)
    dist = np.minimum(left, right)  # >= 1 on usable frames
    return np.where(usable, np.minimum(1.0, dist / (fade + 1.0)), 0.0).astype(np.float32)


def _chunks(reader: StreamingFrames, timeline: Timeline, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for o0 in range(0, timeline.n_frames, size):
        out = np.arange(o0, min(o0 + size, timeline.n_frames))
        yield out, reader.get(timeline.source[out])


def _even(frame: np.ndarray) -> np.ndarray:
    """H.264 yuv420p needs even sizes: replicate the last row/column of odd-sized frames."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = cv2.copyMakeBorder(frame, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
    return frame


def side_by_side(source: np.ndarray, output: np.ndarray, reason: str) -> np.ndarray:
    """Debug frame: source | output at half size each; a passed-through frame is labelled with why."""
    h, w = source.shape[:2]
    size = (max(2, w // 4 * 2), max(2, h // 4 * 2))
    pair = np.hstack([cv2.resize(source, size, interpolation=cv2.INTER_AREA),
                      cv2.resize(output, size, interpolation=cv2.INTER_AREA)])
    label = f"passed through: {reason}" if reason else "dubbed"
    colour = (230, 60, 60) if reason else (60, 200, 60)
    cv2.putText(pair, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return pair


def _generate(frames, src, out_idx, analysis: FaceAnalysis, paster: FacePaster, generator, timings: dict):
    """Crops + model of one chunk (runs in the model thread): (dubbed positions, crops, generated)."""
    t0 = time.perf_counter()
    dub = np.flatnonzero(analysis.usable[src]) if generator is not None else np.zeros(0, int)
    crops = np.stack([paster.crop(frames[i], analysis.affines[src[i]]) for i in dub]) if len(dub) else None
    t1 = time.perf_counter()
    generated = generator(crops, out_idx[dub]) if len(dub) else None
    timings["crop"] += t1 - t0
    timings["model"] += time.perf_counter() - t1
    return dub, crops, generated


def _paste_chunk(frames, src, generation, analysis: FaceAnalysis, paster: FacePaster, weights,
                 timings: dict) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Frames of one chunk with new mouths where usable: (output frames, generated crops or None)."""
    t0 = time.perf_counter()
    dub, crops, generated = generation
    outputs, gen_crops = list(frames), [None] * len(frames)
    for j, i in enumerate(dub):
        outputs[i] = paster.paste(frames[i], generated[j], crops[j], analysis.affines[src[i]], weights[src[i]])
        gen_crops[i] = generated[j]
    timings["paste"] += time.perf_counter() - t0
    return outputs, gen_crops


def render(reader: StreamingFrames, fps: float, timeline: Timeline, analysis: FaceAnalysis, paster: FacePaster,
           generator, cfg: DubConfig, out: Path, debug: Path | None, meters: tuple, timings: dict,
           preprocess: PreprocessConfig) -> None:
    """Write the dubbed (silent) video to ``out`` and, when asked, the debug video to ``debug``.

    The model runs one chunk ahead in its own thread (torch releases the GIL) while this thread
    pastes, measures and queues the previous chunk for the encoder: on 2 cores the paste and
    metrics cost no wall time while the model is the slower side. So ``timings["model"]`` (model
    thread) overlaps the others (this thread); one more chunk is in flight (constant memory).
    """
    for key in ("decode", "crop", "model", "paste", "encode", "metrics"):
        timings.setdefault(key, 0.0)
    weights = fade_weights(analysis.usable, cfg.fade_frames)
    sinks = [EncoderSink(out, fps, crf=cfg.crf, preset=cfg.preset)]
    if debug is not None:
        sinks.append(EncoderSink(debug, fps, crf=23, preset=cfg.preset))
    bar = tqdm(total=timeline.n_frames, desc="dub", unit="frame", disable=not cfg.progress, leave=False)
    pending: deque = deque()

    def emit() -> None:
        out_idx, frames, src, future = pending.popleft()
        outputs, gen_crops = _paste_chunk(frames, src, future.result(), analysis, paster, weights, timings)
        _emit(out_idx, frames, src, outputs, gen_crops, analysis, meters, sinks, timings, preprocess)
        bar.update(len(frames))

    try:
        with ThreadPoolExecutor(1, thread_name_prefix="dub-model") as model_thread:
            t0 = time.perf_counter()
            for out_idx, frames in prefetch(_chunks(reader, timeline, cfg.chunk_frames),
                                            preprocess.media.prefetch_batches):
                timings["decode"] += time.perf_counter() - t0
                src = timeline.source[out_idx]
                pending.append((out_idx, frames, src, model_thread.submit(
                    _generate, frames, src, out_idx, analysis, paster, generator, timings)))
                if len(pending) > 1:
                    emit()
                t0 = time.perf_counter()
            while pending:
                emit()
        t1 = time.perf_counter()
        for sink in sinks:
            sink.close()
        timings["encode"] += time.perf_counter() - t1
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    finally:
        bar.close()
        timings["paste"] += timings.pop("crop", 0.0)


def _emit(out_idx, frames, src, outputs, gen_crops, analysis: FaceAnalysis, meters: tuple, sinks: list,
          timings: dict, preprocess: PreprocessConfig) -> None:
    """Metrics of one pasted chunk, then its frames (and debug frames) to the encoders."""
    sync, ident, mouth = meters
    t1 = time.perf_counter()
    if sync is not None:
        sync.add(out_idx, gen_crops)
    for i, o in enumerate(out_idx):
        if gen_crops[i] is not None and mouth is not None:
            _measure(int(o), frames[i], outputs[i], analysis, int(src[i]), preprocess, ident, mouth)
    t2 = time.perf_counter()
    timings["metrics"] += t2 - t1
    for i in range(len(frames)):
        sinks[0].put(_even(outputs[i]))
        if len(sinks) > 1:
            sinks[1].put(_even(side_by_side(frames[i], outputs[i], analysis.reasons[src[i]])))
    timings["encode"] += time.perf_counter() - t2


def _measure(out_frame: int, source: np.ndarray, output: np.ndarray, analysis: FaceAnalysis, src: int,
             preprocess: PreprocessConfig, ident, mouth) -> None:
    """Aligned crops of a dubbed frame and its source for the mouth (every frame) and identity (a few)."""
    size, affine = preprocess.align.size, analysis.affines[src]
    landmarks = transform_points(analysis.landmarks[src], affine)
    source_crop, output_crop = warp_to_crop(source, affine, size), warp_to_crop(output, affine, size)
    mouth.add(out_frame, source_crop, output_crop, landmarks)
    if ident.wants(out_frame):
        ident.add(source_crop, output_crop, landmarks)
