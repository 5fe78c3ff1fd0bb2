"""``iptalker pipeline``: the whole loop, stage by stage, resumable, driven by one config.

curate -> train-syncnet -> export-syncnet -> train-iptalker -> bundle -> evaluate -> register ->
promote [-> dub]; a given ``train.syncnet_checkpoint`` replaces the two SyncNet stages. Each
stage calls the same library function as its CLI verb and records what it produced under
``pipeline.workdir/stages/`` (``orchestration.stages``): a rerun skips finished stages, ``--from
STAGE`` redoes one and everything after it. Against a cluster the same stages run with
``ray.address``, ``s3://`` inputs/dataset and a remote ``tracking.tracking_uri``; the workdir
(stage records, checkpoints, bundles) must then be a filesystem every node shares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from iptalker_model.config import build_dataclass
from orchestration.stages import Stage, StageRunner
from pipelines.errors import UserError

if TYPE_CHECKING:
    from orchestration.settings import Settings


@dataclass
class PipelineConfig:
    workdir: str = "pipeline-out"       # stage records, runs, models, reports (a shared FS on a cluster)
    inputs: tuple[str, ...] = ()        # raw videos for curation: folders, globs, s3:// prefixes, lists
    dataset: str = ""                   # dataset root; "" = <workdir>/dataset
    launcher: str = "local"             # training launcher: local | torchrun | deepspeed | ray
    nproc: int = 1                      # training processes (GPUs) per node
    nnodes: int = 1
    dub_video: str = ""                 # optional last stage: dub this video ...
    dub_audio: str = ""                 # ... with this speech, using the new champion

    def __post_init__(self):
        self.inputs = tuple(self.inputs)

    @classmethod
    def from_dict(cls, d: dict) -> PipelineConfig:
        return build_dataclass(cls, d, label="pipeline")


class StageFailed(RuntimeError):
    """A stage ran and its outcome stops the loop (e.g. the gate refused the model): exit 1."""


class LoopStages:
    """The stage functions, bound to the settings and one workdir."""

    def __init__(self, settings: Settings, cfg: PipelineConfig, log: Callable[[str], None] = print):
        self.cfg, self.log = cfg, log
        self.work = Path(cfg.workdir).resolve()
        self.dataset = cfg.dataset or str(self.work / "dataset")
        self.settings = dataclasses.replace(settings)
        self.settings.tracking = dataclasses.replace(
            settings.tracking, tracking_uri=settings.tracking.tracking_uri or f"sqlite:///{self.work / 'mlruns.db'}")
        self.name = settings.registry.model_name

    def stages(self) -> list[Stage]:
        """The loop; with ``train.syncnet_checkpoint`` set the expert is that file (trained once,
        reused by every IPTalker run) and the two SyncNet stages are left out."""
        expert = [] if self.settings.train.syncnet_checkpoint else [
            Stage("train-syncnet", self.train_syncnet), Stage("export-syncnet", self.export_syncnet)]
        out = [Stage("curate", self.curate), *expert, Stage("train-iptalker", self.train_iptalker),
               Stage("bundle", self.bundle), Stage("evaluate", self.evaluate), Stage("register", self.register),
               Stage("promote", self.promote)]
        if self.cfg.dub_video:
            out.append(Stage("dub", lambda o: self.dub(self.cfg.dub_video, self.cfg.dub_audio)))
        return out

    # -- stages: each takes the outputs so far and returns its own (JSON-able) ------------------
    def curate(self, outputs: dict, inputs: list[str] | None = None) -> dict:
        from pipelines.curate.job import run_curation

        inputs = inputs or list(self.cfg.inputs)
        if not inputs:
            raise UserError("pipeline.inputs is empty: name the raw videos to curate")
        st = self.settings
        summary = run_curation(inputs, self.dataset, st.curate, st.preprocess, st.storage,
                               ray_address=st.ray.address, ray_temp_dir=st.ray.temp_dir, model=st.model)
        self.log(summary.render())
        if not summary.counts.get("clips"):
            raise StageFailed("curation accepted no clips; nothing to train on")
        return {"dataset": self.dataset, "report": summary.paths["report"], "counts": summary.counts}

    def _train(self, stage: str, syncnet: str = "") -> dict:
        from orchestration.launch import launch_training

        st = dataclasses.replace(self.settings)
        t = st.train
        if stage == "syncnet":  # a recipe's syncnet_* values (0 = as the iptalker stage)
            t = t.as_syncnet_stage()
        st.train = dataclasses.replace(t, data=self.dataset, stage=stage, out_dir=str(self.work / "runs" / stage),
                                       syncnet_checkpoint=syncnet or t.syncnet_checkpoint)
        summary = launch_training(st, launcher=self.cfg.launcher, nproc=self.cfg.nproc, nnodes=self.cfg.nnodes)
        metrics = {k: v for k, v in summary.get("metrics", {}).items() if isinstance(v, int | float)}
        return {"out_dir": summary.get("out_dir", st.train.out_dir), "run_id": summary.get("mlflow_run_id", ""),
                "step": summary.get("step"), "metrics": metrics}

    def train_syncnet(self, outputs: dict) -> dict:
        return self._train("syncnet")

    def export_syncnet(self, outputs: dict) -> dict:
        from pipelines.train.export import export_checkpoint

        path = export_checkpoint(outputs["train-syncnet"]["out_dir"], self.work / "models" / "syncnet.pt")
        return {"syncnet": str(path)}

    def train_iptalker(self, outputs: dict) -> dict:
        return self._train("iptalker", outputs.get("export-syncnet", {}).get("syncnet", ""))

    def bundle(self, outputs: dict) -> dict:
        from pipelines.train.bundle_export import export_bundle

        exported = export_bundle(outputs["train-iptalker"]["out_dir"], self.work / "models" / "bundle")
        return {"bundle": str(exported.path), "run_id": exported.run_id, "logged": exported.logged}

    def evaluate(self, outputs: dict) -> dict:
        from pipelines.data.storage import Storage
        from pipelines.evaluate import run_evaluation

        st = self.settings
        report = run_evaluation(outputs["bundle"]["bundle"], self.dataset, st.evaluate, Storage(st.storage),
                                st.tracking, self.work / "eval")
        self.log(report.render())
        return {"metrics": report.metrics, "evalset": report.evalset_version, "html": str(report.html_path),
                "json": str(report.json_path), "run_id": report.mlflow_run_id, "table": report.render()}

    def register(self, outputs: dict) -> dict:
        from pipelines.registry.register import register_run

        st = self.settings
        serving = {k: dataclasses.asdict(getattr(st, k)) for k in ("dub", "preprocess")}
        reg = register_run(outputs["bundle"]["run_id"], self.name, st.tracking, serving,
                           evaluation_run_id=outputs["evaluate"].get("run_id", ""))
        self.log(reg.render())
        return {"name": reg.name, "version": reg.version}

    def promote(self, outputs: dict) -> dict:
        from pipelines.registry.promotion import evaluator, promote

        st = self.settings
        registry = dataclasses.replace(st.registry, eval_data=st.registry.eval_data or self.dataset)
        evaluate = evaluator(registry.eval_data, st.evaluate, st.storage, st.tracking, str(self.work / "eval-gate"))
        outcome = promote(self.name, registry, st.tracking, evaluate=evaluate)
        self.log(outcome.render())
        if not outcome.passed:
            raise StageFailed(f"the gate refused {self.name} v{outcome.challenger}; see the reason above")
        return {"champion": f"models:/{self.name}@champion", "version": outcome.champion}

    def dub(self, video: str, audio: str) -> dict:
        import mlflow

        from pipelines.data.storage import Storage
        from pipelines.dub.batch import run_dub

        out = self.work / "dubbed" / f"{Path(video).stem}.dubbed.mp4"
        out.parent.mkdir(parents=True, exist_ok=True)
        st = self.settings
        model = f"models:/{self.name}@champion"
        mlflow.set_tracking_uri(st.tracking.tracking_uri)  # models:/ resolves against this store
        report = run_dub(model, st.dub, st.preprocess, video=video, audio=audio, out=str(out),
                         storage=Storage(st.storage), report=str(out.with_suffix(".report.json")), progress=False)
        return {"video": str(out), "report": str(out.with_suffix(".report.json")), "source": video, "audio": audio,
                "sync": report.sync, "identity": report.identity, "face_coverage": report.face_coverage,
                "fps": report.timings.get("fps_end_to_end")}


def summary_lines(outputs: dict, tracking_uri: str) -> list[str]:
    """What a user reads at the end: where everything is, and how good the champion is."""
    lines = []
    if "curate" in outputs:
        c = outputs["curate"]
        lines.append(f"dataset: {c['dataset']} ({c['counts'].get('clips', '?')} clips from "
                     f"{c['counts'].get('accepted', '?')} accepted inputs); report {c['report']}")
    lines.append(f"MLflow: mlflow ui --backend-store-uri {tracking_uri}")
    if "promote" in outputs:
        lines.append(f"champion: {outputs['promote']['champion']} (version {outputs['promote']['version']})")
    if "evaluate" in outputs:
        lines.append(f"metrics against the baselines (report {outputs['evaluate']['html']}):")
        lines.append(outputs["evaluate"]["table"])
    if "dub" in outputs:
        d = outputs["dub"]
        lines.append(f"dubbed video: {d['video']} (quality report {d['report']}: LSE-C {d['sync'].get('lse_c')}, "
                     f"LSE-D {d['sync'].get('lse_d')}, identity distance {d['identity'].get('identity_distance')}, "
                     f"face coverage {d['face_coverage']:.2f})")
    return lines


def run_pipeline(settings: Settings, cfg: PipelineConfig, *, redo_from: str | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Run the loop's stages that have no record yet; returns every stage's outputs."""
    loop = LoopStages(settings, cfg, log)
    runner = StageRunner(loop.work, loop.stages(), log)
    if redo_from:
        runner.redo_from(redo_from)
    outputs = runner.run()
    for line in summary_lines(outputs, loop.settings.tracking.tracking_uri):
        log(line)
    return outputs
