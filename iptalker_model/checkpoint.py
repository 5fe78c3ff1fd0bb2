"""Weights + the config that built them, in one ``torch.save`` file loadable with weights_only.

The file is a dict of plain types: ``{"format", "module", "config_json", "state_dict"}``, so
``torch.load(..., weights_only=True)`` never unpickles code, and a checkpoint rebuilds its own
network without the caller knowing its size.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn

from .config import ModelConfig
from .iptalker import IPTalker
from .syncnet import SyncNet

FORMAT = "iptalker-weights/1"


def save_weights(path: str | os.PathLike, module: nn.Module, cfg: ModelConfig) -> None:
    """Write module's state dict and cfg (JSON) to path, atomically (tmp file + rename)."""
    module = getattr(module, "module", module)  # DDP / DeepSpeed wrappers
    payload = {"format": FORMAT, "module": type(module).__name__, "config_json": cfg.to_json(),
               "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()}}
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load(path: str | os.PathLike, cls: type[nn.Module], map_location) -> nn.Module:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {cls.__name__} checkpoint at {os.fspath(path)!r}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated / not a torch file / pickled code
        raise ValueError(f"{os.fspath(path)!r} is not a readable weights file: {e}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is not an {FORMAT} file")
    if payload["module"] != cls.__name__:
        raise ValueError(f"{os.fspath(path)!r} holds a {payload['module']}, not a {cls.__name__}")
    module = cls(ModelConfig.from_json(payload["config_json"]))
    module.load_state_dict(payload["state_dict"])
    return module


def load_iptalker(path: str | os.PathLike, map_location="cpu") -> IPTalker:
    return _load(path, IPTalker, map_location)


def load_syncnet(path: str | os.PathLike, map_location="cpu") -> SyncNet:
    return _load(path, SyncNet, map_location)


def load_config(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig stored in a weights file, without building the network."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return ModelConfig.from_json(payload["config_json"])
