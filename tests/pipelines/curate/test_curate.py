"""The curation job's structure with stand-in stages: accounting of every input, shard packing,
identity split, index, report, resume and overwrite. Real media: test_curate_e2e.py."""

from __future__ import annotations

import json
import os
import subprocess

import pandas as pd
import pytest
import webdataset as wds

from iptalker_model.config import ModelConfig
from pipelines.curate.config import CurateConfig
from pipelines.curate.job import run_curation
from pipelines.data import shards
from pipelines.data.geometry import geometry_mismatch, geometry_record
from pipelines.data.storage import Storage, StorageConfig, join
from preprocessing.config import PreprocessConfig
from tests.fixtures import curate_standins as standins
from tests.fixtures.whisper import random_preprocess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local(s3_endpoint):
    """One in-process Ray for the module (run_curation reuses an initialised Ray). Started after
    the S3 endpoint so that workers inherit its AWS_* variables, as cluster nodes would have."""
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=f"/tmp/rt-cur{os.getpid()}", log_to_driver=False)
    yield
    ray.shutdown()


def curate(inputs, out, retry=(), **cfg):
    return run_curation([str(i) for i in inputs], str(out), CurateConfig(**cfg), random_preprocess(),
                        StorageConfig(), progress=False, retry=retry, stages=standins.stages())


def all_samples(storage: Storage, root: str) -> list[dict]:
    out = []
    for shard in shards.list_done_shards(storage, root):
        with storage.local_copy(shard.tar) as local:
            out += list(wds.WebDataset(str(local), shardshuffle=False, empty_check=False).decode())
    return out


def test_every_input_accounted_and_packed_whole(ray_local, tmp_path):
    corpus = standins.write_corpus(tmp_path / "in", n_good=6)
    out = tmp_path / "ds"
    summary = curate([tmp_path / "in"], out, shard_max_samples=3, val_fraction=0.0, val_identities=("person1",))

    inputs = pd.read_parquet(out / "index/inputs.parquet").set_index("uri")
    assert set(inputs.index) == {str(p) for p in corpus.values()}  # notes.txt is not a video
    assert inputs.loc[str(corpus["empty"]), "reason"] == "empty_file"
    assert inputs.loc[str(corpus["noface"]), "reason"] == "no_face"
    good = inputs[inputs["status"] == "accepted"]
    assert len(good) == 6 and good["clips"].sum() == sum(1 + i % 3 for i in range(6))

    samples = all_samples(Storage(), str(out))
    keys = [s["__key__"] for s in samples]
    assert len(keys) == len(set(keys)) == good["clips"].sum()
    for s in samples:
        assert s["whisper.npy"].shape == (2 * s["landmarks.npy"].shape[0], 8)
        assert s["json"]["split"] == ("val" if s["json"]["identity"] == "person1" else "train")
    # each input's samples live in exactly one shard
    clips = pd.read_parquet(out / "index/clips.parquet")
    assert clips.groupby("video_id")["shard"].nunique().max() == 1
    assert set(clips["key"]) == set(keys)
    assert clips.groupby("identity")["split"].nunique().max() == 1

    doc = json.loads((out / "dataset.json").read_text())
    assert doc["counts"]["inputs"] == 8 and doc["counts"]["clips"] == len(keys)
    assert doc["config"]["curate"]["shard_max_samples"] == 3 and doc["code_version"]
    assert doc["geometry"] == geometry_record(PreprocessConfig().align, ModelConfig())  # what train checks
    assert geometry_mismatch(doc["geometry"], ModelConfig.tiny()) is None  # tiny: same mask, smaller S
    page = (out / "report/index.html").read_text()
    assert json.loads(good["clip_reject_reasons"].iloc[0]) == {"too_short": 1}
    for png in ("rejections.png", "clip_rejections.png", "durations.png", "face_sizes.png", "blur.png", "sync.png", "samples_per_shard.png"):
        assert f"src='{png}'" in page and (out / "report" / png).stat().st_size > 1000
    assert list((out / "report").glob("thumb-*.png"))
    text = summary.render()
    assert "8 inputs" in text and str(out / "report/index.html") in text


def test_transient_failures_are_redone_on_rerun_and_retry_redoes_chosen_final_ones(ray_local, tmp_path):
    """worker_crashed is retryable: a plain rerun redoes it; no_face is final until ``--retry
    no_face``. No input is duplicated and the summary counts what was retried. (The timeout
    case: the next test.)"""
    corpus = standins.write_corpus(tmp_path / "in", n_good=2)
    crash = tmp_path / "in/bad/segfault.mp4"
    crash.write_text(json.dumps({"crash": True}))
    out = tmp_path / "ds"
    first = curate([tmp_path / "in"], out)
    inputs = pd.read_parquet(out / "index/inputs.parquet").set_index("uri")
    assert inputs.loc[str(crash), "reason"] == "worker_crashed"
    assert first.counts["accepted"] == 2 and not first.retried

    for p in (crash, corpus["noface"]):  # the transient cause is gone; no_face stays until asked
        p.write_text(json.dumps({"clips": 1}))
    second = curate([tmp_path / "in"], out)
    assert second.retried == {"worker_crashed": 1} and "1 retried" in second.render()
    inputs = pd.read_parquet(out / "index/inputs.parquet").set_index("uri")
    assert inputs.loc[str(crash), "status"] == "accepted"
    assert inputs.loc[str(corpus["noface"]), "reason"] == "no_face"

    third = curate([tmp_path / "in"], out, retry=("no_face",))
    assert third.retried == {"no_face": 1} and third.resumed_inputs == third.counts["inputs"] - 1
    inputs = pd.read_parquet(out / "index/inputs.parquet")
    assert inputs["uri"].is_unique and len(inputs) == 5
    assert inputs.loc[inputs.uri == str(corpus["noface"]), "status"].item() == "accepted"
    keys = [s["__key__"] for s in all_samples(Storage(), str(out))]
    assert len(keys) == len(set(keys)) == third.counts["clips"] == 1 + 2 + 2  # good0, good1, 2 redone
    assert not curate([tmp_path / "in"], out).retried  # empty_file is final: nothing left to redo


def test_a_hung_video_is_cancelled_at_its_own_timeout_while_others_keep_finishing(ray_local, tmp_path):
    pidfile, events = tmp_path / "hang.pid", tmp_path / "events.jsonl"
    hang = tmp_path / "in/a_hang/hang.mp4"  # listed first: it starts with the first good video
    hang.parent.mkdir(parents=True)
    hang.write_text(json.dumps({"sleep": 600, "pidfile": str(pidfile)}))
    for i in range(30):  # ~30 s of work on the other worker, well past the hung video's 20 s limit
        p = tmp_path / f"in/person{i % 2}/talk{i}.mp4"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"clips": 1, "sleep": 1.0, "events": str(events), "watch": str(pidfile)}))
    # the limit counts from submission, so it leaves room for a cold worker to start on a busy machine
    summary = curate([tmp_path / "in"], tmp_path / "ds", video_timeout_s=20.0, num_workers=2)
    inputs = pd.read_parquet(tmp_path / "ds/index/inputs.parquet").set_index("uri")
    assert inputs.loc[str(hang), "reason"] == "timeout"
    # on a saturated machine a cold worker can eat a good video's budget too: then it is a timeout
    timeouts = int((inputs["reason"] == "timeout").sum())
    assert summary.counts["accepted"] + timeouts == 31 and summary.counts["accepted"] >= 15
    seen = [json.loads(line)["watched_alive"] for line in events.read_text().splitlines()]
    assert True in seen  # the hung video was running while the first ones finished ...
    assert False in seen  # ... and was killed while others were still finishing

    hang.write_text(json.dumps({"clips": 1}))  # a timeout is retryable: the rerun redoes it
    again = curate([tmp_path / "in"], tmp_path / "ds")
    assert again.retried == {"timeout": timeouts} and again.counts["accepted"] == 31


def test_rerun_skips_done_inputs_and_overwrite_starts_over(ray_local, tmp_path):
    standins.write_corpus(tmp_path / "in", n_good=4)
    out = tmp_path / "ds"
    first = curate([tmp_path / "in"], out, shard_max_samples=2)
    keys = {s["__key__"] for s in all_samples(Storage(), str(out))}
    (tmp_path / "in/person0/late.mp4").write_text(json.dumps({"clips": 2}))
    second = curate([tmp_path / "in"], out, shard_max_samples=2)
    assert second.resumed_inputs == first.counts["inputs"]
    after = [s["__key__"] for s in all_samples(Storage(), str(out))]
    assert len(after) == len(set(after)) and set(after) - keys == {
        shards.sample_key(shards.video_id_for(str(tmp_path / "in/person0/late.mp4")), i) for i in range(2)}
    unchanged = curate([tmp_path / "in"], out, shard_max_samples=2)  # nothing to do: index rebuilt only
    assert unchanged.resumed_inputs == unchanged.counts["inputs"] and unchanged.counts["clips"] == len(after)
    third = run_curation([str(tmp_path / "in")], str(out), CurateConfig(), random_preprocess(), StorageConfig(),
                         overwrite=True, progress=False, stages=standins.stages())
    assert third.resumed_inputs == 0 and third.counts["shards"] == 2  # one per split's shard set


def test_inputs_from_a_csv_list_with_identities(ray_local, tmp_path):
    corpus = standins.write_corpus(tmp_path / "in", n_good=3)
    listing = tmp_path / "list.csv"
    pd.DataFrame({"uri": [str(corpus["good0"]), str(corpus["good1"])], "identity": ["alice", "bob"]}).to_csv(listing)
    summary = curate([listing], tmp_path / "ds", identity_source="input_list", val_fraction=0.0,
                     val_identities=("bob",), shard_max_bytes=1)
    clips = pd.read_parquet(tmp_path / "ds/index/clips.parquet")
    assert dict(zip(clips["identity"], clips["split"])) == {"alice": "train", "bob": "val"}
    assert summary.counts["shards"] == 2  # the byte target closes a shard after each (whole) input


def test_s3_input_and_output(ray_local, tmp_path, s3_bucket):
    st = Storage()
    corpus = standins.write_corpus(tmp_path / "in", n_good=3)
    for p in corpus.values():
        st.put(p, join(s3_bucket, "raw", p.parent.name, p.name))
    root = join(s3_bucket, "datasets/v1")
    summary = run_curation([join(s3_bucket, "raw")], root, CurateConfig(), random_preprocess(), StorageConfig(),
                           progress=False, stages=standins.stages())
    assert summary.counts["inputs"] == 5 and summary.counts["accepted"] == 3
    inputs = pd.read_parquet(st.open(join(root, "index/inputs.parquet")))
    assert all(u.startswith("s3://") for u in inputs["uri"])
    assert len(all_samples(st, root)) == summary.counts["clips"]
    assert st.exists(join(root, "report/index.html")) and st.exists(join(root, "dataset.json"))


@pytest.fixture
def unwritable_shards_dir(tmp_path):
    """``<root>/shards`` made immutable (chattr +i: blocks even root); skips where unsupported."""
    shards_dir = tmp_path / "ds" / "shards"
    shards_dir.mkdir(parents=True)
    if subprocess.run(["chattr", "+i", str(shards_dir)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    yield shards_dir
    subprocess.run(["chattr", "-i", str(shards_dir)], check=True)


def test_failing_shard_writes_are_retried_reported_then_redone(ray_local, tmp_path, unwritable_shards_dir):
    standins.write_corpus(tmp_path / "in", n_good=3)
    failed = curate([tmp_path / "in"], tmp_path / "ds", shard_max_samples=2, shard_write_retries=1,
                    shard_retry_backoff_s=0.01)
    assert failed.failed_shard_writes >= 1 and "FAILED" in failed.render()
    inputs = pd.read_parquet(tmp_path / "ds/index/inputs.parquet")
    assert set(inputs.loc[inputs.uri.str.contains("person"), "reason"]) == {"shard_write_failed"}
    assert len(inputs) == 5  # reported, not lost

    subprocess.run(["chattr", "-i", str(unwritable_shards_dir)], check=True)
    redone = curate([tmp_path / "in"], tmp_path / "ds", shard_max_samples=2)
    assert redone.failed_shard_writes == 0 and redone.counts["accepted"] == 3
    assert redone.counts["clips"] == len(all_samples(Storage(), str(tmp_path / "ds"))) == 1 + 2 + 3
    subprocess.run(["chattr", "+i", str(unwritable_shards_dir)], check=True)  # the fixture undoes it
