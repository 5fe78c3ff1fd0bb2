"""Input listing and the identity-disjoint split (no Ray)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipelines.curate.config import CurateConfig
from pipelines.curate.identity import IdentityResolver
from pipelines.curate.inputs import InputItem, list_inputs
from pipelines.data.storage import Storage, join
from pipelines.errors import UserError

EXT = CurateConfig().extensions


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return str(path)


def test_dirs_globs_files_and_lists(tmp_path, monkeypatch):
    st = Storage()
    a, b = touch(tmp_path / "in/alice/a.mp4"), touch(tmp_path / "in/bob/b.MOV")
    touch(tmp_path / "in/alice/a.json")  # sidecars are not inputs
    touch(tmp_path / "in/alice/.tmp-123-a.mp4")  # nor temp files
    odd = touch(tmp_path / "odd.bin")
    assert [i.uri for i in list_inputs(st, [str(tmp_path / "in")], EXT)] == [a, b]
    assert [i.uri for i in list_inputs(st, [str(tmp_path / "in/*/*.mp4")], EXT)] == [a]
    monkeypatch.chdir(tmp_path)
    assert [i.uri for i in list_inputs(st, ["odd.bin", a], EXT)] == [a, odd]  # named files kept, absolute
    pd.DataFrame({"uri": [a, b], "identity": ["x", "y"]}).to_parquet(tmp_path / "list.parquet")
    assert list_inputs(st, [str(tmp_path / "list.parquet")], EXT) == [InputItem(a, "x"), InputItem(b, "y")]
    with pytest.raises(UserError, match="not found"):
        list_inputs(st, [str(tmp_path / "missing")], EXT)


def test_s3_prefix_listing(s3_bucket):
    st = Storage()
    for name in ("p1/v1.mp4", "p2/v2.mp4", "p2/v2.json"):
        st.write_bytes(join(s3_bucket, "raw", name), b"x")
    got = [i.uri for i in list_inputs(st, [join(s3_bucket, "raw")], EXT)]
    assert got == [join(s3_bucket, "raw/p1/v1.mp4"), join(s3_bucket, "raw/p2/v2.mp4")]


def test_identity_sources_and_disjoint_split(tmp_path):
    st = Storage()
    folder = IdentityResolver(CurateConfig(val_fraction=0.5), st)
    assert folder.identity(InputItem("s3://b/raw/carol/clip1.mp4")) == "carol"
    assert folder.identity(InputItem("/x/y.mp4", identity="dave")) == "dave"
    ids = [f"person{i}" for i in range(200)]
    splits = {i: folder.split(i) for i in ids}
    assert 60 < sum(s == "val" for s in splits.values()) < 140  # ~half of the identities
    assert splits == {i: IdentityResolver(CurateConfig(val_fraction=0.5), st).split(i) for i in ids}  # stable

    mapping = tmp_path / "ids.json"
    mapping.write_text(json.dumps({"clip1": "erin", "/abs/v.mp4": "frank"}))
    cfg = CurateConfig(identity_source="mapping", identity_mapping=str(mapping), val_identities=("erin",))
    mapped = IdentityResolver(cfg, st)
    assert mapped.identity(InputItem("s3://b/raw/carol/clip1.mp4")) == "erin"
    assert mapped.identity(InputItem("/abs/v.mp4")) == "frank"
    assert mapped.identity(InputItem("/abs/other.mp4")) == "unknown"
    assert mapped.split("erin") == "val"


def test_split_plan_has_a_val_face_and_keeps_committed_splits():
    resolver = IdentityResolver(CurateConfig(val_fraction=0.1), Storage())
    plan = resolver.plan_splits(["a", "b", "c", "d"], pinned={})
    assert sorted(plan.values()) == ["train", "train", "train", "val"]  # at least one val face
    assert resolver.plan_splits(["a", "b", "c", "d"], pinned={}) == plan  # deterministic
    val = next(i for i, s in plan.items() if s == "val")
    pinned = {val: "train", "e": "val"}  # committed samples decide, whatever the rule says now
    again = IdentityResolver(CurateConfig(val_fraction=0.1), Storage()).plan_splits(["a", "b", "c", "d", "e"], pinned)
    assert again[val] == "train" and again["e"] == "val" and list(again.values()).count("val") == 1
    forced = IdentityResolver(CurateConfig(val_identities=("b",)), Storage()).plan_splits("abcd", {})
    assert [i for i, s in forced.items() if s == "val"] == ["b"]
    assert set(IdentityResolver(CurateConfig(val_fraction=0.0), Storage()).plan_splits("ab", {}).values()) == {"train"}


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="curate.val_fraction"):
        CurateConfig(val_fraction=1.5)
    with pytest.raises(ValueError, match="curate.identity_mapping"):
        CurateConfig(identity_source="mapping")
