"""DeepSpeed checkpoints of the trained networks, with the client state a resumed job needs.

Layout under ``<out_dir>/checkpoints``: one DeepSpeed save dir per engine (``model`` = the stage's
network, ``discriminator`` in the iptalker stage), each with ``step_NNNNNNNN/`` tags and DeepSpeed's
``latest`` pointer, plus ``config.json`` (the resolved job config) beside every tag.
``save`` and ``load`` must be called on ALL ranks: ZeRO shards optimizer state (and parameters in
stage 3) across them.
"""

from __future__ import annotations

import json
from pathlib import Path

MODEL = "model"
DISCRIMINATOR = "discriminator"


def tag_for(step: int) -> str:
    return f"step_{step:08d}"


def checkpoint_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def latest_tag(save_dir: str | Path) -> str | None:
    """The tag DeepSpeed's ``latest`` file points to, or None before the first save."""
    latest = Path(save_dir) / "latest"
    return latest.read_text().strip() if latest.is_file() else None


def save(engines: dict, out_dir: str | Path, step: int, client_state: dict, *, is_main: bool) -> str:
    """``save_checkpoint`` of every engine under one tag; rank 0 also writes the config beside it."""
    root, tag = checkpoint_root(out_dir), tag_for(step)
    for name, engine in engines.items():
        engine.save_checkpoint(str(root / name), tag=tag, client_state=client_state)
        if is_main:
            (root / name / tag / "config.json").write_text(json.dumps(client_state["config"], indent=2))
    return tag


def load(engines: dict, out_dir: str | Path, stage: str) -> dict | None:
    """Load the latest tag into every engine (weights, optimizer, LR schedule); returns the client
    state of the main network's checkpoint, or None when there is nothing to resume from."""
    root = checkpoint_root(out_dir)
    tag = latest_tag(root / MODEL)
    if tag is None:
        return None
    saved = json.loads((root / MODEL / tag / "config.json").read_text())["train"]["stage"]
    if saved != stage:
        raise ValueError(f"cannot resume stage {stage!r} from {root / MODEL / tag}: it holds a "
                         f"{saved!r} run; use another train.out_dir")
    client_state = None
    for name, engine in engines.items():
        path, state = engine.load_checkpoint(str(root / name), tag=tag)
        if path is None:
            raise FileNotFoundError(f"checkpoint {root / name / tag} could not be loaded")
        if name == MODEL:
            client_state = state
    return client_state
