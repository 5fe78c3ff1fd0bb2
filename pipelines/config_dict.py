"""Strict dict -> dataclass for job configs that travel as JSON (resolved job files, Ray).

A typo in a resolved job must fail loudly instead of silently training the default. (The YAML
settings path validates types too, in ``orchestration.settings``; this is the worker side.)
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def strict_from_dict(cls: type[T], d: dict[str, Any], section: str) -> T:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {section} keys {unknown}; valid keys: {sorted(names)}")
    return cls(**d)
