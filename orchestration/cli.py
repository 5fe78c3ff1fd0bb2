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
                   metavar="KEY=VALUE", help="override one setting, e.g. --set ray.num_cpus=2")


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
    from preprocessing.synthetic import BAD_KINDS, EDGE_KINDS, generate_corpus, write_bad_inputs

    _settings(args)
    out = Path(args.out)
    videos = generate_corpus(out, args.videos, seed=args.seed)
    bad = write_bad_inputs(out / "bad", seed=args.seed) if args.bad else {}
    print(f"wrote {len(videos)} talking-head videos under {out}"
          + (f" and {len(bad)} bad/edge inputs ({', '.join(BAD_KINDS + EDGE_KINDS)}) under {out / 'bad'}" if bad else ""))
    return 0


def _add_verbs(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    verbs: dict[str, Callable[[argparse.Namespace], int]] = {}

    def verb(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _add_config_args(p, "sub")
        verbs[name] = fn
        return p

    verb("version", cmd_version, "print the installed version")
    verb("config", cmd_config, "print the resolved settings (credentials masked)")
    p = verb("synth", cmd_synth, "write synthetic talking-head videos (tests, demo)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--videos", type=int, default=4, help="number of good videos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bad", action="store_true", help="also write every bad/edge input kind")
    return verbs


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    parser = argparse.ArgumentParser(prog="iptalker", description="Identity-preserving video dubbing: curate, train, dub.")
    _add_config_args(parser, "main")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    return parser, _add_verbs(sub)


def main(argv: list[str] | None = None) -> int:
    parser, verbs = build_parser()
    args = parser.parse_args(argv)
    if not args.verb:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return verbs[args.verb](args)
    except UserError as e:
        print(f"iptalker {args.verb}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (FileNotFoundError, NotADirectoryError, PermissionError) as e:
        print(f"iptalker {args.verb}: error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"iptalker {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
