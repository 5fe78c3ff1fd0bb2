"""Per-video preprocessing throughput on a 720p 25 fps talking clip made in this run.

Prints decode-only, detect+landmark, align and end-to-end (`extract_clips`) frames/s and the ratio
end-to-end / decode-only (target >= 0.35 in one process). Each figure is the best of `--repeats`
interleaved runs, since the machine is shared; CPU ms/frame is printed too because it does not
depend on what else the machine is running.

    .venv/bin/python benchmarks/preprocess_bench.py [--seconds 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from preprocessing.align import estimate_transforms, warp_to_crop
from preprocessing.clips import extract_clips
from preprocessing.config import PreprocessConfig
from preprocessing.encode import encode_mp4
from preprocessing.faces import FaceTracker, concat_tracks
from preprocessing.media import iter_frames
from preprocessing.synthetic.corpus import render_clip


def make_clip(out: Path, seconds: float, seed: int = 7) -> Path:
    clip = render_clip(seed, seconds=seconds, size=(1280, 720), fps=25.0, identity=0)
    encode_mp4(clip.frames, clip.fps, out, audio=clip.audio)
    return out


def measure(fns: dict, n_frames: int, repeats: int) -> tuple[dict, dict]:
    """Best-of-`repeats` frames/s (wall) and CPU ms/frame per function, runs interleaved so a
    load spike from other processes hits every figure alike."""
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return ({k: n_frames / min(v) for k, v in wall.items()},
            {k: 1000 * min(v) / n_frames for k, v in cpu.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = PreprocessConfig()
    with tempfile.TemporaryDirectory() as tmp:
        path = make_clip(Path(tmp) / "talking_720p.mp4", args.seconds)
        kw = dict(fps=cfg.media.fps, batch_size=cfg.media.batch_size, max_side=cfg.media.max_side,
                  num_threads=cfg.media.num_threads)
        frames = np.concatenate([f for _, f in iter_frames(path, **kw)])  # [T, 720, 1280, 3]
        n = len(frames)

        def decode():
            for _ in iter_frames(path, **kw):
                pass

        def detect_landmarks():
            tracker = FaceTracker(cfg.face)
            return concat_tracks([tracker.track(frames[i:i + 32]) for i in range(0, n, 32)])

        track = detect_landmarks()

        def align():
            affine = estimate_transforms(track.landmarks, cfg.align, track.valid)
            for f, m in zip(frames, affine, strict=True):
                warp_to_crop(f, m, cfg.align.size, cfg.align.interpolation)

        outcome = extract_clips(path, cfg, "bench")  # warm-up + sanity
        assert outcome.status == "accepted", outcome.message
        e2e_frames = sum(c.n_frames for c in outcome.clips)
        rates, cpu_ms = measure({"decode-only": decode, "detect+landmark": detect_landmarks, "align": align,
                                 "end-to-end": lambda: extract_clips(path, cfg, "bench")}, n, args.repeats)
    print(f"720p 25 fps clip: {n} frames, {len(outcome.clips)} clips ({e2e_frames} frames kept)")
    for name, rate in rates.items():
        print(f"{name:>16}: {rate:8.1f} frames/s   ({cpu_ms[name]:.2f} CPU ms/frame, all threads)")
    print(f"ratio end-to-end / decode-only: {rates['end-to-end'] / rates['decode-only']:.2f} (target >= 0.35); "
          f"CPU-time ratio {cpu_ms['decode-only'] / cpu_ms['end-to-end']:.2f}")

if __name__ == "__main__":
    main()
