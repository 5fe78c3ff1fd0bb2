"""``iptalker dub`` end to end: frames/s, where the time goes, and peak memory.

Runs, each in its own process (so each peak RSS is its own):

1. baseline: decode + encode + mux of the same video with no face work (the floor any dub pays);
2. dub with the tiny (demo-size) model and with the paper config (random weights: speed does not
   depend on them), split into decode / faces / features / model / paste / encode / metrics (the model
   runs in its own thread beside paste/metrics/encode, so the split can sum past the total), with
   end-to-end frames/s and the ratio to the baseline's frames/s;
3. constant memory: the tiny model dubs a 35 s and a 70 s 1080p video, each in its own process;
   the peak RSS (of the dub process; ffmpeg's encoder is a child with its own few frames) of the
   two should be about equal: frames are held one chunk at a time, and no decoder reads ahead.
   (Whisper encodes audio under 30 s at its own length, so its attention grows with the audio up
   to 30 s, ~40 MB more at 20 s than at 5 s; past 30 s it runs one 30 s window at a time: both
   default lengths are past it.)

    .venv/bin/python benchmarks/dub_bench.py [--seconds 6] [--size 1280x720] [--paper-seconds 2]
        [--mem-seconds 35,70] [--skip-paper] [--skip-memory] [--skip-speed] [--device cpu] [--threads N]

Whisper runs random-init (the same architecture and cost as tiny.en). Wall-clock figures depend on
the load of the machine: only ratios measured in the same run compare; CPU-ms per frame (process +
ffmpeg children) is printed too, as it moves less with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_inputs(work: Path, seconds: float, size: tuple[int, int], fps: float = 25.0) -> tuple[Path, Path]:
    """A synthetic talking head (``seconds``, ``size``) and new speech of the same length."""
    from preprocessing.encode import write_wav
    from preprocessing.synthetic.clip import plan_clip, write_plan
    from preprocessing.synthetic.speech import SAMPLE_RATE, synthesize_speech

    video = work / f"talk_{size[0]}x{size[1]}_{seconds:g}s.mp4"
    audio = work / f"speech_{seconds:g}s.wav"
    if not video.exists():
        write_plan(plan_clip(11, seconds=seconds, size=size, fps=fps, identity=0, face_frac=0.45), video)
    if not audio.exists():
        speech = synthesize_speech(np.random.default_rng(5), seconds, voice="en-gb")
        write_wav(audio, speech.audio, SAMPLE_RATE)
    return video, audio


def make_bundle(work: Path, preset: str) -> Path:
    import torch

    from iptalker_model.checkpoint import save_weights
    from iptalker_model.config import ModelConfig
    from iptalker_model.iptalker import IPTalker
    from iptalker_model.syncnet import SyncNet
    from pipelines.data.bundle import write_bundle
    from preprocessing.audio_features import encoder_identity
    from preprocessing.config import WhisperConfig

    out = work / f"bundle-{preset}"
    if not (out / "bundle.json").exists():
        torch.manual_seed(0)
        cfg = ModelConfig.preset(preset)
        save_weights(work / f"{preset}-g.pt", IPTalker(cfg), cfg)
        save_weights(work / f"{preset}-s.pt", SyncNet(cfg), cfg)
        write_bundle(out, work / f"{preset}-g.pt", work / f"{preset}-s.pt",
                     whisper=encoder_identity(WhisperConfig(allow_random=True)))
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg), user + system."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def child_passthrough(video: str, audio: str, out: str, chunk: int) -> dict:
    """Decode in chunks + encode + mux, no face work: the same I/O a dub does."""
    from pipelines.dub.sink import EncoderSink
    from preprocessing.encode import mux_audio
    from preprocessing.media import FrameReader, probe

    t0 = time.perf_counter()
    info = probe(video)
    reader = FrameReader(video, info.fps, info=info)
    silent = Path(out).with_suffix(".silent.mp4")
    sink = EncoderSink(silent, info.fps, crf=18)
    for start in range(0, len(reader), chunk):
        for frame in reader.get(np.arange(start, min(start + chunk, len(reader)))):
            sink.put(frame)
    sink.close()
    mux_audio(silent, audio, out, len(reader) / info.fps)
    total = time.perf_counter() - t0
    return {"frames": len(reader), "total": total, "fps": len(reader) / total, "peak_rss_mb": peak_rss_mb(),
            "cpu_s": cpu_seconds()}


def child_dub(video: str, audio: str, out: str, bundle: str, device: str, threads: int = 0) -> dict:
    import dataclasses

    from pipelines.data.bundle import resolve_bundle
    from pipelines.dub.config import DubConfig
    from pipelines.dub.job import dub_video
    from preprocessing.config import PreprocessConfig

    pre = PreprocessConfig()
    pre = dataclasses.replace(pre, whisper=dataclasses.replace(pre.whisper, allow_random=True))
    report = dub_video(video, audio, out, resolve_bundle(bundle), DubConfig(device=device, cpu_threads=threads), pre)
    return {"frames": report.frames, "fps": report.timings["fps_end_to_end"], "timings": report.timings,
            "dubbed": report.dubbed_frames, "peak_rss_mb": peak_rss_mb(), "cpu_s": cpu_seconds()}


def run_child(kind: str, **kw) -> dict:
    """Run one measurement in a fresh process; returns its JSON result."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, __file__, "--child", kind, "--child-args", json.dumps(kw)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


STEPS = ("decode", "faces", "features", "model", "paste", "encode", "metrics", "mux")


def split_line(timings: dict) -> str:
    total = timings["total"]
    return "  ".join(f"{k} {timings.get(k, 0.0):.1f}s ({100 * timings.get(k, 0.0) / total:.0f}%)" for k in STEPS)


def speed(work: Path, args) -> None:
    size = tuple(int(v) for v in args.size.split("x"))
    video, audio = make_inputs(work, args.seconds, size)
    base = run_child("passthrough", video=str(video), audio=str(audio), out=str(work / "pass.mp4"), chunk=16)
    print(f"baseline decode+encode+mux {size[0]}x{size[1]} {base['frames']} frames: {base['fps']:.1f} frames/s, "
          f"{1000 * base['cpu_s'] / base['frames']:.0f} CPU-ms/frame, peak RSS {base['peak_rss_mb']:.0f} MB")
    runs = [("tiny", video, audio)]
    if not args.skip_paper:
        runs.append(("paper", *make_inputs(work, args.paper_seconds, size)))
    for preset, v, a in runs:
        r = run_child("dub", video=str(v), audio=str(a), out=str(work / f"dub-{preset}.mp4"),
                      bundle=str(make_bundle(work, preset)), device=args.device, threads=args.threads)
        print(f"dub {preset:5s} on {args.device}: {r['frames']} frames ({r['dubbed']} dubbed) "
              f"{r['fps']:.2f} frames/s end to end, ratio to baseline {r['fps'] / base['fps']:.3f}, "
              f"{1000 * r['cpu_s'] / r['frames']:.0f} CPU-ms/frame (baseline x{r['cpu_s'] / r['frames'] / (base['cpu_s'] / base['frames']):.1f}), "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
        print(f"  split: {split_line(r['timings'])}")


def memory(work: Path, args) -> None:
    short, long = (float(s) for s in args.mem_seconds.split(","))
    bundle = str(make_bundle(work, "tiny"))
    rss = {}
    for seconds in (short, long):
        video, audio = make_inputs(work, seconds, (1920, 1080))
        r = run_child("dub", video=str(video), audio=str(audio), out=str(work / f"mem-{seconds:g}.mp4"),
                      bundle=bundle, device=args.device, threads=args.threads)
        rss[seconds] = r["peak_rss_mb"]
        print(f"1080p {seconds:g} s ({r['frames']} frames): peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"{r['fps']:.2f} frames/s")
    print(f"peak RSS ratio {long:g} s / {short:g} s: {rss[long] / rss[short]:.3f} (1.0 = constant memory)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--paper-seconds", type=float, default=2.0)
    ap.add_argument("--mem-seconds", default="35,70", help="short,long 1080p lengths for the memory check")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="dub.cpu_threads (0 = torch's default)")
    ap.add_argument("--work", default=None, help="keep inputs and outputs here (default: a temp folder)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fn = {"passthrough": child_passthrough, "dub": child_dub}[args.child]
        print(json.dumps(fn(**json.loads(args.child_args))))
        return
    with tempfile.TemporaryDirectory(prefix="dub-bench-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_speed:
            speed(work, args)
        if not args.skip_memory:
            memory(work, args)


if __name__ == "__main__":
    main()
