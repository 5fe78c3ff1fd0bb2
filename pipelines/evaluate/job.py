"""``iptalker evaluate``: a model against the baselines on a frozen eval set, logged to MLflow.

    resolve the model (bundle folder, exported .pt, models:/NAME@alias)
    -> eval set (reuse a manifest, or freeze a new one next to the report)
    -> per clip: model + baselines, self-reconstruction and cross-audio, every metric
    -> means over clips -> report.json + report.html (+ PNGs) -> one MLflow run with lineage
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import metrics as M
from pipelines.data import shards as contract
from pipelines.data.bundle import resolve_bundle
from pipelines.data.loader import WindowSpec
from pipelines.data.storage import Storage
from pipelines.errors import UserError
from pipelines.evaluate import report as R
from pipelines.evaluate.clips import baselines, draw_references, driving_audio, generate, read_clips
from pipelines.evaluate.config import EvaluateConfig
from pipelines.evaluate.evalset import EvalSet, build_evalset, load_evalset
from pipelines.evaluate.scoring import Face, average, clip_mouth_box, score
from pipelines.tracking import TrackingConfig, dataset_lineage

log = logging.getLogger(__name__)


@dataclass
class EvalReport:
    metrics: dict[str, float]          # flat: self.*, cross.*, baseline.<name>.<setting>.*
    evalset_version: str
    dataset_version: str
    model_uri: str
    out_dir: Path
    json_path: Path
    html_path: Path
    evalset_path: Path
    clips: int
    mlflow_run_id: str = ""
    per_clip: list[dict] = field(default_factory=list)

    def files(self) -> list[Path]:
        """The files this evaluation wrote (report, plots, frame strips) and its eval-set manifest."""
        pngs = sorted(p for p in self.out_dir.glob("*.png")
                      if p.name == "metrics.png" or p.stem.split("-", 1)[-1] in {c["key"] for c in self.per_clip})
        return [self.json_path, self.html_path, self.evalset_path, *pngs]

    def render(self) -> str:
        """The summary a user reads: lineage, then every number beside the baselines."""
        head = (f"Evaluated {self.model_uri} on {self.clips} clips (eval set {self.evalset_version}, "
                f"dataset {self.dataset_version or '?'}); report {self.html_path}, JSON {self.json_path}"
                + (f", MLflow run {self.mlflow_run_id}" if self.mlflow_run_id else "") + ".")
        return head + "\n" + R.render_table(self.metrics)


def _load(model_uri: str, cfg: EvaluateConfig):
    bundle = resolve_bundle(model_uri, syncnet=cfg.syncnet or None)
    model, syncnet = bundle.load_models()
    if syncnet is None:
        raise UserError(f"{model_uri} has no SyncNet expert for the sync metrics; pass one with "
                        "--set evaluate.syncnet=PATH (an exported syncnet .pt)")
    public = None
    if cfg.public_syncnet:
        if not Path(cfg.public_syncnet).is_file():
            raise UserError(f"no public SyncNet weights at {cfg.public_syncnet!r} (evaluate.public_syncnet)")
        try:
            public = M.PublicSyncNet.from_file(cfg.public_syncnet)
        except ValueError as e:
            raise UserError(str(e)) from None
    return bundle, model, syncnet, public, _lpips(cfg)


def _lpips(cfg: EvaluateConfig):
    if not (cfg.lpips_backbone and cfg.lpips_heads):
        return None
    from pipelines.metrics.lpips import LPIPS

    for path in (cfg.lpips_backbone, cfg.lpips_heads):
        if not Path(path).is_file():
            raise UserError(f"no LPIPS weights at {path!r} (evaluate.lpips_backbone / lpips_heads)")
    try:
        return LPIPS.from_files(cfg.lpips_backbone, cfg.lpips_heads)
    except ValueError as e:
        raise UserError(str(e)) from None


def _evalset(data_uri: str, cfg: EvaluateConfig, storage: Storage, out: Path) -> tuple[EvalSet, Path]:
    if cfg.evalset:
        return load_evalset(cfg.evalset, data_uri, storage), Path(cfg.evalset)
    es = build_evalset(data_uri, storage, split=cfg.split, max_clips=cfg.max_clips, seed=cfg.seed)
    return es, es.save(out / "evalset.json")


def evaluate_clip(clip: dict, driver: dict | None, model, syncnet, public, cfg: EvaluateConfig,
                  seed: int, lpips_net=None) -> tuple[dict, dict]:
    """Scores {setting: {candidate: {metric: v}}} for one clip, and its videos for the report."""
    mcfg, frames = model.cfg, clip["frames"]
    refs = draw_references(clip["landmarks"], mcfg.sync_frames, mcfg.num_references, seed)
    videos = baselines(frames, refs, mcfg)
    videos["model"] = generate(model, frames, clip["whisper"], refs)
    faces = {name: Face.of(v, cfg.identity_every) for name, v in videos.items()}
    source = faces["source"]
    box, box_from = clip_mouth_box(source, mcfg)
    kw = dict(syncnet=syncnet, public=public, max_offset=cfg.max_offset)
    own = dict(rows=clip["whisper"], audio=clip["audio"])
    scores = {"self": {n: score(f, source, box=box, lpips_net=lpips_net, **own, **kw) for n, f in faces.items()}}
    visuals = {"videos": videos, "faces": faces, "box_from": box_from}
    if driver is not None:
        rows, audio = driving_audio(clip, driver)
        videos["model_cross"] = generate(model, frames, rows, refs)
        faces_cross = {**{n: faces[n] for n in videos if n not in ("model", "model_cross")},
                       "model": Face.of(videos["model_cross"], cfg.identity_every)}
        scores["cross"] = {n: score(f, source, rows=rows, audio=audio, **kw) for n, f in faces_cross.items()}
        visuals.update(cross_rows=rows, cross_audio=audio, model_cross=faces_cross["model"])
    return scores, visuals


def _visuals(out: Path, key: str, clip: dict, vis: dict, syncnet, max_offset: int) -> list[tuple[str, str]]:
    """PNGs for one clip: frame strip, LSE curves, mouth opening vs envelope (cross audio)."""
    images = []
    strip = {k: vis["videos"][k] for k in ("source", "model", "model_cross", "copy_reference", "mean_reference")
             if k in vis["videos"]}
    R.frame_strip(strip, out / f"frames-{key}.png")
    images.append((f"{key}: rows {', '.join(strip)}", f"frames-{key}.png"))
    n_win = len(clip["frames"]) - syncnet.cfg.sync_frames + 1
    off = min(max_offset, n_win - 1)
    curves = {"model (own audio)": M.lse_ours(syncnet, vis["videos"]["model"], clip["whisper"], off).curve,
              "source (own audio)": M.lse_ours(syncnet, clip["frames"], clip["whisper"], off).curve}
    if "cross_rows" in vis:
        curves["model (other audio)"] = M.lse_ours(syncnet, vis["videos"]["model_cross"], vis["cross_rows"], off).curve
        curves["source (other audio)"] = M.lse_ours(syncnet, clip["frames"], vis["cross_rows"], off).curve
    R.plot_curves(curves, out / f"lse-{key}.png", f"{key}: LSE distance per offset")
    images.append((f"{key}: LSE curves", f"lse-{key}.png"))
    if vis.get("cross_audio") is not None:
        env = M.audio_envelope(vis["cross_audio"], contract.FPS, len(clip["frames"]))
        R.plot_activity({"model": vis["model_cross"].opening, "source": vis["faces"]["source"].opening},
                        env, out / f"activity-{key}.png", f"{key}: mouth opening vs the other clip's audio")
        images.append((f"{key}: mouth activity (cross audio)", f"activity-{key}.png"))
    return images


def run_evaluation(model_uri: str, data_uri: str, cfg: EvaluateConfig, storage: Storage | None = None,
                   tracking_cfg: TrackingConfig | None = None, out_dir: str | Path = "eval-out") -> EvalReport:
    """Evaluate ``model_uri`` on ``data_uri``'s eval set beside the baselines; see the module doc.

    Raises UserError (one line) for a model/data/eval-set the user must fix.
    """
    storage = storage or Storage()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bundle, model, syncnet, public, lpips_net = _load(model_uri, cfg)
    es, es_path = _evalset(data_uri, cfg, storage, out)
    lineage = dataset_lineage(data_uri, storage)
    spec = WindowSpec.from_model(model.cfg)
    clips = list(_read(es, data_uri, storage, spec, cfg))
    by_key = {c["key"]: c for c in clips}
    per_clip, images = [], []
    for i, clip in enumerate(clips):
        driver = by_key.get(es.cross_audio.get(clip["key"], ""))
        scores, vis = evaluate_clip(clip, driver, model, syncnet, public, cfg, seed=cfg.seed * 100003 + i,
                                    lpips_net=lpips_net)
        per_clip.append({"key": clip["key"], "driver": driver["key"] if driver else "",
                         "mouth_box_from": vis["box_from"], "audio_error": clip["audio_error"],
                         "frames": len(clip["frames"]), "scores": scores})
        if i < cfg.side_by_side:
            images += _visuals(out, clip["key"], clip, vis, syncnet, cfg.max_offset)
        log.info("evaluated %s (%d/%d)", clip["key"], i + 1, len(clips))
    metrics = average([c["scores"] for c in per_clip])
    report = EvalReport(metrics, es.version, lineage.get("dataset.version", ""), model_uri, out,
                        out / "report.json", out / "report.html", es_path, len(clips), per_clip=per_clip)
    _write(report, es, lineage, bundle, cfg, images)
    if tracking_cfg is not None and tracking_cfg.enabled:
        from pipelines.evaluate.mlflow_run import log_evaluation

        report.mlflow_run_id = log_evaluation(report, es, lineage, bundle, cfg, tracking_cfg, data_uri)
        R.write_json(report.json_path, {**_payload(report, es, lineage, bundle, cfg)})
    return report


def _read(es: EvalSet, data_uri: str, storage: Storage, spec: WindowSpec, cfg: EvaluateConfig):
    try:
        yield from read_clips(es, data_uri, storage, spec, cfg.max_frames)
    except ValueError as e:  # e.g. whisper width != the model's audio_dim
        raise UserError(f"eval set {es.version} does not fit this model: {e}") from None


def _payload(report: EvalReport, es: EvalSet, lineage: dict, bundle, cfg: EvaluateConfig) -> dict:
    return {"model_uri": report.model_uri, "model_whisper": bundle.whisper, "evalset_version": es.version,
            "evalset_path": str(report.evalset_path), "dataset": lineage, "config": cfg.to_dict(),
            "clips": report.clips, "metrics": report.metrics, "per_clip": report.per_clip,
            "mlflow_run_id": report.mlflow_run_id}


def _write(report: EvalReport, es: EvalSet, lineage: dict, bundle, cfg: EvaluateConfig,
           images: list[tuple[str, str]]) -> None:
    out = report.out_dir
    R.write_json(report.json_path, _payload(report, es, lineage, bundle, cfg))
    images = [("headline metrics: model vs baselines", R.plot_bars(report.metrics, out / "metrics.png").name)] + images
    summary = {"model": report.model_uri, "eval set": f"{es.version} ({report.clips} clips, {es.split})",
               "dataset": f"{lineage.get('dataset.version', '?')} ({lineage.get('dataset.path', '')})",
               "dataset sha256": lineage.get("dataset.sha256", "missing"),
               "public SyncNet": cfg.public_syncnet or "not given (LSE with our SyncNet only)",
               "LPIPS": "computed" if cfg.lpips_backbone and cfg.lpips_heads else "not computed (evaluate.lpips_* not given)",
               "ArcFace": "not implemented (no weights ship offline; dlib identity instead)"}
    R.write_html(report.html_path, title="iptalker evaluation", summary=summary, metrics=report.metrics,
                 images=images)
