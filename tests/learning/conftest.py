"""One training run of the CPU recipe per session, shared by every learning test."""

from pathlib import Path

import pytest
import torch

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "recipes" / "cpu-demo.yaml"


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    from tests.learning.harness import load_recipe, train_recipe

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 OpenMP threads on a busy 2-core box run far slower
    try:
        yield train_recipe(load_recipe(str(RECIPE)), str(tmp_path_factory.mktemp("learning")))
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def figs(trained):
    from tests.learning.harness import figures

    out = figures(trained)
    print("learning figures:", out)
    return out
