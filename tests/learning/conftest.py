"""One training run of the CPU recipe per session, shared by every learning test (SyncNet 1000
steps, then IPTalker 300 steps: ~430 CPU-seconds on the one torch thread each `make test` worker
has; ~9 min of the suite's wall time with the figures, beside the other worker's tests)."""

from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "recipes" / "cpu-demo.yaml"


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    from tests.learning.harness import load_recipe, train_recipe

    return train_recipe(load_recipe(str(RECIPE)), str(tmp_path_factory.mktemp("learning")))


@pytest.fixture(scope="session")
def figs(trained):
    from tests.learning.harness import figures

    out = figures(trained)
    print("learning figures:", out)
    return out
