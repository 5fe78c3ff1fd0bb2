"""Small stand-ins for the per-video stage and the Whisper encoder (tests only, never product code).

An input "video" is a JSON file named *.mp4: {"clips": n, "frames": T, "reject": reason | null,
"crash": bool, "sleep": s}. The stand-ins let the Ray structure, shard packing, accounting and
resume be tested in seconds; tests/pipelines/test_curate_e2e.py runs the real stages.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from pipelines.curate_stages import Stages

CROP = 32  # small crops keep the stand-in fast; the e2e test checks the real 256x256


def fake_extract(path, preprocess, video_id):
    from preprocessing.media import MediaError

    data = Path(path).read_bytes()
    if not data:
        raise MediaError("empty_file", f"{path}: file is empty (0 bytes)")
    spec = json.loads(data)
    time.sleep(spec.get("sleep", 0.0))
    if spec.get("crash"):
        os._exit(3)  # a decoder segfault, as far as Ray can tell
    if spec.get("reject"):
        return SimpleNamespace(info=None, clips=[], rejected_clips=[], status="rejected",
                               reason=spec["reject"], message=f"stand-in says {spec['reject']}")
    rng = np.random.default_rng(abs(hash(video_id)) % 2**32)
    t = spec.get("frames", 10)
    clips = [SimpleNamespace(
        video_id=video_id, index=i, start_frame=i * t, end_frame=(i + 1) * t, fps=25.0,
        crops=rng.integers(0, 255, (t, CROP, CROP, 3), dtype=np.uint8),
        landmarks=rng.random((t, 68, 2), dtype=np.float32) * CROP, affine=np.tile(np.eye(2, 3, dtype=np.float32), (t, 1, 1)),
        audio=(rng.standard_normal(t * 640) * 0.1).astype(np.float32), face_size=100.0 + i,
        scores={"blur": 50.0 + i, "sync_confidence": 3.0}) for i in range(spec.get("clips", 1))]
    return SimpleNamespace(info=None, clips=clips, rejected_clips=[("too_short", "tail")], status="accepted",
                           reason=None, message="")


class FakeWhisper:
    dim = 8

    def __init__(self, cfg):
        self.cfg = cfg

    def batch(self, audios, n_frames):
        return [np.full((2 * t, self.dim), 0.5, np.float16) for t in n_frames]


def stages() -> Stages:
    """Stand-in stages, pickled by value so Ray workers need not import the tests package."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return Stages(extract=fake_extract, whisper=FakeWhisper)


def write_corpus(root: Path, n_good: int = 6, *, sleep: float = 0.0) -> dict[str, Path]:
    """Good inputs in identity folders plus one of each failure the stand-in can produce."""
    out: dict[str, Path] = {}
    for i in range(n_good):
        p = root / f"person{i % 3}" / f"talk{i:02d}.mp4"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"clips": 1 + i % 3, "frames": 10 + i, "sleep": sleep}))
        out[f"good{i}"] = p
    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "noface.mp4").write_text(json.dumps({"reject": "no_face"}))
    (bad / "notes.txt").write_text("not a video: not listed")
    out.update(empty=bad / "empty.mp4", noface=bad / "noface.mp4")
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.pipelines.curate_standins OUT INPUT... [--address A] [--temp-dir D] [--set k=v]``:
    a curation driver with stand-in stages, for tests that kill it or submit it to a cluster."""
    import argparse

    from pipelines.curate import run_curation
    from pipelines.curate_config import CurateConfig
    from pipelines.storage import StorageConfig
    from preprocessing.config import PreprocessConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("output")
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--address")
    ap.add_argument("--temp-dir")
    ap.add_argument("--shard-max-samples", type=int, default=2000)
    args = ap.parse_args(argv)
    cfg = CurateConfig(shard_max_samples=args.shard_max_samples, num_workers=2)
    summary = run_curation(args.inputs, args.output, cfg, PreprocessConfig(), StorageConfig(),
                           ray_address=args.address, ray_temp_dir=args.temp_dir, progress=False, stages=stages())
    print(summary.render())


if __name__ == "__main__":
    main()
