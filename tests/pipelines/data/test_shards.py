"""The shard contract: atomic commit (done.json last), public-webdataset readability, cleanup."""

from __future__ import annotations

import json

import numpy as np
import pytest
import webdataset as wds

from pipelines.data import shards
from pipelines.data.storage import Storage, join


def make_sample(video_id: str, clip: int, t: int = 5, d: int = 8, split: str = "train") -> shards.Sample:
    key = shards.sample_key(video_id, clip)
    files = shards.encode_sample(
        frames_mp4=b"\x00fake-mp4", audio_flac=b"fLaC-fake", whisper=np.ones((2 * t, d), np.float32),
        landmarks=np.zeros((t, 68, 2), np.float32), affine=np.zeros((t, 2, 3), np.float32),
        meta={"key": key, "identity": "a", "split": split})
    return shards.Sample(key, files, {"video_id": video_id, "clip": clip, "identity": "a", "split": split})


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    return str(tmp_path / "ds") if request.param == "local" else request.getfixturevalue("s3_bucket") + "/ds"


def test_video_id_and_key_have_no_dots():
    vid = shards.video_id_for("s3://b/some.dir/My Clip.v2.mp4")
    assert "." not in vid and "/" not in vid and vid.startswith("My_Clip")
    assert shards.video_id_for("a/x.mp4") != shards.video_id_for("b/x.mp4")
    assert shards.sample_key(vid, 3).endswith("-0003")
    with pytest.raises(ValueError):
        shards.sample_key("bad.id", 0)


def test_encode_sample_enforces_contract_shapes():
    with pytest.raises(ValueError):
        shards.encode_sample(frames_mp4=b"", audio_flac=b"", whisper=np.zeros((9, 4)),
                             landmarks=np.zeros((5, 68, 2)), affine=np.zeros((5, 2, 3)), meta={})


def test_write_then_read_with_public_webdataset(root):
    st = Storage()
    samples = [make_sample("vidA_0123", i) for i in range(3)]
    record = shards.write_shard(st, root, 0, samples, [{"uri": "in/a.mp4", "status": "accepted", "clips": 3}])
    assert record["samples"] == 3 and record["keys"] == [s.key for s in samples]
    done = shards.list_done_shards(st, root)
    assert [d.name for d in done] == ["shard-000000"] and done[0].record["sha256"] == record["sha256"]
    names = sorted(u.rsplit("/", 1)[-1] for u in st.ls(join(root, "shards", "train")))
    assert names == ["shard-000000.done.json", "shard-000000.parquet", "shard-000000.tar"]
    assert done[0].split == "train" and done[0].record["split"] == "train"

    with st.local_copy(done[0].tar) as local:
        got = list(wds.WebDataset(str(local), shardshuffle=False).decode())
    assert [g["__key__"] for g in got] == [s.key for s in samples]
    assert got[0]["whisper.npy"].dtype == np.float16 and got[0]["whisper.npy"].shape == (10, 8)
    assert got[0]["landmarks.npy"].shape == (5, 68, 2) and got[0]["affine.npy"].shape == (5, 2, 3)
    assert got[0]["json"]["identity"] == "a"

    ours = list(shards.iter_shard_samples(st, done[0].tar))
    assert [k for k, _ in ours] == [s.key for s in samples]
    assert ours[1][1]["json"]["key"] == samples[1].key


def test_incomplete_shards_are_invisible_and_removed(root):
    st = Storage()
    shards.write_shard(st, root, 0, [make_sample("v_1", 0)], [])
    shards.write_shard(st, root, 1, [make_sample("v_2", 0)], [])
    shards.write_shard(st, root, 2, [make_sample("v_3", 0, split="val")], [], "val")
    st.rm(join(root, "shards", "train", "shard-000001.done.json"))  # a crash before the commit marker
    st.write_bytes(join(root, "shards", "train", ".tmp-abc-shard-000003.tar"), b"partial")
    st.write_bytes(join(root, "shards", "val", ".tmp-abc-shard-000004.tar"), b"partial")
    assert [d.name for d in shards.list_done_shards(st, root)] == ["shard-000000", "shard-000002"]
    assert [d.name for d in shards.list_done_shards(st, root, "val")] == ["shard-000002"]
    removed = shards.remove_incomplete(st, root)
    assert len(removed) == 4
    names = sorted(u.rsplit("/", 1)[-1] for u in st.ls(join(root, "shards", "train")))
    assert names == ["shard-000000.done.json", "shard-000000.parquet", "shard-000000.tar"]
    assert len(st.ls(join(root, "shards", "val"))) == 3  # the val set is untouched


def test_a_shard_holds_one_split(tmp_path):
    with pytest.raises(ValueError, match="do not belong to the .train. shard set"):
        shards.write_shard(Storage(), str(tmp_path), 0, [make_sample("v_1", 0, split="val")], [], "train")


def test_failing_write_is_retried_then_reported(tmp_path, monkeypatch):
    st = Storage()
    calls = []
    real_put = Storage.put

    def flaky_put(self, local, uri):
        calls.append(uri)
        if len(calls) <= 2:
            raise OSError("disk hiccup")
        return real_put(self, local, uri)

    monkeypatch.setattr(Storage, "put", flaky_put)
    record, error = shards.write_shard_with_retry(st, str(tmp_path), 0, [make_sample("v_1", 0)], [],
                                                  retries=3, backoff_s=0.0)
    assert record is not None and error is None
    calls.clear()
    monkeypatch.setattr(Storage, "put", lambda self, local, uri: (_ for _ in ()).throw(OSError("gone")))
    record, error = shards.write_shard_with_retry(st, str(tmp_path), 1, [make_sample("v_2", 0)], [],
                                                  retries=2, backoff_s=0.0)
    assert record is None and "gone" in error
    assert [d.name for d in shards.list_done_shards(st, str(tmp_path))] == ["shard-000000"]
    assert json.loads(st.read_bytes(str(tmp_path / "shards" / "train" / "shard-000000.done.json")))["samples"] == 1
