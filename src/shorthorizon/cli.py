"""The ``shorthorizon`` command line.

The console script (:func:`entry`) takes Ctrl-C over before anything that takes time is
imported, so that an interrupt at any instant after the interpreter has started exits with
status 130 and one line. Whatever this module imports at its top runs before :func:`entry`,
where an interrupt would end in a KeyboardInterrupt traceback (it did, for the ~0.1 s that
``argparse``, ``dataclasses``, ``pathlib`` and the experiments' registry took to load): so its
top imports only modules the interpreter has loaded before any program runs (``_signal``, not
``signal``, which loads ``enum``), and every other module, the standard library's included, is
imported in the function that uses it.
"""

import _signal
import _thread
import os
import sys
import time

INTERRUPTED = 130  # exit status after Ctrl-C


def _default_out(command: str):
    from datetime import datetime
    from pathlib import Path

    return Path("runs") / f"{command}-{datetime.now():%Y%m%d-%H%M%S}"


def _add_run_options(p, presets) -> None:
    from pathlib import Path

    from shorthorizon.runners import EXECUTORS

    p.add_argument("--preset", default="quick", choices=list(presets), help="named configuration")
    p.add_argument("--out", type=Path, help="output folder (default runs/<command>-<timestamp>/); "
                   "re-running with the same folder resumes")
    p.add_argument("--force", action="store_true",
                   help="delete what runs wrote in --out and start over (e.g. after a config change); other files stay")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="override one config key (repeatable)")
    p.add_argument("--executor", default="local", choices=EXECUTORS)
    p.add_argument("--ray-address", default=None, help="join this Ray cluster instead of starting one")


def _config(module, args):
    """The experiment's resolved and validated config (no work done, nothing written)."""
    from shorthorizon import config as configlib

    if args.ray_address and args.executor != "ray":
        raise ValueError("--ray-address joins a Ray cluster for --executor ray; add --executor ray, "
                         "or leave the address out to run here")
    overrides = configlib.parse_overrides(args.overrides)
    for flag in getattr(module, "FLAGS", ()):
        value = getattr(args, flag, None)
        if value is not None:
            if flag in overrides:  # one would win unsaid
                raise ValueError(f"--{flag} and --set {flag}= both give config key {flag!r}; give it once")
            overrides[flag] = value
    config = configlib.resolve(module.PRESETS, args.preset, overrides)
    module.validate(config)
    return config


def _run_experiment(name: str, args, config=None) -> int:
    """Run one experiment in its locked folder (``config``: already validated, else from
    ``args``), and write the folder's ``report.md`` while the folder is still locked."""
    from shorthorizon import experiments
    from shorthorizon.report.document import write_run_report
    from shorthorizon.results import RunDir
    from shorthorizon.runners import ensure_ray

    module = experiments.get(name)
    if config is None:
        config = _config(module, args)
    if args.executor == "ray":
        ensure_ray(args.ray_address)  # an unreachable cluster fails here, before the folder is made
    if args.out is None:
        args.out = _default_out(name)
        print(f"[{name}] out={args.out}", file=sys.stderr)
    with RunDir.open(args.out, force=args.force) as run_dir:
        module.run(config, run_dir, executor=args.executor, ray_address=args.ray_address)
        report = write_run_report(run_dir, name, module.report)
    print(f"[{name}] done in {run_dir.elapsed():.1f} s; summary: {run_dir.path / 'summary.json'}; "
          f"report: {report}", file=sys.stderr)
    return 0


def _config_keys(module) -> str:
    """The experiment's config keys with their values in the default preset, for ``--help``."""
    import dataclasses
    import textwrap

    preset = "quick" if "quick" in module.PRESETS else next(iter(module.PRESETS))
    config = module.PRESETS[preset]

    def shown(value):
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)

    keys = ", ".join(f"{f.name}={shown(getattr(config, f.name))}" for f in dataclasses.fields(config))
    return (f"config keys (--set KEY=VALUE, repeatable; values of --preset {preset}; presets: "
            f"{', '.join(module.PRESETS)}):\n" + textwrap.fill(keys, 100, initial_indent="  ", subsequent_indent="  ",
                                                     break_long_words=False, break_on_hyphens=False))


def build_parser():
    import argparse

    from shorthorizon import experiments

    parser = argparse.ArgumentParser(
        prog="shorthorizon",
        description="Short-horizon bias in stochastic meta-optimization (Wu et al., ICLR 2018).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    for name in experiments.names():
        module = experiments.get(name)
        summary = (module.__doc__ or "").strip().split("\n\n")[0]
        p = sub.add_parser(name, help=summary.splitlines()[0], description=summary, epilog=_config_keys(module),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_run_options(p, module.PRESETS)
        for flag in getattr(module, "FLAGS", ()):
            p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, default=None,
                           help=f"config key {flag!r}")
        p.set_defaults(handler=lambda args, _n=name: _run_experiment(_n, args))

    p = sub.add_parser("reproduce", help="run every experiment and write DIR/report.md")
    _add_run_options(p, {"quick": None, "paper": None})
    p.add_argument("--only", nargs="+", choices=experiments.REPRODUCED, help="run just these experiments")
    p.add_argument("--fetch-data", action="store_true",
                   help="where no image dataset is present, try to obtain one first")
    p.set_defaults(handler=_reproduce)

    # the commands that are not experiments
    from shorthorizon.commands import unroll
    from shorthorizon.data import cli as data_cli

    data_cli.register(sub)
    unroll.register(sub)
    return parser


def _reproduce(args) -> int:
    import argparse
    import dataclasses
    from pathlib import Path

    from shorthorizon import config as configlib
    from shorthorizon import experiments
    from shorthorizon.report.document import write_report

    out = args.out = args.out or _default_out("reproduce")
    start = time.perf_counter()
    names = args.only or experiments.REPRODUCED
    overrides = configlib.parse_overrides(args.overrides)
    keys = {n: {f.name for f in dataclasses.fields(next(iter(experiments.get(n).PRESETS.values())))} for n in names}
    takers = {key: [n for n in names if key in keys[n]] for key in overrides}
    for key, taken in takers.items():  # a key applies to the experiments that have it (seeds: the sampled ones)
        if not taken:
            raise ValueError(f"unknown config key {key!r}: no experiment of the reproduction has it "
                             f"({', '.join(names)})")
    runs = {}
    for name in names:  # every config is checked before any experiment starts
        sub_args = argparse.Namespace(**vars(args))
        sub_args.out = Path(out) / name
        sub_args.overrides = [f"{k}={v}" for k, v in overrides.items() if name in takers[k]]
        for flag in getattr(experiments.get(name), "FLAGS", ()):
            setattr(sub_args, flag, None)
        runs[name] = (sub_args, _config(experiments.get(name), sub_args))
    _check_reproduction_folder(Path(out))
    for key, taken in takers.items():  # said once every value is known good (a bad one is its error line alone)
        if len(taken) < len(names):
            print(f"[reproduce] {key}={overrides[key]} applies to {', '.join(taken)}", file=sys.stderr)
    ran = []
    for name, (sub_args, config) in runs.items():
        ready = getattr(experiments.get(name), "ready", None)
        if ready is not None:
            problem = ready(config, fetch=args.fetch_data)
            if problem:
                print(f"[reproduce] skipping {name}: {problem}", file=sys.stderr)
                continue
        _run_experiment(name, sub_args, config)
        ran.append(name)
    report = write_report(Path(out), {name: experiments.get(name).report for name in ran})
    print(f"[reproduce] {len(ran)} experiment(s) in {time.perf_counter() - start:.1f} s; "
          f"report: {report}", file=sys.stderr)
    return 0


COMPILATION_CACHE = "SHORTHORIZON_COMPILATION_CACHE"  # a folder, or "off"


def compilation_cache() -> str | None:
    """Keep XLA's compiled programs on disk between runs (JAX's persistent compilation cache),
    in ``$SHORTHORIZON_COMPILATION_CACHE`` or ``~/.cache/shorthorizon/xla``; ``off`` turns it
    off. On a CPU most of a small run is compiling, and a second run of a command (a resume, a
    seed more, another task of the same shapes) compiles nothing it compiled before."""
    from pathlib import Path

    folder = os.environ.get(COMPILATION_CACHE, str(Path.home() / ".cache" / "shorthorizon" / "xla"))
    if folder.lower() == "off":
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return folder


def _check_reproduction_folder(out) -> None:
    """RunDirError unless ``out`` can hold a reproduction: absent, empty, or holding its
    experiments' folders and ``report.md`` alone. Refused before anything is written in it."""
    from shorthorizon import experiments
    from shorthorizon.results import RunDirError, read_json

    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is a file, not a folder; choose another --out")
    if (out / "config.json").exists():
        try:
            command = f"`{read_json(out / 'config.json')['command']}`"
        except (ValueError, KeyError, TypeError):  # corrupt, or not a shorthorizon config
            command = "a run"
        raise RunDirError(f"{out} holds results of {command}, not a reproduction (a folder per experiment "
                          "and report.md); choose a new or empty --out")
    others = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")
                    and p.name not in (*experiments.names(), "report.md", "summary.json")) if out.is_dir() else []
    if others:
        raise RunDirError(f"{out} is not empty and holds no shorthorizon reproduction ({', '.join(others[:3])}"
                          f"{', ...' if len(others) > 3 else ''}); choose a new or empty --out")


def _interrupted(argv: list[str], args=None) -> str:
    """The line an interrupted command ends with: its command and ``--out`` from ``args`` once the
    command line is parsed, else as typed in ``argv`` (the parser that reads it loads every
    experiment, which an interrupt may not wait for)."""
    if args is not None:
        command, out = args.command, getattr(args, "out", None)
    else:
        command = next((a for a in argv if not a.startswith("-")), "")
        out = next((b for a, b in zip(argv, argv[1:]) if a == "--out"), None)
        out = next((a.split("=", 1)[1] for a in argv if a.startswith("--out=")), out)
    resume = f"; run the same command with --out {out} to resume" if out else ""
    return f"{f'shorthorizon {command}' if command else 'shorthorizon'}: interrupted{resume}"


class _CtrlC:
    """Ctrl-C in the console script, from its first instant: status 130 and the line of
    :func:`_interrupted`. Until the command starts its work (imports, building the parser)
    nothing is written, so it exits at once. Once the command works (``args`` set), the
    interrupt is raised as KeyboardInterrupt, and the run leaves its folder in order (the claim
    of a run that computed nothing taken back; :meth:`RunDir.open`); an interrupt swallowed on
    its way (raised inside a callback, such as JAX's garbage-collection callback: "Exception
    ignored") is raised again, and a second Ctrl-C exits at once."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.args = None  # the parsed command line (argparse.Namespace), once the command works
        self.raised = self.again = False
        self.unraisable_hook = sys.unraisablehook
        _signal.signal(_signal.SIGINT, self._on_signal)
        sys.unraisablehook = self._on_unraisable

    def line(self) -> str:
        return _interrupted(self.argv, self.args)

    def _on_signal(self, signum, frame) -> None:
        if self.again:  # the interrupt raised again, after a callback swallowed it
            self.again = False
            raise KeyboardInterrupt
        if self.args is None or self.raised:
            _exit_now(INTERRUPTED, self.line())
        self.raised = True
        raise KeyboardInterrupt

    def _on_unraisable(self, unraisable) -> None:
        if self.raised and issubclass(unraisable.exc_type, KeyboardInterrupt):
            import threading

            self.again = True
            # from another thread, a moment later: here, and in the callback, it would be swallowed again
            timer = threading.Timer(0.05, _thread.interrupt_main, (_signal.SIGINT,))
            timer.daemon = True
            timer.start()
        else:
            self.unraisable_hook(unraisable)


def _exit_now(code: int, line: str | None = None) -> None:
    """Exit without the interpreter's teardown: XLA may still be running work dispatched before
    an interrupt, and tearing its runtime down under it crashed the process (exit -11 instead of
    130). A Ray instance this process started is shut down first; ``line`` goes to stderr last."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError):  # closed, or a write the signal interrupted
            pass
    if line:
        os.write(2, f"{line}\n".encode())
    os._exit(code)


def main(argv: list[str] | None = None, ctrl_c: _CtrlC | None = None) -> int:
    """Run one command; exit status 0 on success, 2 with one line on stderr for bad input or a
    refused folder, 130 when interrupted (Ctrl-C), while the parser loads the experiments too;
    ``unroll`` exits 3 when the unroll diverged. ``ctrl_c``: the console script's interrupt
    handling, told when the command starts working."""
    argv = sys.argv[1:] if argv is None else argv
    args = None
    try:
        args = build_parser().parse_args(argv)
        try:
            compilation_cache()
            if ctrl_c is not None:
                ctrl_c.args = args
            return args.handler(args)
        except (ValueError, OSError, RuntimeError) as err:
            print(f"shorthorizon {args.command}: error: {err}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print(_interrupted(argv, args), file=sys.stderr)
        return INTERRUPTED


def entry() -> None:
    """The console script: :func:`main`, then exit; Ctrl-C is taken over first (:class:`_CtrlC`),
    unless the process started with it ignored (a background job). After an interrupt it exits
    at once (:func:`_exit_now`); every finished unit is already stored."""
    ctrl_c = _CtrlC(sys.argv[1:]) if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler else None
    code = main(ctrl_c=ctrl_c)
    if ctrl_c is not None:
        ctrl_c.args = None  # an interrupt from here on exits at once
    if code == INTERRUPTED:
        _exit_now(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
