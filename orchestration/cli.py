"""``iptalker``: one verb per job; each parses its arguments and calls ONE library function.

Every verb takes ``--config FILE`` (repeatable) and ``--set key=value`` (repeatable), before or
after the verb. Errors a user can fix print one line and exit 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pipelines.errors import UserError

EXIT_USER_ERROR = 2


def _add_config_args(p: argparse.ArgumentParser, suffix: str) -> None:
    default = argparse.SUPPRESS if suffix == "sub" else []
    p.add_argument("--config", action="append", dest=f"config_{suffix}", default=default,
                   metavar="FILE", help="YAML settings file (repeatable; later files win)")
    p.add_argument("--set", action="append", dest=f"set_{suffix}", default=default,
                   metavar="KEY=VALUE", help="override one setting, e.g. --set curate.num_workers=2")


def _settings(args: argparse.Namespace):
    from orchestration.settings import load_settings

    files = list(args.config_main) + list(getattr(args, "config_sub", []))
    overrides = list(args.set_main) + list(getattr(args, "set_sub", []))
    return load_settings(files, overrides)


def _registry_store(st, model_uri: str) -> None:
    """``models:/NAME@alias`` resolves against the configured tracking store (unless the
    environment names one)."""
    if model_uri.startswith("models:/") and not os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow

        mlflow.set_tracking_uri(st.tracking.resolved_uri())


# -- verbs -----------------------------------------------------------------------------------


def cmd_version(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    _settings(args)  # validate config even here: a bad --set must not pass silently
    print(f"iptalker {version('iptalker')}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from orchestration.settings import dump_yaml

    print(dump_yaml(_settings(args)), end="")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from preprocessing.synthetic.corpus import (
        BAD_KINDS,
        EDGE_KINDS,
        generate_corpus,
        write_bad_inputs,
    )

    _settings(args)
    out = Path(args.out)
    videos = generate_corpus(out, args.videos, seed=args.seed, n_identities=args.identities)
    bad = write_bad_inputs(out / "bad", seed=args.seed) if args.bad else {}
    print(f"wrote {len(videos)} talking-head videos under {out}"
          + (f" and {len(bad)} bad/edge inputs ({', '.join(BAD_KINDS + EDGE_KINDS)}) under {out / 'bad'}" if bad else ""))
    return 0


def cmd_curate(args: argparse.Namespace) -> int:
    from pipelines.curate.job import run_curation

    st = _settings(args)
    summary = run_curation(args.input, args.output, st.curate, st.preprocess, st.storage,
                           ray_address=args.address or st.ray.address, ray_temp_dir=st.ray.temp_dir,
                           overwrite=args.overwrite, retry=args.retry,
                           progress=not args.no_progress, model=st.model)
    print(summary.render())
    return 1 if summary.failed_shard_writes else 0


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from orchestration.launch import launch_training

    st = _settings(args)
    changes = {"stage": args.stage, "resume": args.resume or st.train.resume}
    if args.data:
        changes["data"] = args.data
    if args.out:
        changes["out_dir"] = args.out
    st.train = dataclasses.replace(st.train, **changes)
    summary = launch_training(st, launcher=args.launcher, nproc=args.nproc, nnodes=args.nnodes,
                              master_addr=args.master_addr, master_port=args.master_port,
                              hostfile=args.hostfile, ray_address=args.address, use_gpu=args.gpu)
    print(_train_summary(summary))
    return 0


def _train_summary(summary: dict) -> str:
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(summary.get("metrics", {}).items())
                        if isinstance(v, int | float))
    parts = [f"Trained stage {summary.get('stage', '?')} to step {summary.get('step', '?')} "
             f"({summary.get('status', 'unknown status')})"]
    if metrics:
        parts.append(f"final {metrics}")
    if summary.get("mlflow_run_id"):
        parts.append(f"MLflow run {summary['mlflow_run_id']} at {summary.get('tracking_uri', '?')}")
    parts.append(f"checkpoints: {summary.get('checkpoints') or summary.get('out_dir')}")
    return "; ".join(parts) + "."


def cmd_export(args: argparse.Namespace) -> int:
    _settings(args)
    source = args.run_dir or args.checkpoint
    if not source:
        raise UserError("pass --run-dir RUN_DIR (or --checkpoint DIR)")
    if args.bundle:
        from pipelines.train.bundle_export import export_bundle

        done = export_bundle(source, args.out, tag=args.tag)
        logged = (f"; logged as artifact bundle/ of MLflow run {done.run_id}" if done.logged
                  else "; not logged (the run was not tracked)")
        print(f"wrote model bundle {done.path}{logged}")
        return 0
    from pipelines.train.export import export_checkpoint

    out = export_checkpoint(source, args.out, tag=args.tag)
    print(f"exported fp32 weights + model config to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import dataclasses

    from pipelines.data.storage import Storage
    from pipelines.evaluate import run_evaluation

    st = _settings(args)
    cfg = dataclasses.replace(st.evaluate, evalset=args.evalset) if args.evalset else st.evaluate
    _registry_store(st, args.model)
    report = run_evaluation(args.model, args.data, cfg, Storage(st.storage), st.tracking, args.out)
    print(report.render())
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    import dataclasses

    from pipelines.registry.register import register_run

    st = _settings(args)
    serving = {k: dataclasses.asdict(getattr(st, k)) for k in ("dub", "preprocess") if hasattr(st, k)}
    print(register_run(args.run, args.name or st.registry.model_name, st.tracking, serving,
                       evaluation_run_id=args.evaluation or "").render())
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from pipelines.registry.promotion import evaluator, promote

    st = _settings(args)
    evaluate = evaluator(st.registry.eval_data, getattr(st, "evaluate", None), st.storage,
                         st.tracking, st.registry.eval_out_dir)
    outcome = promote(args.name or st.registry.model_name, st.registry, st.tracking,
                      dry_run=args.dry_run, evaluate=evaluate)
    print(outcome.render(), file=sys.stdout if outcome.passed or args.dry_run else sys.stderr)
    return 0 if outcome.passed or args.dry_run else 1


def cmd_rollback(args: argparse.Namespace) -> int:
    from pipelines.registry.promotion import rollback

    st = _settings(args)
    print(rollback(args.name or st.registry.model_name, st.registry, st.tracking).render())
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from pipelines.registry.audit import render_history
    from pipelines.registry.promotion import registry_history

    st = _settings(args)
    events = registry_history(args.name or st.registry.model_name, st.tracking)
    print(json.dumps(events, indent=1) if args.json else render_history(events))
    return 0


def _run_loop(verb: str, run: Callable[[], object]) -> int:
    """Run the demo's or the pipeline's stages; a stage whose outcome stops the loop exits 1."""
    from orchestration.pipeline import StageFailed

    try:
        run()
    except StageFailed as e:
        print(f"iptalker {verb}: stopped: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestration.demo import run_demo

    st = _settings(args)
    return _run_loop("demo", lambda: run_demo(st, args.workdir, videos=args.videos, seed=args.seed,
                                              redo_from=args.from_stage))


def cmd_pipeline(args: argparse.Namespace) -> int:
    import dataclasses

    from orchestration.pipeline import run_pipeline

    st = _settings(args)
    cfg = dataclasses.replace(st.pipeline, workdir=args.workdir) if args.workdir else st.pipeline
    return _run_loop("pipeline", lambda: run_pipeline(st, cfg, redo_from=args.from_stage))


def cmd_dub(args: argparse.Namespace) -> int:
    import dataclasses

    from pipelines.data.storage import Storage
    from pipelines.dub.batch import BatchSummary, run_dub

    st = _settings(args)
    changes = {k: v for k, v in (("length_mode", args.length_mode), ("device", args.device)) if v}
    if args.face:
        try:
            x, y = (float(v) for v in args.face.split(","))
        except ValueError:
            raise UserError(f"--face {args.face!r}: expected x,y in source pixels, e.g. --face 640,300") from None
        changes["face"] = (x, y)
    if args.debug_video:
        changes["debug_video"] = True
    if args.no_progress:
        changes["progress"] = False
    _registry_store(st, args.model)
    result = run_dub(args.model, dataclasses.replace(st.dub, **changes), st.preprocess, video=args.video,
                     audio=args.audio, out=args.out, batch=args.batch, storage=Storage(st.storage),
                     report=args.report, progress=not args.no_progress)
    if isinstance(result, BatchSummary):
        print(result.render())
        return 1 if result.failed else 0
    sync = result.sync
    print(f"Dubbed {result.video} with {result.audio} -> {result.out}: {result.frames} frames at "
          f"{result.fps:g} fps, {result.width}x{result.height}, length mode {result.length_mode}; "
          f"{result.dubbed_frames} frames dubbed, passed through {result.passed_through or 'none'}; "
          f"LSE-D {sync.get('lse_d')}, LSE-C {sync.get('lse_c')}; "
          f"{result.timings.get('fps_end_to_end', 0):.2f} frames/s. Report: {args.report or result.report_path}"
          + (f"; debug video: {result.debug_video}" if result.debug_video else ""))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from orchestration.submit import REPO_ROOT, submit

    _settings(args)
    verb_args = [a for a in args.verb_args if a != "--"] if args.verb_args[:1] == ["--"] else args.verb_args
    env = dict(kv.split("=", 1) for kv in args.env)
    result = submit(args.address, verb_args, working_dir=None if args.no_upload else REPO_ROOT,
                    env=env, follow=not args.no_follow)
    print(f"job {result.job_id}: {result.status} (logs: ray job logs --address {result.address} {result.job_id})")
    return 0 if result.status in ("SUCCEEDED", "PENDING", "RUNNING") else 1


def _add_verbs(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    verbs: dict[str, Callable[[argparse.Namespace], int]] = {}

    def verb(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _add_config_args(p, "sub")
        verbs[name] = fn
        return p

    verb("version", cmd_version, "print the installed version")
    p = verb("demo", cmd_demo, "the whole loop on a generated corpus, locally (resumable)")
    p.add_argument("--workdir", "--out", dest="workdir", default="demo-out",
                   help="folder for everything the demo writes (default ./demo-out)")
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--from", dest="from_stage", default=None, metavar="STAGE",
                   help="redo this stage and every later one (synth, curate, train-syncnet, ...)")
    p = verb("pipeline", cmd_pipeline, "the whole loop from pipeline.* settings (cluster, s3, remote MLflow)")
    p.add_argument("--workdir", default=None, help="stage records and outputs (default: pipeline.workdir)")
    p.add_argument("--from", dest="from_stage", default=None, metavar="STAGE",
                   help="redo this stage and every later one")
    verb("config", cmd_config, "print the resolved settings (credentials masked)")
    p = verb("synth", cmd_synth, "write synthetic talking-head videos (tests, demo)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--videos", type=int, default=4, help="number of good videos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bad", action="store_true", help="also write every bad/edge input kind")
    p.add_argument("--identities", type=int, default=3,
                   help="identities (folders); up to 8 are distinct real people with the face bank")

    p = verb("curate", cmd_curate, "curate raw videos into WebDataset shards + index + report (Ray)")
    p.add_argument("--input", nargs="+", required=True, metavar="URI",
                   help="folders, globs, s3:// prefixes, files, or .parquet/.csv lists of URIs")
    p.add_argument("--output", required=True, metavar="URI", help="dataset root (folder or s3://bucket/prefix)")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: ray.address, else in-process)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    p.add_argument("--retry", type=lambda v: tuple(r for r in v.split(",") if r), default=(),
                   metavar="REASON[,REASON...]",
                   help="also redo inputs rejected for these final reasons (e.g. no_face); retryable "
                        "ones (worker_crashed, timeout, whisper_failed, storage_error) are always redone")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = verb("train", cmd_train, "train SyncNet or IPTalker with DeepSpeed ZeRO")
    p.add_argument("--data", default=None, metavar="URI", help="curated dataset root (default: train.data)")
    p.add_argument("--stage", choices=("syncnet", "iptalker"), required=True)
    p.add_argument("--out", default=None, help="run folder for checkpoints (default: train.out_dir)")
    p.add_argument("--launcher", choices=("local", "torchrun", "deepspeed", "ray"), default="local")
    p.add_argument("--nproc", type=int, default=1, help="processes (GPUs) per node")
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--master-addr", default="127.0.0.1", help="rendezvous host (torchrun/deepspeed, multi-node)")
    p.add_argument("--master-port", type=int, default=29500)
    p.add_argument("--hostfile", default="", help="DeepSpeed hostfile (see infra/hostfile.example)")
    p.add_argument("--address", default=None, help="Ray cluster for --launcher ray (default: ray.address)")
    p.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=None,
                   help="Ray workers on GPUs (default: when the cluster has them)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")

    p = verb("evaluate", cmd_evaluate, "score a model beside its baselines on a frozen eval set (MLflow)")
    p.add_argument("--model", required=True, metavar="URI",
                   help="bundle folder, exported iptalker .pt (+ --set evaluate.syncnet=PATH) or models:/NAME@alias")
    p.add_argument("--data", required=True, metavar="URI", help="curated dataset root (folder or s3://...)")
    p.add_argument("--out", default="eval-out", help="folder for report.json, report.html, plots, evalset.json")
    p.add_argument("--evalset", default=None, metavar="PATH",
                   help="reuse this frozen eval-set manifest (default: freeze a new one in --out)")

    p = verb("dub", cmd_dub, "lip-sync a video to new speech (mp4 at the input's size and frame rate)")
    p.add_argument("--video", help="input video (any resolution, fps, rotation)")
    p.add_argument("--audio", help="new speech: wav/mp3/m4a/flac, or a video whose audio track to use")
    p.add_argument("--model", required=True, metavar="URI",
                   help="bundle folder, exported iptalker .pt, or models:/NAME@alias")
    p.add_argument("--out", help="output mp4")
    p.add_argument("--length-mode", choices=("bounce", "loop", "freeze", "cut-audio"), default=None,
                   help="audio longer than the video (default: dub.length_mode, bounce)")
    p.add_argument("--face", default=None, metavar="X,Y", help="dub the face nearest to this source pixel")
    p.add_argument("--debug-video", action="store_true", help="also write <out>.debug.mp4 (source | dubbed)")
    p.add_argument("--report", default=None, metavar="PATH", help="also write the quality report JSON here")
    p.add_argument("--device", default=None, help="cpu | cuda (default: dub.device)")
    p.add_argument("--batch", default=None, metavar="CSV", help="manifest with columns video,audio,out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = verb("submit", cmd_submit, "run an iptalker verb as a Ray job on a cluster and follow its logs")
    p.add_argument("--address", required=True,
                   help="the cluster's job API, e.g. http://head:8265 (RAY_AUTH_TOKEN from the environment)")
    p.add_argument("--no-follow", action="store_true", help="return once submitted")
    p.add_argument("--no-upload", action="store_true",
                   help="do not upload this checkout as working_dir (the cluster image has the code)")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="non-secret environment for the job (credentials are refused)")
    p.add_argument("verb_args", nargs=argparse.REMAINDER, metavar="-- VERB ARGS",
                   help="the iptalker command to run there, e.g. -- curate --input s3://... --output s3://...")

    p = verb("export", cmd_export, "consolidate a (ZeRO-sharded) checkpoint into one fp32 state dict")
    p.add_argument("--run-dir", default=None, help="training run folder (its checkpoints/ inside)")
    p.add_argument("--checkpoint", default=None, help="or a checkpoint folder (a run's checkpoints/<stage>)")
    p.add_argument("--out", required=True, help="output .pt file, or the bundle folder with --bundle")
    p.add_argument("--tag", default=None, help="checkpoint tag (default: latest)")
    p.add_argument("--bundle", action="store_true",
                   help="write the model bundle (weights + SyncNet + Whisper identity + lineage) "
                        "and log it to the run's MLflow run as bundle/")

    p = verb("register", cmd_register, "register a run's bundle as a model version (alias challenger)")
    p.add_argument("--run", required=True, metavar="RUN_ID", help="MLflow run holding a bundle/ artifact")
    p.add_argument("--name", default=None, help="registered model name (default: registry.model_name)")
    p.add_argument("--evaluation", default=None, metavar="EVAL_RUN_ID",
                   help="tag the metrics of this `iptalker evaluate` run of the same bundle (promote "
                        "then gates on them instead of evaluating again)")
    p = verb("promote", cmd_promote, "gate challenger vs champion; promote it when it passes")
    p.add_argument("--name", default=None, help="registered model name (default: registry.model_name)")
    p.add_argument("--dry-run", action="store_true", help="print the decision table, change nothing")
    p = verb("rollback", cmd_rollback, "make the previous champion the champion again")
    p.add_argument("--name", default=None, help="registered model name (default: registry.model_name)")
    p = verb("registry", cmd_registry, "registry queries: `registry history NAME`")
    p.add_argument("query", choices=("history",))
    p.add_argument("name", nargs="?", default=None, help="registered model name (default: registry.model_name)")
    p.add_argument("--json", action="store_true", help="print the events as JSON")
    return verbs


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    parser = argparse.ArgumentParser(prog="iptalker", description="Identity-preserving video dubbing: curate, train, dub.")
    _add_config_args(parser, "main")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    return parser, _add_verbs(sub)


def main(argv: list[str] | None = None) -> int:
    from pipelines.train.known_warnings import filter_known_warnings

    filter_known_warnings()
    parser, verbs = build_parser()
    args = parser.parse_args(argv)
    if not args.verb:
        parser.print_help()
        return EXIT_USER_ERROR
    from orchestration.launch import LaunchError, TrainingFailed

    try:
        return verbs[args.verb](args)
    except TrainingFailed as e:  # not a user error: the workers' tracebacks are printed above
        print(f"iptalker {args.verb}: failed: {e}", file=sys.stderr)
        return 1
    except (UserError, LaunchError) as e:  # ConfigError is a UserError
        print(f"iptalker {args.verb}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (FileNotFoundError, NotADirectoryError, PermissionError) as e:
        detail = f"{e.strerror}: {e.filename}" if e.filename else str(e)
        print(f"iptalker {args.verb}: error: {detail}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"iptalker {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
