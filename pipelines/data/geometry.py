"""The crop + mask geometry a curated dataset records and a model must share.

Curation writes ``dataset.json["geometry"]``: the crop size, the alignment template the crops
follow (``preprocessing.align.template_record``) and the lower-face mask fractions of the model
config in force (``iptalker_model.mask.mask_geometry``). Training compares its model config with
that record before any worker starts: a model that hides another region than the one the data
was curated for would learn (and be evaluated) on the wrong pixels without any error.
The crop size itself may differ from ``ModelConfig.image_size``: the loader resizes crops, and
the geometry is in fractions of the crop.
"""

from __future__ import annotations

from typing import Any

from iptalker_model.config import ModelConfig
from iptalker_model.mask import mask_geometry
from preprocessing.align import template_record
from preprocessing.config import AlignConfig

GEOMETRY_KEY = "geometry"  # the dataset.json entry


def geometry_record(align: AlignConfig, model: ModelConfig) -> dict[str, Any]:
    """What ``dataset.json`` records: ``{"crop_size", "template": {...}, "mask": {...}}``."""
    return {"crop_size": align.size, "template": template_record(align), "mask": mask_geometry(model)["mask"]}


def geometry_mismatch(recorded: dict[str, Any], model: ModelConfig) -> str | None:
    """Why ``model`` cannot train on a dataset with geometry ``recorded`` (one line), or None."""
    expected = mask_geometry(model)
    template = recorded.get("template", {})
    if template != expected["template"]:
        return (f"its crops follow alignment template {_fmt(template)} but the model's lower-face mask is "
                f"drawn for {_fmt(expected['template'])}: re-curate with the default preprocess.align.template_*")
    mask = recorded.get("mask", {})
    for key, want in expected["mask"].items():
        if key not in mask or abs(float(mask[key]) - float(want)) > 1e-9:
            return (f"it was curated for {key}={mask.get(key)!r} but the model config has {key}={want!r}: "
                    f"pass --set model.{key}={mask.get(key)!r} (or re-curate with this model config)")
    return None


def _fmt(template: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in template.items()) or "(none)"
