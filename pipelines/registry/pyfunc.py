"""The registered model: an MLflow pyfunc whose ``predict`` dubs videos with the packaged bundle.

Its one artifact is the bundle folder (``artifacts={"bundle": folder}``: fp32 IPTalker weights,
model config, SyncNet expert, Whisper identity, lineage). It is logged as *models from code*
(``pyfunc_entry.py``), so loading it executes our source file instead of unpickling an object.

``predict`` takes rows ``(video, audio, out)`` (local paths or storage URIs) and returns one row
per input with ``status`` (``ok`` / ``rejected`` / ``failed``), ``out`` and ``reason``: a bad
input ends as a rejected row with its true reason, it never fails the batch.
"""

from __future__ import annotations

import dataclasses
import typing

import mlflow.pyfunc

INPUT_COLUMNS = ("video", "audio", "out")
OUTPUT_COLUMNS = ("video", "audio", "out", "status", "reason")


def signature():
    """``(video, audio, out)`` strings in; the same plus ``status`` and ``reason`` out."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", c) for c in INPUT_COLUMNS]),
                          outputs=Schema([ColSpec("string", c) for c in OUTPUT_COLUMNS]))


def build_dataclass(cls: type, d: dict):
    """Nested dataclass from a plain dict (the serving config travels as the pyfunc's JSON
    ``model_config``); unknown keys fail, as in the settings loader."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}")
    values = {}
    for k, v in d.items():
        tp = hints[k]
        if dataclasses.is_dataclass(tp) and isinstance(v, dict):
            v = build_dataclass(tp, v)
        elif isinstance(v, list):
            v = tuple(v) if "tuple" in str(tp) else v
        values[k] = v
    return cls(**values)


class DubModel(mlflow.pyfunc.PythonModel):
    """Loads the bundle once (``load_context``) and dubs each row with ``pipelines.dub``."""

    def load_context(self, context):
        from pipelines.data.bundle import resolve_bundle
        from pipelines.dub.config import DubConfig
        from pipelines.dub.job import load_engine
        from preprocessing.config import PreprocessConfig

        serving = dict(context.model_config or {})
        self.bundle = resolve_bundle(context.artifacts["bundle"])
        self.dub_cfg = build_dataclass(DubConfig, serving.get("dub", {}))
        self.preprocess = build_dataclass(PreprocessConfig, serving.get("preprocess", {}))
        self.engine = load_engine(self.bundle, self.dub_cfg, self.preprocess)

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from pipelines.data.storage import Storage

        missing = [c for c in INPUT_COLUMNS if c not in model_input.columns]
        if missing:
            raise ValueError(f"input rows need columns {list(INPUT_COLUMNS)}; missing {missing}")
        storage = Storage()
        rows = [self.dub_row(r.video, r.audio, r.out, storage) for r in model_input.itertuples()]
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))

    def dub_row(self, video: str, audio: str, out: str, storage) -> dict:
        from pipelines.dub.job import dub_video
        from pipelines.errors import UserError

        row = {"video": video, "audio": audio, "out": out}
        try:
            dub_video(video, audio, out, self.bundle, self.dub_cfg, self.preprocess, storage,
                      engine=self.engine)
        except UserError as e:  # unreadable media, a face that cannot be dubbed: the true reason
            return {**row, "status": "rejected", "reason": str(e)}
        except Exception as e:  # noqa: BLE001 - one bad row must not fail the batch
            return {**row, "status": "failed", "reason": f"{type(e).__name__}: {e}"}
        return {**row, "status": "ok", "reason": ""}
