"""The shard loader: contract-conforming windows, split by identity, corrupt data skipped, s3://.

``write_corpus`` builds a tiny curated dataset through the shard contract's own writer: faces whose
mouth opening follows a per-clip loudness curve, and Whisper-like rows that encode the same curve,
so a SyncNet can learn real audio-visual sync from it within a few dozen steps.
"""

from __future__ import annotations

import json
import subprocess

import cv2
import numpy as np
import pytest
import torch

from iptalker_model.batch import check_batch
from pipelines import shards as contract
from pipelines.loader import WindowSpec, build_train_loader, build_val_loader, list_shards
from pipelines.storage import Storage, join

SPEC = WindowSpec(frames=5, references=3, image_size=32, audio_context=2, audio_dim=384)


def _mp4(frames: np.ndarray) -> bytes:
    """uint8 [N, S, S, 3] RGB -> H.264 mp4 bytes (ffmpeg via pipes, 25 fps)."""
    n, h, w, _ = frames.shape
    args = ["ffmpeg", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
            "-framerate", "25", "-i", "pipe:0", "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv420p", "-movflags", "frag_keyframe+empty_moov", "-f", "mp4", "pipe:1"]
    return subprocess.run(args, input=frames.tobytes(), capture_output=True, check=True).stdout


def synthetic_clip(rng: np.random.Generator, identity: int, n: int, size: int, dim: int):
    """(frames uint8 [n, size, size, 3], whisper float32 [2n, dim]) with a shared loudness curve."""
    loud = np.convolve(rng.random(n + 4), np.ones(5) / 5, mode="valid")[:n]
    loud = (loud - loud.min()) / (np.ptp(loud) + 1e-6)
    hue = (37 * identity) % 180
    skin = cv2.cvtColor(np.uint8([[[hue, 120, 200]]]), cv2.COLOR_HSV2RGB)[0, 0].tolist()
    frames = np.zeros((n, size, size, 3), np.uint8)
    c = size // 2
    for t in range(n):
        f = frames[t]
        f[:] = (30 + 20 * identity % 200, 40, 60)
        cv2.ellipse(f, (c, c), (int(size * 0.32), int(size * 0.42)), 0, 0, 360, skin, -1)
        for ex in (c - size // 7, c + size // 7):
            cv2.circle(f, (ex, int(size * 0.4)), max(1, size // 20), (20, 20, 20), -1)
        cv2.ellipse(f, (c, int(size * 0.7)), (size // 7, 1 + int(loud[t] * size * 0.1)), 0, 0, 360,
                    (120, 20, 30), -1)
    proj = np.random.default_rng(999).standard_normal(dim).astype(np.float32)
    rows = np.repeat(loud, 2)[:, None] * proj[None] + 0.05 * rng.standard_normal((2 * n, dim))
    return frames, rows.astype(np.float32)


def write_corpus(root: str, *, videos: int = 4, clips: int = 2, frames: int = 40, size: int = 64,
                 dim: int = 384, val_videos: int = 1, samples_per_shard: int = 4, seed: int = 0,
                 storage: Storage | None = None) -> str:
    """A contract-conforming dataset under ``root``: shards (+done.json) and dataset.json.

    The last ``val_videos`` videos are their own identities in the ``val`` split.
    """
    storage = storage or Storage()
    rng = np.random.default_rng(seed)
    samples = []
    for v in range(videos):
        split = "val" if v >= videos - val_videos else "train"
        for k in range(clips):
            clip, rows = synthetic_clip(rng, v, frames, size, dim)
            key = contract.sample_key(f"vid{v}", k)
            meta = {"identity": f"id{v}", "split": split, "fps": 25, "size": size, "frames": frames}
            files = contract.encode_sample(
                frames_mp4=_mp4(clip), audio_flac=b"fLaC", whisper=rows,
                landmarks=np.zeros((frames, 68, 2), np.float32),
                affine=np.tile(np.eye(2, 3, dtype=np.float32), (frames, 1, 1)), meta=meta)
            samples.append(contract.Sample(key, files, {"identity": f"id{v}", "split": split}))
    for i in range(0, len(samples), samples_per_shard):
        contract.write_shard(storage, root, i // samples_per_shard, samples[i:i + samples_per_shard], [])
    storage.write_bytes(join(root, contract.DATASET_JSON),
                        json.dumps({"version": "test-1", "samples": len(samples)}).encode())
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("corpus")))


def test_train_batches_follow_the_batch_contract(corpus):
    loader = build_train_loader(corpus, SPEC, batch_size=3, rank=0, seed=1, num_workers=0,
                                shuffle_buffer=8, windows_per_clip=2, epoch_batches=4)
    batches = list(loader)
    assert len(batches) == 4  # with_epoch bounds the resampled (infinite) stream
    b = batches[0]
    check_batch(b)
    assert b["frames"].shape == (3, 5, 3, 32, 32) and b["references"].shape == (3, 3, 3, 32, 32)
    assert b["audio"].shape == (3, 5, 10, 384) and b["sync_audio"].shape == (3, 10, 384)
    assert b["frames"].min() >= -1 and b["frames"].max() <= 1 and b["frames"].dtype == torch.float32
    assert int(sum(x["corrupt_skipped"] for x in batches)) == 0


def test_validation_uses_only_the_held_out_identity(corpus, monkeypatch):
    seen = []
    real = json.loads

    def spy(raw, *a, **k):
        out = real(raw, *a, **k)
        if isinstance(out, dict) and "split" in out and out["split"] == "val":
            seen.append(out["identity"])
        return out

    monkeypatch.setattr("pipelines.loader.json.loads", spy)
    batches = list(build_val_loader(corpus, SPEC, batch_size=2, max_batches=5))
    assert len(batches) == 1 and batches[0]["frames"].shape[0] == 2  # 1 val video x 2 clips
    assert set(seen) == {"id3"}
    again = list(build_val_loader(corpus, SPEC, batch_size=2, max_batches=5))
    assert torch.equal(again[0]["frames"], batches[0]["frames"])  # deterministic


def test_ranks_draw_different_streams(corpus):
    def first(rank):
        return next(iter(build_train_loader(corpus, SPEC, batch_size=2, rank=rank, seed=3,
                                            num_workers=0, shuffle_buffer=4, epoch_batches=1)))

    assert not torch.equal(first(0)["frames"], first(1)["frames"])
    assert torch.equal(first(0)["frames"], first(0)["frames"])


def test_corrupt_samples_and_shards_are_skipped_and_counted(tmp_path):
    root = write_corpus(str(tmp_path / "c"), videos=3, val_videos=0, samples_per_shard=2)
    shard0 = tmp_path / "c" / "shards" / "shard-000000.tar"
    data = bytearray(shard0.read_bytes())
    i = data.find(b"ftyp")  # corrupt the first mp4 in place: the tar stays readable
    data[i - 4:i + 4000] = bytes(4004)
    shard0.write_bytes(bytes(data))
    (tmp_path / "c" / "shards" / "shard-000001.tar").write_bytes(b"not a tar at all" * 10)
    loader = build_train_loader(root, SPEC, batch_size=2, rank=0, seed=0, num_workers=0,
                                shuffle_buffer=2, windows_per_clip=1, epoch_batches=6)
    batches = list(loader)
    assert len(batches) == 6
    assert sum(int(b["corrupt_skipped"]) for b in batches) >= 1


def test_shards_without_done_marker_are_invisible(tmp_path):
    root = write_corpus(str(tmp_path / "c"), videos=2, val_videos=0, samples_per_shard=2)
    (tmp_path / "c" / "shards" / "shard-000001.done.json").unlink()
    assert [u.rsplit("/", 1)[-1] for u in list_shards(root)] == ["shard-000000.tar"]


def test_loads_from_s3(s3_bucket):
    root = write_corpus(f"{s3_bucket}/ds", videos=2, clips=1, val_videos=0)
    loader = build_train_loader(root, SPEC, batch_size=2, rank=0, seed=0, num_workers=1,
                                shuffle_buffer=2, epoch_batches=2)
    batches = list(loader)
    assert len(batches) == 2 and batches[0]["frames"].shape == (2, 5, 3, 32, 32)
