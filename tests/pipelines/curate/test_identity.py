"""Identities: folder levels, loud warnings, the empty-val error, and clustering by real face
descriptors on the face-bank corpus (distinct real people, decoded from real mp4s)."""

from __future__ import annotations

import collections
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.curate.config import CurateConfig
from pipelines.curate.identity import UNKNOWN, IdentityResolver, cluster_descriptors
from pipelines.curate.inputs import InputItem
from pipelines.data.storage import Storage
from pipelines.errors import UserError


def test_folder_level_reaches_the_person_in_voxceleb_layouts():
    uri = "s3://b/vox/id10001/1zcIwhmdeo4/00001.mp4"  # person/video/clip
    assert IdentityResolver(CurateConfig(), Storage()).identity(InputItem(uri)) == "1zcIwhmdeo4"
    assert IdentityResolver(CurateConfig(identity_folder_level=2), Storage()).identity(InputItem(uri)) == "id10001"


def test_one_identity_is_an_error_unless_val_fraction_is_zero(caplog):
    names = ["everyone"] * 12  # a flat folder of many people
    resolver = IdentityResolver(CurateConfig(), Storage())
    resolver.plan_splits(names, {})
    with pytest.raises(UserError, match="curate.val_fraction=0") as err:
        resolver.check(names)
    assert "\n" not in str(err.value)
    quiet = IdentityResolver(CurateConfig(val_fraction=0.0), Storage())
    quiet.plan_splits(names, {})
    with caplog.at_level(logging.WARNING):
        warnings = quiet.check(names)
    assert len(warnings) == 1 and "12 of 12" in warnings[0] and "identity_source=cluster" in warnings[0]
    assert "WARNING" in caplog.text
    spread = [f"p{i % 6}" for i in range(12)]
    ok = IdentityResolver(CurateConfig(), Storage())
    ok.plan_splits(spread, {})
    assert ok.check(spread) == []


def test_faceless_inputs_never_make_up_the_val_split():
    plan = IdentityResolver(CurateConfig(val_fraction=0.5), Storage()).plan_splits(["a", "b", UNKNOWN], {})
    assert plan[UNKNOWN] == "train" and list(plan.values()).count("val") == 1


def purity(labels, truth) -> float:
    """Share of inputs whose cluster's majority person is their own."""
    total = 0
    for c in set(labels):
        members = [t for lab, t in zip(labels, truth, strict=True) if lab == c]
        total += collections.Counter(members).most_common(1)[0][1]
    return total / len(truth)


def test_cluster_descriptors_on_vectors():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 128)) * 0.1
    x = np.concatenate([c + rng.normal(0, 0.005, (4, 128)) for c in centres])
    labels = cluster_descriptors(x, 0.5)
    assert len(set(labels)) == 3 and purity(labels, np.repeat([0, 1, 2], 4)) == 1.0
    assert list(cluster_descriptors(x[:1], 0.5)) == [1]


@pytest.fixture(scope="module")
def bank_corpus(tmp_path_factory):
    """Two videos of each of the 8 real people (astronaut + face bank), one folder per video's
    identity, written by the generator the demo uses."""
    from preprocessing.synthetic.face import people

    if len(people()) < 8:
        pytest.skip("face bank not fetched (make setup): only one real person available")
    from preprocessing.synthetic.corpus import generate_corpus

    root = tmp_path_factory.mktemp("bank")
    paths = generate_corpus(root / "flat", 16, seed=11, n_identities=8, seconds=(1.5, 2.0), size=(480, 360))
    return paths


@pytest.mark.slow
def test_clustering_separates_the_real_people(bank_corpus):
    """Descriptors as curation computes them (decoded frames, the same function) group the 16
    videos into the 8 people; the trivial answers fail the same checks."""
    from preprocessing.config import PreprocessConfig
    from preprocessing.descriptors import video_descriptor

    truth = [json.loads(p.with_suffix(".json").read_text())["meta"]["person"] for p in bank_corpus]
    assert len(set(truth)) == 8
    descriptors = {str(p): video_descriptor(p, PreprocessConfig()) for p in bank_corpus}
    resolver = IdentityResolver(CurateConfig(identity_source="cluster"), Storage())
    clusters = resolver.assign_clusters(descriptors)
    labels = [clusters[str(p)] for p in bank_corpus]

    def good(labels) -> bool:
        return purity(labels, truth) >= 0.9 and len(set(labels)) == len(set(truth))

    assert good(labels), (purity(labels, truth), collections.Counter(labels))
    assert not good(["all"] * len(truth))  # one cluster: purity 1/8
    assert not good([str(p) for p in bank_corpus])  # every video its own: 16 clusters
    assert resolver.identity(InputItem(str(bank_corpus[0]))) == labels[0]


@pytest.mark.slow
def test_curation_with_cluster_identities(tmp_path):
    """A flat folder of 3 people x 2 videos: cluster identities reach every sample, and the
    split is identity-disjoint (no person in both)."""
    import ray

    from pipelines.curate.job import run_curation
    from pipelines.data.storage import StorageConfig
    from preprocessing.config import PreprocessConfig
    from preprocessing.synthetic.corpus import generate_corpus
    from preprocessing.synthetic.face import people
    from tests.fixtures import curate_standins as standins

    if len(people()) < 3:
        pytest.skip("face bank not fetched (make setup)")
    paths = generate_corpus(tmp_path / "in" / "everyone", 6, seed=5, n_identities=3, seconds=(1.5, 1.5),
                            size=(480, 360))
    for p in paths:  # one flat folder, as a user's download would be
        p.rename(tmp_path / "in" / "everyone" / p.name)
        p.with_suffix(".json").rename(tmp_path / "in" / "everyone" / p.with_suffix(".json").name)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=f"/tmp/rt-id{os.getpid()}", log_to_driver=False)
    try:
        stages = standins.stages()
        stages.extract = None  # the real per-video stage and descriptors; a stand-in encoder only
        summary = run_curation([str(tmp_path / "in")], str(tmp_path / "ds"),
                               CurateConfig(identity_source="cluster", val_fraction=0.3), PreprocessConfig(),
                               StorageConfig(), progress=False, stages=stages)
    finally:
        ray.shutdown()
    inputs = pd.read_parquet(tmp_path / "ds" / "index" / "inputs.parquet")
    inputs["person"] = [json.loads(Path(u).with_suffix(".json").read_text())["meta"]["person"] for u in inputs["uri"]]
    assert (inputs["status"] == "accepted").all(), inputs[["reason", "message"]]
    assert inputs.groupby("identity")["person"].nunique().max() == 1  # one person per identity
    assert inputs["identity"].nunique() == 3
    assert inputs.groupby("person")["split"].nunique().max() == 1  # never in both splits
    assert set(inputs["split"]) == {"train", "val"} and summary.counts["clips"] == 6
