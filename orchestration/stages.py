"""A resumable run of named stages: each finished stage leaves a record, a rerun skips it.

``<workdir>/stages/<NN>-<name>.json`` is written (atomically) when a stage finishes, with what it
produced (``outputs``: paths, URIs, run ids) and how long it took. Later stages read earlier
stages' outputs from these records, so a rerun after a crash, or on another machine sharing the
workdir, continues where the last one stopped. ``redo_from`` drops the records of a stage and
every stage after it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import UserError

StageFn = Callable[[dict[str, dict]], dict]  # outputs of the stages before -> this stage's outputs


@dataclass
class Stage:
    name: str
    fn: StageFn
    help: str = ""


class StageRunner:
    def __init__(self, workdir: str | Path, stages: list[Stage], log: Callable[[str], None] = print):
        self.dir = Path(workdir) / "stages"
        self.stages = stages
        self.log = log
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stage names: {names}")

    def _record(self, i: int, stage: Stage) -> Path:
        return self.dir / f"{i:02d}-{stage.name}.json"

    def done(self) -> dict[str, dict]:
        """Records of the finished stages, by name."""
        out = {}
        for i, stage in enumerate(self.stages):
            path = self._record(i, stage)
            if path.is_file():
                out[stage.name] = json.loads(path.read_text())
        return out

    def redo_from(self, name: str) -> None:
        names = [s.name for s in self.stages]
        if name not in names:
            raise UserError(f"unknown stage {name!r}; stages: {', '.join(names)}")
        for i, stage in enumerate(self.stages[names.index(name):], start=names.index(name)):
            self._record(i, stage).unlink(missing_ok=True)

    def run(self) -> dict[str, dict]:
        """Run every stage without a record, in order; returns each stage's outputs by name."""
        self.dir.mkdir(parents=True, exist_ok=True)
        records = self.done()
        outputs = {name: r["outputs"] for name, r in records.items()}
        n = len(self.stages)
        for i, stage in enumerate(self.stages):
            tag = f"[{i + 1}/{n}] {stage.name}"
            if stage.name in records:
                r = records[stage.name]
                self.log(f"{tag}: skipped, done at {r['finished']} ({r['seconds']:.0f} s)")
                continue
            self.log(f"{tag} ...")
            t0 = time.monotonic()
            outputs[stage.name] = stage.fn(outputs)
            record = {"stage": stage.name, "outputs": outputs[stage.name], "seconds": time.monotonic() - t0,
                      "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            tmp = self._record(i, stage).with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=1, default=str))
            os.replace(tmp, self._record(i, stage))
            self.log(f"{tag}: done in {record['seconds']:.0f} s")
        return outputs
