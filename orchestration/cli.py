"""``iptalker``: one verb per job; each parses its arguments and calls ONE library function.

Every verb takes ``--config FILE`` (repeatable) and ``--set key=value`` (repeatable), before or
after the verb. Errors a user can fix print one line and exit 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
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
                           overwrite=args.overwrite,
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
    from pipelines.train.export import export_checkpoint

    _settings(args)
    out = export_checkpoint(args.checkpoint, args.out, tag=args.tag)
    print(f"exported fp32 weights + model config to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import dataclasses

    from pipelines.data.storage import Storage
    from pipelines.evaluate import run_evaluation

    st = _settings(args)
    cfg = dataclasses.replace(st.evaluate, evalset=args.evalset) if args.evalset else st.evaluate
    report = run_evaluation(args.model, args.data, cfg, Storage(st.storage), st.tracking, args.out)
    print(report.render())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestration.demo import run_demo

    paths = run_demo(_settings(args), args.out, videos=args.videos, seed=args.seed, steps=args.steps)
    print("Demo finished. Wrote: " + "; ".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


def _add_verbs(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    verbs: dict[str, Callable[[argparse.Namespace], int]] = {}

    def verb(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _add_config_args(p, "sub")
        verbs[name] = fn
        return p

    verb("version", cmd_version, "print the installed version")
    p = verb("demo", cmd_demo, "the whole pipeline on a generated corpus, locally")
    p.add_argument("--out", default="demo-out", help="folder for everything the demo writes")
    p.add_argument("--videos", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per training stage")
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

    p = verb("export", cmd_export, "consolidate a (ZeRO-sharded) checkpoint into one fp32 state dict")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (a run's checkpoints/<stage>)")
    p.add_argument("--out", required=True, help="output .pt file (weights + model config)")
    p.add_argument("--tag", default=None, help="checkpoint tag (default: latest)")
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
