"""Many dubs from a manifest (CSV with columns video, audio, out): resumable, one bad row never
stops the batch, a status file per row (``<out>.status.json``), a progress bar.

A row whose status file says ``done`` (and whose output exists) is skipped on a rerun; a failed
row is retried. Models load once for the whole batch.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipelines.data.bundle import Bundle, resolve_bundle
from pipelines.dub.config import DubConfig
from pipelines.dub.job import DubReport, dub_video, load_engine
from pipelines.errors import UserError
from preprocessing.config import PreprocessConfig

log = logging.getLogger(__name__)
COLUMNS = ("video", "audio", "out")


@dataclass
class BatchSummary:
    manifest: str
    done: list[str] = field(default_factory=list)  # outputs written in this run
    skipped: list[str] = field(default_factory=list)  # already done in an earlier run
    failed: dict[str, str] = field(default_factory=dict)  # out -> one-line reason

    def render(self) -> str:
        lines = [f"Dubbed {len(self.done)} of {len(self.done) + len(self.failed) + len(self.skipped)} rows "
                 f"of {self.manifest} ({len(self.skipped)} already done, {len(self.failed)} failed)."]
        lines += [f"  failed {out}: {why}" for out, why in self.failed.items()]
        return "\n".join(lines)


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """Rows of a manifest CSV; raises UserError when it is missing or lacks a column."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no manifest at {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"manifest {path}: missing column(s) {', '.join(missing)} (need {', '.join(COLUMNS)})")
        rows = [{c: (row[c] or "").strip() for c in COLUMNS} for row in reader]
    base = path.parent
    return [{c: str(base / v) if v and not Path(v).is_absolute() and "://" not in v else v for c, v in r.items()}
            for r in rows]


def status_path(out: str) -> Path:
    return Path(f"{out}.status.json")


def _write_status(out: str, record: dict) -> None:
    path = status_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def _is_done(out: str) -> bool:
    path = status_path(out)
    try:
        return json.loads(path.read_text()).get("status") == "done" and Path(out).is_file()
    except (OSError, ValueError):
        return False


def run_batch(manifest: str, bundle: Bundle, cfg: DubConfig, preprocess: PreprocessConfig, storage=None,
              progress: bool = True) -> BatchSummary:
    """Dub every row of ``manifest``; returns what was done, skipped and failed (with reasons)."""
    rows = read_manifest(manifest)
    engine = load_engine(bundle, cfg, preprocess)
    summary = BatchSummary(str(manifest))
    cfg = dataclasses.replace(cfg, progress=False)  # one bar for the batch
    for row in tqdm(rows, desc="dub", unit="video", disable=not progress):
        out = row["out"] or "(no out)"
        if _is_done(out):
            summary.skipped.append(out)
            continue
        try:
            if not all(row.values()):
                raise UserError(f"row needs video, audio and out, got {row}")
            report = dub_video(row["video"], row["audio"], out, bundle, cfg, preprocess, storage, engine=engine)
        except UserError as e:
            summary.failed[out] = str(e)
        except Exception as e:  # noqa: BLE001  one broken row never stops the batch
            log.error("dubbing %s failed:\n%s", out, traceback.format_exc())
            summary.failed[out] = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        else:
            summary.done.append(out)
            _write_status(out, {"status": "done", "report": report.report_path, "frames": report.frames})
            continue
        if row["out"]:
            _write_status(out, {"status": "failed", "reason": summary.failed[out], **row})
    return summary


def run_dub(model: str, cfg: DubConfig, preprocess: PreprocessConfig, *, video: str | None = None,
            audio: str | None = None, out: str | None = None, batch: str | None = None, storage=None,
            report: str | None = None, progress: bool = True) -> DubReport | BatchSummary:
    """The CLI's entry: resolve ``model`` (bundle folder, exported .pt, models:/NAME@alias), then
    dub one (video, audio, out) or every row of the ``batch`` manifest. ``report``: also write the
    single dub's report JSON there."""
    if batch is None and not (video and audio and out):
        raise UserError("give --video, --audio and --out, or --batch manifest.csv")
    bundle = resolve_bundle(model)
    if batch is not None:
        return run_batch(batch, bundle, cfg, preprocess, storage, progress)
    for what, path in (("video", video), ("audio", audio)):
        if "://" not in path and not Path(path).is_file():
            raise UserError(f"{what} {path}: no such file")
    result = dub_video(video, audio, out, bundle, cfg, preprocess, storage)
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(result.to_json())
    return result
