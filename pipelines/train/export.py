"""``iptalker export``: a DeepSpeed (ZeRO-sharded) training checkpoint -> one fp32 weights file.

The output is ``iptalker_model.checkpoint``'s format (state dict + the ModelConfig that built it),
so ``load_iptalker`` / ``load_syncnet`` read it with ``torch.load(weights_only=True)``; a sidecar
``<out>.json`` records the config and the source checkpoint for people and the registry.

Even the shards are read without pickle: DeepSpeed's ``zero_to_fp32`` loads with
``weights_only=False``, so it is handed a ``torch`` whose ``load`` forces ``weights_only=True``
with only DeepSpeed's own plain state classes allow-listed.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import torch

from iptalker_model import IPTalker, ModelConfig, SyncNet
from iptalker_model.checkpoint import save_weights
from pipelines.train import checkpointing

MODEL_STATES = "mp_rank_00_model_states.pt"


def resolve_save_dir(ckpt_dir: str | Path) -> tuple[Path, str]:
    """(the main network's save dir, its newest complete tag) from the run's out_dir, its
    ``checkpoints/`` or ``checkpoints/model``. Tags without a complete-marker (a save that was
    killed) are never exported; a DeepSpeed ``latest`` file is used only for checkpoints written
    before the markers existed."""
    p = Path(ckpt_dir)
    for root in (p / "checkpoints", p, p.parent):
        tag = checkpointing.latest_tag(root) if (root / checkpointing.COMPLETE_DIR).is_dir() else None
        if tag and (root / checkpointing.MODEL / tag).is_dir():
            return root / checkpointing.MODEL, tag
    for cand in (p, p / checkpointing.MODEL, p / "checkpoints" / checkpointing.MODEL):
        if (cand / "latest").is_file():  # DeepSpeed's own pointer (older runs)
            return cand, (cand / "latest").read_text().strip()
    raise FileNotFoundError(f"no complete checkpoint under {p}; pass the training out_dir or its "
                            "checkpoints folder (a save counts once checkpoints/complete/<tag>.json exists)")


def _safe_globals() -> list:
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def _weights_only_torch():
    """A stand-in for the ``torch`` module whose ``load`` never unpickles arbitrary objects."""

    def load(f, map_location=None, weights_only=None, **kw):
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(f, map_location=map_location, weights_only=True, **kw)

    proxy = types.ModuleType("torch")
    proxy.__dict__.update({k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
    proxy.load = load
    return proxy


def consolidate(save_dir: Path, tag: str) -> dict[str, torch.Tensor]:
    """The full fp32 state dict of one network, from ZeRO-0 (plain) or ZeRO-1/2/3 shards."""
    tag_dir = save_dir / tag
    if not _has_zero_shards(tag_dir):  # ZeRO-0: the model states hold the whole module
        states = torch.load(tag_dir / MODEL_STATES, map_location="cpu", weights_only=True)
        return {k: v.float() for k, v in states["module"].items()}
    from deepspeed.utils import zero_to_fp32

    saved = zero_to_fp32.torch
    zero_to_fp32.torch = _weights_only_torch()
    try:
        sd = zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint(str(save_dir), tag=tag)
    finally:
        zero_to_fp32.torch = saved
    return {k: v.float() for k, v in sd.items()}


def _has_zero_shards(tag_dir: Path) -> bool:
    """ZeRO >= 1 writes ``zero_pp_rank_*`` files; plain DeepSpeed (stage 0) only model states."""
    return any(tag_dir.glob("zero_pp_rank_*"))


def export_checkpoint(ckpt_dir: str | Path, out_path: str | Path, tag: str | None = None) -> Path:
    """Consolidate the latest (or ``tag``) checkpoint to ``out_path``; returns the path.

    The network (SyncNet or IPTalker) and its ModelConfig come from the job config saved beside
    the checkpoint, so the caller needs to know nothing about the run.
    """
    save_dir, newest = resolve_save_dir(ckpt_dir)
    tag = tag or newest
    job = json.loads((save_dir / tag / "config.json").read_text())
    cfg = ModelConfig.from_dict(job["model"])
    module = SyncNet(cfg) if job["train"]["stage"] == "syncnet" else IPTalker(cfg)
    state = consolidate(save_dir, tag)
    own = module.state_dict()
    # DeepSpeed training keeps 0-dim parameters as [1] (see engines.promote_scalar_params)
    state = {k: v.reshape(own[k].shape) if k in own and v.numel() == own[k].numel() else v
             for k, v in state.items()}
    module.load_state_dict(state, strict=True)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(out, module, cfg)
    sidecar = {"module": type(module).__name__, "model": cfg.to_dict(), "source": str(save_dir),
               "tag": tag, "stage": job["train"]["stage"], "data": job["train"]["data"]}
    out.with_suffix(out.suffix + ".json").write_text(json.dumps(sidecar, indent=2))
    return out
