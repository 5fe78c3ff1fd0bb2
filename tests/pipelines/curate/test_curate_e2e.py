"""End to end with the real stages: synthetic corpus (good + every bad kind) -> curation -> the
public ``webdataset`` library reads every sample with the contract's shapes; every input is
in the index and none is lost. Locally and with input and output on the loopback S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import webdataset as wds

from pipelines.curate.config import CurateConfig
from pipelines.curate.job import run_curation
from pipelines.data import shards
from pipelines.data.storage import Storage, StorageConfig, join
from preprocessing.synthetic.corpus import BAD_KINDS, generate_corpus, write_bad_inputs
from tests.fixtures.whisper import ALLOW_RANDOM_SET, random_preprocess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(root / "talk", 4, seed=7, n_identities=2, seconds=(2.0, 3.0))
    write_bad_inputs(root / "bad", seed=7)
    return root


def video_files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*.mp4")}


def mp4_shape(data: bytes) -> tuple[int, int, int, float]:
    """(frames, height, width, fps) of an in-memory mp4, decoded with OpenCV."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        cap = cv2.VideoCapture(f.name)
        fps = cap.get(cv2.CAP_PROP_FPS)
        n, shape = 0, None
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            n, shape = n + 1, frame.shape
        cap.release()
    return n, shape[0], shape[1], fps


def check_dataset(storage: Storage, root: str, listed: set[str], uri_of) -> None:
    inputs = pd.read_parquet(storage.open(join(root, shards.INPUTS_PARQUET))).set_index("uri")
    assert set(inputs.index) == listed  # every input is in the index
    for kind in BAD_KINDS:
        row = inputs.loc[uri_of(f"bad/{kind}.mp4")]
        assert row["status"] == "rejected" and row["reason"] and row["message"], (kind, dict(row))
    talk = inputs[inputs.index.str.contains("/talk/")]
    assert (talk["status"] == "accepted").all(), talk[["reason", "message"]]

    samples = []
    for shard in shards.list_done_shards(storage, root):
        with storage.local_copy(shard.tar) as local:
            samples += list(wds.WebDataset(str(local), shardshuffle=False, empty_check=False).decode())
    keys = [s["__key__"] for s in samples]
    accepted = inputs[inputs["status"] == "accepted"]
    assert len(keys) == len(set(keys)) == accepted["clips"].sum() > 0  # no input lost, no duplicate
    assert {s["json"]["source_uri"] for s in samples} == set(accepted.index)
    for s in samples:
        assert set(s) - {"__key__", "__url__", "__local_path__"} == set(shards.SAMPLE_FIELDS)
        t = s["landmarks.npy"].shape[0]
        assert s["landmarks.npy"].shape == (t, 68, 2) and s["landmarks.npy"].dtype == np.float32
        assert s["affine.npy"].shape == (t, 2, 3) and s["affine.npy"].dtype == np.float32
        assert s["whisper.npy"].dtype == np.float16 and s["whisper.npy"].shape[0] == 2 * t
        assert mp4_shape(s["frames.mp4"]) == (t, 256, 256, 25.0)
        meta = s["json"]
        assert meta["frames"] == t and meta["split"] in ("train", "val") and meta["identity"]
        assert len(meta["source_sha256"]) == 64 and meta["face_size"] > 0 and "blur" in meta["scores"]
        assert meta["whisper_encoder"]["random_init"] and meta["whisper_encoder"]["name"].startswith("random-init")
    encoder = json.loads(storage.read_bytes(join(root, shards.DATASET_JSON)))["whisper"]
    assert encoder["random_init"] and encoder["name"].startswith("random-init") and len(encoder["sha256"]) == 64
    assert {s["json"]["whisper_encoder"]["sha256"] for s in samples} == {encoder["sha256"]}


def test_iptalker_curate_cli_end_to_end(corpus, tmp_path):
    out = tmp_path / "ds"
    cmd = [str(Path(sys.executable).with_name("iptalker")), "curate", "--input", str(corpus), "--output", str(out),
           "--set", f"ray.temp_dir=/tmp/rt-e{os.getpid()}", "--set", "curate.shard_max_samples=2", "--set", "curate.val_identities=[id01]",
           "--set", ALLOW_RANDOM_SET]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert str(out / "report" / "index.html") in run.stdout and "rejected" in run.stdout  # the summary
    assert "video/s" in run.stderr or "s/video" in run.stderr  # the progress bar (rate, ETA)
    check_dataset(Storage(), str(out), video_files(corpus), lambda rel: str(corpus / rel))
    doc = json.loads((out / "dataset.json").read_text())
    assert doc["counts"]["inputs"] == len(video_files(corpus)) and doc["counts"]["shards"] >= 2
    ids = doc["counts"]["identities_by_split"]
    assert ids["val"] == 1 and ids["train"] >= 1  # identity-disjoint split, forced val face


def test_curate_end_to_end_on_s3(corpus, s3_bucket):
    st = Storage()
    for path in video_files(corpus):
        st.put(path, join(s3_bucket, "raw", str(Path(path).relative_to(corpus))))
    root = join(s3_bucket, "datasets", "v1")
    summary = run_curation([join(s3_bucket, "raw")], root, CurateConfig(),
                           random_preprocess(), StorageConfig(), ray_temp_dir=f"/tmp/rt-s{os.getpid()}",
                           progress=False)
    listed = {join(s3_bucket, "raw", str(Path(p).relative_to(corpus))) for p in video_files(corpus)}
    check_dataset(st, root, listed, lambda rel: join(s3_bucket, "raw", rel))
    assert summary.counts["inputs"] == len(listed)
    assert st.exists(join(root, "report/index.html")) and st.exists(join(root, "dataset.json"))
