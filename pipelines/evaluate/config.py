"""``EvaluateConfig``: the ``evaluate:`` section of the settings (configs/local.yaml)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from iptalker_model.config import build_dataclass


@dataclass
class EvaluateConfig:
    evalset: str = ""            # frozen eval-set manifest to reuse; "" -> build one next to the report
    split: str = "val"           # clips come from this split (identity-disjoint from training)
    max_clips: int = 8           # eval-set size when building one (the first clips by key)
    max_frames: int = 75         # frames per clip scored (from the start); 3 s at 25 fps
    max_offset: int = 15         # LSE offset search +/- frames (syncnet_python's vshift)
    seed: int = 0                # reference draws and cross-audio pairing
    syncnet: str = ""            # SyncNet weights overriding / completing the bundle's
    public_syncnet: str = ""     # joonson's syncnet_v2.model (state dict) for public LSE; "" = skip
    identity_every: int = 5      # identity descriptors on every n-th frame (dlib's ResNet is ~55 ms/frame)
    side_by_side: int = 2        # clips shown as frame strips in the HTML report
    batch_frames: int = 16       # frames per model forward (memory bound)

    def __post_init__(self):
        for name in ("max_clips", "max_frames", "max_offset", "identity_every", "batch_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"evaluate.{name}={getattr(self, name)!r}: must be >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EvaluateConfig:
        return build_dataclass(cls, d, label="evaluate")
