"""``iptalker curate``: raw videos -> WebDataset shards + parquet index + report (Ray).

The recipe (``run_curation``):
  1. list inputs            local dirs, globs, s3:// prefixes, parquet/CSV lists   (inputs.py)
  2. resume                 drop half-written shards, skip inputs done shards hold  (index.py)
  3. identity + split       folder / mapping / input list / face-descriptor clusters (a quick
                            pass of Ray tasks); split by identity hash; no val split: error (identity.py)
  4. per video (Ray task)   probe, decode, resample 25 fps, detect/track/align, cut at scenes and
                            max length, filter, encode crops + audio      (preprocessing.clips)
  5. Whisper (actor pool)   encoder loaded once per actor, on GPU when the cluster has one
  6. shards (Ray task)      tar, parquet, done.json last; retried with backoff          (data/shards.py)
  7. index                  index/inputs.parquet, index/clips.parquet                  (index.py)
  8. report                 report/index.html + PNG plots, dataset.json             (report.py)

Why Ray Core tasks + actors and not Ray Data: resume and per-input accounting need to know, per
input, which shard holds all of its samples. With tasks the driver decides that directly: it
streams per-video results (``ray.wait``, a bounded window), adds each accepted input *whole* to
the open shard, and commits the shard with the rows of the inputs it finishes in its done.json.
Ray Data would batch clips across inputs by its own block boundaries and its writers give no
per-input commit point, so a crash could leave an input half in a committed shard. The driver
only handles small rows and object refs; media goes worker -> Whisper actor -> writer through the
object store, so driver memory stays bounded. The same code runs with an in-process ``ray.init()``
and on a cluster (``ray_address``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from iptalker_model.config import ModelConfig
from pipelines.curate.config import CurateConfig
from pipelines.curate.identity import IdentityResolver
from pipelines.curate.index import build_index, counts, prepare_output, write_dataset_json
from pipelines.curate.inputs import InputItem, list_inputs
from pipelines.curate.stages import Stages, estimate_bytes, input_row, reject
from pipelines.data import shards
from pipelines.data.geometry import geometry_record
from pipelines.data.storage import Storage, StorageConfig, join
from pipelines.errors import UserError
from preprocessing.config import PreprocessConfig


@dataclass
class CurationSummary:
    output: str
    counts: dict[str, Any]
    resumed_inputs: int  # inputs skipped because done shards already held them
    failed_shard_writes: int
    elapsed_s: float
    paths: dict[str, str] = field(default_factory=dict)
    identity_warnings: list[str] = field(default_factory=list)

    def render(self) -> str:
        c = self.counts
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(c["rejected_by_reason"].items())) or "none"
        split = ", ".join(f"{k} {v}" for k, v in sorted(c["clips_by_split"].items())) or "none"
        notes = "".join(f"; {n}" for n in self.warnings())
        return (f"Curated {c['inputs']} inputs in {self.elapsed_s:.0f} s ({self.resumed_inputs} already done): "
                f"{c['accepted']} accepted, {c['rejected']} rejected ({reasons}); {c['clips']} clips "
                f"({c['hours'] * 60:.1f} min; {split}) in {c['shards']} shards ({c['shard_bytes'] / 2**20:.1f} MiB)"
                f"{notes}. Shards: {self.paths['shards']}  Index: {self.paths['index']}  "
                f"Report: {self.paths['report']}  Lineage: {self.paths['dataset']}")

    def warnings(self) -> list[str]:
        out = [f"WARNING: {w}" for w in self.identity_warnings]
        if self.failed_shard_writes:
            out.append(f"{self.failed_shard_writes} shard writes FAILED (rerun to retry them)")
        ids = self.counts["identities_by_split"]
        if not ids.get("val") and ids.get("train", 0) >= 2:
            out.append("no validation clips: name a face in curate.val_identities")
        return out


def run_curation(inputs: list[str], output: str, cfg: CurateConfig, preprocess: PreprocessConfig,
                 storage: StorageConfig, *, ray_address: str | None = None, ray_temp_dir: str | None = None,
                 overwrite: bool = False, progress: bool = True, stages: Stages | None = None,
                 model: ModelConfig | None = None) -> CurationSummary:
    """Curate ``inputs`` into the dataset at ``output`` (local path or s3:// URI); see the module
    docstring for the stages. Rerunning after a crash resumes; ``overwrite`` starts over.
    ``model``: the model config whose lower-face mask ``dataset.json`` records with the crop
    geometry (default: ``ModelConfig()``); ``iptalker train`` refuses a model that differs."""
    from pipelines.curate.report import write_report

    # workers may lack the driver's env: pin the (non-secret) endpoint; credentials stay in the env
    endpoint = storage.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    storage = dataclasses.replace(storage, s3_endpoint_url=endpoint)
    t0, store, root = time.monotonic(), Storage(storage), output.rstrip("/")
    items = list_inputs(store, inputs, cfg.extensions)                                # 1
    committed, next_shard = prepare_output(store, root, overwrite)                    # 2
    todo = [it for it in items if it.uri not in committed]
    identities = IdentityResolver(cfg, store)                                         # 3
    if todo and identities.needs_descriptors:
        from pipelines.curate.stages import describe_inputs

        with ray_session(ray_address, cfg, ray_temp_dir):
            identities.assign_clusters(describe_inputs([it.uri for it in items], preprocess, store,
                                                       stages or Stages(), cfg.cpus_per_video, cfg.cluster_frames))
    names = [identities.identity(it) for it in items]
    identities.plan_splits(names, {r["identity"]: r["split"] for r in committed.values() if r.get("clips")})
    identity_warnings = identities.check(names)
    uncommitted, failed_writes = [], 0
    if todo:  # nothing left (a finished resume): no Ray start, just the index and report again
        with ray_session(ray_address, cfg, ray_temp_dir):
            stream = ShardStream(cfg, preprocess, store, root, next_shard, stages or Stages(), progress)
            uncommitted = stream.run(todo, identities, total=len(items))              # 4, 5, 6
            failed_writes = stream.failed_writes
    listed = [it.uri for it in items]
    index_inputs, clips, done = build_index(store, root, listed, uncommitted)         # 7
    c = counts(index_inputs, clips, done)
    write_report(store, root, index_inputs, clips, done, cfg.report_thumbnails)       # 8
    write_dataset_json(store, root, cfg.dataset_version, {"curate": cfg, "preprocess": preprocess,
                                                          "storage": storage.public_dict()}, c, done,
                       geometry_record(preprocess.align, model or ModelConfig()))
    paths = {"shards": join(root, shards.SHARDS_DIR), "index": join(root, shards.INDEX_DIR),
             "report": join(root, shards.REPORT_DIR, "index.html"), "dataset": join(root, shards.DATASET_JSON)}
    return CurationSummary(root, c, len(items) - len(todo), failed_writes, time.monotonic() - t0, paths,
                           identity_warnings)


@contextlib.contextmanager
def ray_session(address: str | None, cfg: CurateConfig, temp_dir: str | None = None) -> Iterator[None]:
    """Join ``address`` (token auth: ``RAY_AUTH_TOKEN`` in the env) or start Ray in-process
    (files under ``temp_dir``: keep it short, unix socket paths are limited). An already
    initialised Ray (a caller's, or ``ray job submit``) is used as is."""
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")  # set inside `ray job submit` entrypoints
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=cfg.num_workers, include_dashboard=False, _temp_dir=temp_dir,
                 log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


class ShardStream:
    """The driver loop: a bounded window of per-video tasks, their accepted inputs sent to the
    Whisper pool, and whole inputs packed into shards that are committed as they fill."""

    def __init__(self, cfg: CurateConfig, preprocess: PreprocessConfig, storage: Storage, root: str, next_shard: int,
                 stages: Stages, progress: bool):
        import ray

        from pipelines.curate.stages import make_extract_fn, make_whisper_pool, make_write_fn

        self.cfg, self.preprocess, self.storage, self.root = cfg, preprocess, storage, root
        self.stages, self.progress, self.next_shard = stages, progress, next_shard
        res = ray.cluster_resources()
        self.workers = cfg.num_workers or max(1, int(res.get("CPU", 1) // cfg.cpus_per_video))
        gpus = cfg.whisper_num_gpus if cfg.whisper_num_gpus is not None else (1.0 if res.get("GPU") else 0.0)
        self.extract = make_extract_fn(cfg.cpus_per_video)
        self.pool = make_whisper_pool(cfg.whisper_actors, preprocess, stages, cfg.whisper_num_cpus, gpus)
        self._dim_ref, self.whisper_dim = self.pool[0].dim.remote(), 512  # the model loads meanwhile
        self.write = make_write_fn()
        self.entries: list[tuple[dict, Any]] = []  # the open shard: (input row, samples ref | None)
        self.open_bytes = self.open_samples = 0
        self.writes: dict[Any, list[tuple[dict, Any]]] = {}  # write ref -> its entries
        self.uncommitted: list[dict] = []
        self.failed_writes = self.clips_done = self._turn = 0
        self.cancelled: set[Any] = set()

    def run(self, todo: list[InputItem], identities: IdentityResolver, total: int) -> list[dict]:
        """Process ``todo``; return the rows of inputs that could not be committed."""
        import ray
        from tqdm import tqdm

        queue = iter(todo)
        pending: dict[Any, tuple[dict, Any, float]] = {}  # row ref -> (initial row, payload ref, start)
        bar = tqdm(total=total, initial=total - len(todo), unit="video", desc="curate", disable=not self.progress,
                   dynamic_ncols=True, mininterval=1.0)
        try:
            while True:
                while len(pending) < self.workers and (item := next(queue, None)) is not None:
                    row = self._initial_row(item, identities)
                    row_ref, payload_ref = self.extract.remote(item.uri, row, self.preprocess, self.storage, self.stages)
                    pending[row_ref] = (row, payload_ref, time.monotonic())
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
                if not ready:
                    self._cancel_overdue(pending)
                    continue
                row, payload_ref, _ = pending.pop(ready[0])
                self._add(self._result(ready[0], row), payload_ref)
                bar.update(1)
                bar.set_postfix_str(f"clips {self.clips_done} shards {self.next_shard}", refresh=False)
            self._flush()
            self._drain(0)
        finally:
            bar.close()
        return self.uncommitted

    def _cancel_overdue(self, pending: dict[Any, tuple[dict, Any, float]]) -> None:
        """A video that hangs (a decoder stuck on a pathological file) is killed and rejected."""
        import ray

        limit = self.cfg.video_timeout_s
        for ref, (_, _, start) in pending.items():
            if limit and ref not in self.cancelled and time.monotonic() - start > limit:
                self.cancelled.add(ref)
                ray.cancel(ref, force=True)

    def _initial_row(self, item: InputItem, identities: IdentityResolver) -> dict:
        identity = identities.identity(item)
        return input_row(item.uri, shards.video_id_for(item.uri), identity, identities.split(identity))

    def _result(self, ref: Any, row: dict) -> dict:
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayError as e:  # the worker died (decoder segfault, OOM): input rejected
            if ref in self.cancelled:
                return reject(row, "timeout", f"still running after curate.video_timeout_s={self.cfg.video_timeout_s}")
            return reject(row, "worker_crashed", str(e).splitlines()[0] if str(e) else type(e).__name__)

    def _add(self, row: dict, payload_ref: Any) -> None:
        if row["status"] == "accepted":
            actor = self.pool[self._turn % len(self.pool)]
            self._turn += 1
            self.entries.append((row, actor.featurize.remote(payload_ref)))
            self.open_bytes += estimate_bytes(row, self._dim())
            self.open_samples += row["clips"]
            self.clips_done += row["clips"]
        else:
            self.entries.append((row, None))
        if self.open_bytes >= self.cfg.shard_max_bytes or self.open_samples >= self.cfg.shard_max_samples:
            self._flush()

    def _dim(self) -> int:
        """The encoder width for shard-size estimates (a guess until the first actor has loaded)."""
        import ray

        if self._dim_ref is not None and ray.wait([self._dim_ref], timeout=0)[0]:
            try:
                self.whisper_dim, self._dim_ref = ray.get(self._dim_ref), None
            except ray.exceptions.RayError as e:  # a config problem, not a per-video one: stop
                raise UserError(f"the Whisper encoder could not be loaded (check preprocess.whisper): "
                                f"{str(e).strip().splitlines()[-1]}") from None
        return self.whisper_dim

    def _flush(self) -> None:
        """Commit the open shard in a Ray task (at most two writes in flight)."""
        if not self.entries:
            return
        self._drain(1)
        ref = self.write.remote(self.storage, self.root, self.next_shard, self.entries,
                                self.cfg.shard_write_retries, self.cfg.shard_retry_backoff_s)
        self.writes[ref] = self.entries
        self.next_shard += 1
        self.entries, self.open_bytes, self.open_samples = [], 0, 0

    def _drain(self, keep: int) -> None:
        import ray

        while len(self.writes) > keep:
            ready, _ = ray.wait(list(self.writes), num_returns=1)
            entries = self.writes.pop(ready[0])
            try:
                record, error, rows = ray.get(ready[0])
            except ray.exceptions.RayError as e:
                record, error, rows = None, str(e).splitlines()[0], [r for r, _ in entries]
            if record is None:
                self.failed_writes += 1
                self.uncommitted += [reject(r, "shard_write_failed", error or "") if r["status"] == "accepted" else r
                                     for r in rows]
