"""The shard loader: contract-conforming windows, split by identity, corrupt data skipped, s3://."""

from __future__ import annotations

import json

import pytest
import torch

from iptalker_model.batch import check_batch
from pipelines.data import shards as contract
from pipelines.data.loader import (
    build_train_loader,
    build_val_loader,
    has_split,
    list_shards,
)
from pipelines.data.storage import Storage
from pipelines.errors import UserError
from tests.fixtures.corpus import SPEC, write_corpus


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
    lips = b["landmarks"][..., 48:68, :]                    # crop fractions: the drawn mouth sits
    assert b["landmarks"].shape == (3, 5, 68, 2)           # at 0.7 of the height, centred
    assert torch.allclose(lips[..., 0].mean(), torch.tensor(0.5), atol=0.03)
    assert torch.allclose(lips[..., 1].mean(), torch.tensor(0.7), atol=0.03)
    assert int(sum(x["corrupt_skipped"] for x in batches)) == 0


def test_validation_uses_only_the_held_out_identity(corpus, monkeypatch):
    seen = []
    real = json.loads

    def spy(raw, *a, **k):
        out = real(raw, *a, **k)
        if isinstance(out, dict) and out.get("split") == "val" and "identity" in out:
            seen.append(out["identity"])
        return out

    monkeypatch.setattr("pipelines.data.loader.json.loads", spy)
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
    shard0 = tmp_path / "c" / "shards" / "train" / "shard-000000.tar"
    data = bytearray(shard0.read_bytes())
    i = data.find(b"ftyp")  # corrupt the first mp4 in place: the tar stays readable
    data[i - 4:i + 4000] = bytes(4004)
    shard0.write_bytes(bytes(data))
    (tmp_path / "c" / "shards" / "train" / "shard-000001.tar").write_bytes(b"not a tar at all" * 10)
    loader = build_train_loader(root, SPEC, batch_size=2, rank=0, seed=0, num_workers=0,
                                shuffle_buffer=2, windows_per_clip=1, epoch_batches=6)
    batches = list(loader)
    assert len(batches) == 6
    assert sum(int(b["corrupt_skipped"]) for b in batches) >= 1


def test_shards_without_done_marker_are_invisible(tmp_path):
    root = write_corpus(str(tmp_path / "c"), videos=2, val_videos=0, samples_per_shard=2)
    (tmp_path / "c" / "shards" / "train" / "shard-000001.done.json").unlink()
    assert [u.rsplit("/", 1)[-1] for u in list_shards(root)] == ["shard-000000.tar"]


def test_loads_from_s3(s3_bucket):
    root = write_corpus(f"{s3_bucket}/ds", videos=2, clips=1, val_videos=0)
    loader = build_train_loader(root, SPEC, batch_size=2, rank=0, seed=0, num_workers=1,
                                shuffle_buffer=2, epoch_batches=2)
    batches = list(loader)
    assert len(batches) == 2 and batches[0]["frames"].shape == (2, 5, 3, 32, 32)


def opened_shards(monkeypatch) -> list[str]:
    """Record every shard file the loader opens (through Storage.open, as s3:// reads go too)."""
    opened, real = [], Storage.open

    def spy(self, uri, mode="rb", **kw):
        if str(uri).endswith(".tar"):
            opened.append(str(uri))
        return real(self, uri, mode, **kw)

    monkeypatch.setattr(Storage, "open", spy)
    return opened


def test_validation_opens_only_val_shards_and_training_only_train_shards(corpus, monkeypatch):
    opened = opened_shards(monkeypatch)
    assert len(list(build_val_loader(corpus, SPEC, batch_size=2, max_batches=5))) == 1
    assert opened and all("/shards/val/" in u for u in opened), opened
    opened.clear()
    list(build_train_loader(corpus, SPEC, batch_size=2, rank=0, seed=0, num_workers=0,
                            shuffle_buffer=2, epoch_batches=6))
    assert opened and all("/shards/train/" in u for u in opened), opened


def test_pre_split_flat_datasets_are_still_read_by_sample_split(tmp_path):
    """Shards written straight under shards/ (before the split sets) stay readable."""
    root = write_corpus(str(tmp_path / "c"), videos=3, clips=1, val_videos=1, samples_per_shard=8)
    for split in ("train", "val"):  # move both sets' files into the flat layout
        for f in (tmp_path / "c" / "shards" / split).iterdir():
            f.rename(tmp_path / "c" / "shards" / f.name)
        (tmp_path / "c" / "shards" / split).rmdir()
    assert [s.split for s in contract.list_done_shards(Storage(), root)] == [None, None]
    val = list(build_val_loader(root, SPEC, batch_size=4, max_batches=5))
    assert sum(len(b["frames"]) for b in val) == 1  # the val video's one clip, not the train ones


def test_empty_train_split_is_one_clear_error_not_an_endless_loop(tmp_path):
    only_val = write_corpus(str(tmp_path / "v"), videos=2, clips=1, val_videos=2)
    with pytest.raises(UserError, match="train split .* is empty"):
        build_train_loader(only_val, SPEC, batch_size=2, rank=0, seed=0, num_workers=0)
    with pytest.raises(UserError, match="no finished shards"):
        list_shards(str(tmp_path / "nothing"))
    only_train = write_corpus(str(tmp_path / "t"), videos=2, clips=1, val_videos=0)
    assert not has_split(only_train, "val") and has_split(only_train, "train")


def test_clips_too_short_for_any_window_stop_the_stream(tmp_path):
    """Resampling would spin forever on a split whose clips yield no window: it raises instead."""
    root = write_corpus(str(tmp_path / "s"), videos=2, clips=1, frames=12, val_videos=0)  # < 3 x 5
    loader = build_train_loader(root, SPEC, batch_size=2, rank=0, seed=0, num_workers=0,
                                shuffle_buffer=2, epoch_batches=2)
    with pytest.raises(UserError, match="no train window"):
        list(loader)
