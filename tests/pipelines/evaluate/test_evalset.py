"""The frozen eval set: deterministic, pinned to the shards' sha256, refused when they change."""

import json

import pytest

from pipelines.data.storage import Storage
from pipelines.errors import UserError
from pipelines.evaluate.evalset import build_evalset, load_evalset
from tests.fixtures.corpus import write_corpus


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalset") / "data"
    return write_corpus(str(root), videos=5, clips=2, frames=20, size=32, dim=8, val_videos=2)


def test_build_is_deterministic_and_pairs_each_clip_with_another(data):
    st = Storage()
    a = build_evalset(data, st, split="val", max_clips=3, seed=0)
    b = build_evalset(data, st, split="val", max_clips=3, seed=0)
    assert a.version == b.version and len(a.samples) == 3
    assert all(k.startswith(("vid3-", "vid4-")) for k in (s["key"] for s in a.samples))  # val only
    assert all(a.cross_audio[k] != k for k in a.cross_audio)
    assert build_evalset(data, st, split="val", max_clips=4, seed=0).version != a.version
    with pytest.raises(UserError, match="no 'test' clips"):
        build_evalset(data, st, split="test", max_clips=3, seed=0)


def test_saved_manifest_reloads_and_pins_the_shards(data, tmp_path):
    st = Storage()
    es = build_evalset(data, st, split="val", max_clips=3, seed=0)
    path = es.save(tmp_path / "evalset.json")
    assert load_evalset(path, data, st).version == es.version
    raw = json.loads(path.read_text())
    raw["samples"] = raw["samples"][:1]                              # edited by hand
    (tmp_path / "edited.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match="does not match its version"):
        load_evalset(tmp_path / "edited.json", data, st)
    name = next(iter(es.shards))
    marker = f"{data}/shards/{es.split}/{name}.done.json"  # shards live in per-split sets
    record = json.loads(open(marker).read())
    saved = record["sha256"]
    record["sha256"] = "f" * 64                                      # the shard was rewritten
    open(marker, "w").write(json.dumps(record))
    try:
        with pytest.raises(UserError, match="the clips changed"):
            load_evalset(path, data, st)
    finally:
        record["sha256"] = saved
        open(marker, "w").write(json.dumps(record))
    with pytest.raises(UserError, match="no eval-set manifest"):
        load_evalset(tmp_path / "missing.json", data, st)
