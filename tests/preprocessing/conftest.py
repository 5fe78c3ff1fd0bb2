"""Shared, session-scoped synthetic media for the preprocessing tests (rendered once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from preprocessing.synthetic import generate_corpus, write_bad_inputs


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The documented demo corpus: 4 talking-head mp4s (+ .json sidecars), seed 1."""
    return generate_corpus(tmp_path_factory.mktemp("corpus"), 4, seed=1)


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per BAD_KINDS + EDGE_KINDS kind."""
    return write_bad_inputs(tmp_path_factory.mktemp("bad"), seed=0)
