"""DeepSpeed checkpoints of the trained networks, saved so that a kill at any moment leaves the
previous complete checkpoint usable.

Layout under ``<out_dir>/checkpoints``::

    model/step_NNNNNNNN/            DeepSpeed's files for the stage's network (+ config.json)
    discriminator/step_NNNNNNNN/    the iptalker stage's discriminator (+ config.json)
    complete/step_NNNNNNNN.json     our complete-marker, written after every part of the tag
    latest                          our pointer to the newest complete tag, advanced last

Why our own marker and pointer: DeepSpeed advances its ``latest`` file inside each engine's
``save_checkpoint``, i.e. before the other engine, the job config and the other ranks are done,
so a kill in between leaves ``latest`` naming a tag that cannot be resumed. Here DeepSpeed's
``latest`` is never written (``save_latest=False``); a save runs, on every rank:

  1. rank 0 removes a previous half-written copy of the tag (and its marker); barrier
  2. each engine saves its ZeRO shards under the tag (all ranks); barrier
  3. rank 0 writes ``config.json`` beside each engine's tag, then the marker, then the pointer
     (each a temp file and an atomic rename)

Resume and export take the newest tag with a marker (``latest_tag``); a tag without one is
ignored, whatever else of it exists. ``save`` and ``load`` must be called on ALL ranks: ZeRO
shards optimizer state (and parameters in stage 3) across them.

Tests inject a kill at a named phase of a save with ``IPTALKER_CHECKPOINT_FAULT=<phase>@<step>``
(phases: ``PHASES``): the process leaves with ``os._exit`` there, deterministically.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

MODEL = "model"
DISCRIMINATOR = "discriminator"
COMPLETE_DIR = "complete"
POINTER = "latest"
FAULT_ENV = "IPTALKER_CHECKPOINT_FAULT"
FAULT_EXIT_CODE = 75
PHASES = ("cleared", "model_saved", "discriminator_saved", "shards_saved", "config_written", "marker_written")


def tag_for(step: int) -> str:
    return f"step_{step:08d}"


def checkpoint_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fault(phase: str, step: int) -> None:
    """The fault-injection hook: leave now if ``IPTALKER_CHECKPOINT_FAULT`` names this phase."""
    if os.environ.get(FAULT_ENV) == f"{phase}@{step}":
        print(f"checkpoint fault injected at {phase} of step {step}", flush=True)
        os._exit(FAULT_EXIT_CODE)


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def complete_tags(root: str | Path) -> list[str]:
    """Tags with a complete-marker under the checkpoints ``root``, oldest first."""
    markers = sorted((Path(root) / COMPLETE_DIR).glob("step_*.json"))
    return [m.stem for m in markers]


def latest_tag(out_dir: str | Path) -> str | None:
    """The newest complete tag of a run (``out_dir`` or its ``checkpoints`` folder), or None."""
    root = Path(out_dir)
    if not (root / COMPLETE_DIR).is_dir():
        root = checkpoint_root(out_dir)
    tags = complete_tags(root)
    return tags[-1] if tags else None


def save(engines: dict, out_dir: str | Path, step: int, client_state: dict, *, is_main: bool) -> str:
    """Save every engine under ``tag_for(step)`` and commit it (see the module docstring)."""
    root, tag = checkpoint_root(out_dir), tag_for(step)
    marker = root / COMPLETE_DIR / f"{tag}.json"
    if is_main:  # a kill during an earlier save of this tag (or an older run) left parts of it
        marker.unlink(missing_ok=True)
        for name in engines:
            shutil.rmtree(root / name / tag, ignore_errors=True)
    _barrier()
    _fault("cleared", step)
    for name, engine in engines.items():
        engine.save_checkpoint(str(root / name), tag=tag, client_state=client_state, save_latest=False)
        _fault(f"{name}_saved", step)
    _barrier()  # every rank's shards are on disk
    _fault("shards_saved", step)
    if is_main:
        config = json.dumps(client_state["config"], indent=2)
        for name in engines:
            _write_atomic(root / name / tag / "config.json", config)
        _fault("config_written", step)
        marker.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(marker, json.dumps({"tag": tag, "step": step, "engines": sorted(engines)}))
        _fault("marker_written", step)
        _write_atomic(root / POINTER, tag + "\n")
    _barrier()  # no rank runs ahead of a commit another rank might still be writing
    return tag


def load(engines: dict, out_dir: str | Path, stage: str) -> dict | None:
    """Load the newest complete tag into every engine (weights, optimizer, LR schedule); returns
    the client state of the main network's checkpoint, or None when there is nothing to resume."""
    root = checkpoint_root(out_dir)
    tag = latest_tag(out_dir)
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
