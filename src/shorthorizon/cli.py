"""The ``shorthorizon`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from shorthorizon import config as configlib
from shorthorizon import experiments
from shorthorizon.runners import EXECUTORS


def _default_out(command: str) -> Path:
    return Path("runs") / f"{command}-{datetime.now():%Y%m%d-%H%M%S}"


def _add_run_options(p: argparse.ArgumentParser, presets) -> None:
    p.add_argument("--preset", default="quick", choices=list(presets), help="named configuration")
    p.add_argument("--out", type=Path, help="output folder (default runs/<command>-<timestamp>/); "
                   "re-running with the same folder resumes")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="override one config key (repeatable)")
    p.add_argument("--executor", default="local", choices=EXECUTORS)
    p.add_argument("--ray-address", default=None, help="join this Ray cluster instead of starting one")


def _run_experiment(name: str, args: argparse.Namespace) -> int:
    module = experiments.get(name)
    from shorthorizon.results import RunDir

    overrides = configlib.parse_overrides(args.overrides)
    for flag in getattr(module, "FLAGS", ()):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[flag] = value
    config = configlib.resolve(module.PRESETS, args.preset, overrides)
    run_dir = RunDir(args.out or _default_out(name))
    print(f"[{name}] preset={args.preset} out={run_dir.path}", file=sys.stderr)
    module.run(config, run_dir, executor=args.executor, ray_address=args.ray_address)
    print(f"[{name}] done in {run_dir.elapsed():.1f} s; summary: {run_dir.path / 'summary.json'}",
          file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shorthorizon",
        description="Short-horizon bias in stochastic meta-optimization (Wu et al., ICLR 2018).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    for name in experiments.names():
        module = experiments.get(name)
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        _add_run_options(p, module.PRESETS)
        for flag in getattr(module, "FLAGS", ()):
            p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, default=None,
                           help=f"config key {flag!r}")
        p.set_defaults(handler=lambda args, _n=name: _run_experiment(_n, args))

    p = sub.add_parser("reproduce", help="run every experiment and write DIR/report.md")
    _add_run_options(p, {"quick": None, "paper": None})
    p.add_argument("--only", nargs="+", choices=experiments.names(), help="run just these experiments")
    p.add_argument("--fetch-data", action="store_true",
                   help="where no image dataset is present, try to obtain one first")
    p.set_defaults(handler=_reproduce)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    """Commands that are not experiments: ``data`` and ``unroll``."""
    from shorthorizon.commands import unroll
    from shorthorizon.data import cli as data_cli

    return [data_cli.register, unroll.register]


def _reproduce(args: argparse.Namespace) -> int:
    from shorthorizon.report import write_report

    out = args.out or _default_out("reproduce")
    start = time.perf_counter()
    ran = []
    for name in args.only or experiments.names():
        module = experiments.get(name)
        ready = getattr(module, "ready", None)
        if ready is not None:
            problem = ready(fetch=args.fetch_data)
            if problem:
                print(f"[reproduce] skipping {name}: {problem}", file=sys.stderr)
                continue
        sub_args = argparse.Namespace(**vars(args))
        sub_args.out = Path(out) / name
        for flag in getattr(module, "FLAGS", ()):
            setattr(sub_args, flag, None)
        _run_experiment(name, sub_args)
        ran.append(name)
    report = write_report(Path(out), ran)
    print(f"[reproduce] {len(ran)} experiment(s) in {time.perf_counter() - start:.1f} s; "
          f"report: {report}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"shorthorizon {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
