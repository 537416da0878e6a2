"""Pin every experiment's results before a refactor, and check that they are unchanged after it.

A refactor that should change no behaviour (issue 21: the experiments layer) is checked by
running every experiment command on a tiny configuration before and after, and comparing what
the runs wrote: each run folder's ``summary.json`` key by key, and its curve files (``*.npz``)
and stored units (``units/*.npz``: the online runs' per-step curves are only there) array by
array. Left out: keys with ``time`` in their name (``wall_time_s``, ``wall_time_ratio``: timing
is not behaviour), a unit's record of its inputs (it holds the run's own paths) and its digest
(a SHA-256 over every entry, those two included). A unit renamed by the refactor shows as one
key missing and one added.

The runs go through the command line (``shorthorizon COMMAND --preset quick --out ... --set
KEY=VALUE``), the interface a refactor keeps, never through internal functions, so the same
script pins the code before and after. The configurations are in :data:`RUNS` below; the image
experiments use a fake MNIST (random images, 500 train / 1000 test, seed 0) written into
``OUTDIR/_data``. A whole ``run`` takes several minutes on 2 CPU cores, mostly XLA compiling
(each run's seconds are printed; its output is in ``OUTDIR/_logs/NAME.log``).

Before the refactor (on the old code, from the repository root):

    python benchmarks/pin_summaries.py run /tmp/pins/before
    python benchmarks/pin_summaries.py run /tmp/pins/before2      # optional: run-to-run check
    python benchmarks/pin_summaries.py compare /tmp/pins/before /tmp/pins/before2

After the refactor (same machine, same environment):

    python benchmarks/pin_summaries.py run /tmp/pins/after
    python benchmarks/pin_summaries.py compare /tmp/pins/before /tmp/pins/after

``compare`` prints, per run, ``identical`` (bit for bit) or the largest relative difference and
the keys that differ, and the keys missing from or added in AFTER. It exits 0 when every run is
identical, 1 otherwise: whether a difference is acceptable float rounding is for a person to
decide from the numbers. ``run`` uses the ``shorthorizon`` installed beside the Python running
it (a virtual environment's ``bin/``), else the one on PATH; it refuses a run folder that exists.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# --- the tiny configurations: run name -> (command, config overrides) --------------------------
# Every run uses --preset quick plus these --set overrides. "{data}" is replaced by the fake
# MNIST folder. Names beyond the command's own cover non-default code paths the refactor touches
# (other hypergradient estimators, offline's surface-then-zoom, online's CNN task).
FAKE_MNIST = dict(name="mnist", n_train=500, n_test=1000, seed=0)
IMAGE_DATA = {"data_dir": "{data}", "verify": "false", "dataset": "mnist"}
OFFLINE_TINY = {**IMAGE_DATA, "warm_start_steps": "5", "eval_batches": "2", "surface_samples": "8",
                "surface_chunk": "4", "init_lr0": "0.01,0.1", "init_decay_exponent": "1.0,10.0",
                "meta_steps": "4", "meta_chunk": "2", "meta_lr": "0.15", "curve_points": "2", "seeds": "1",
                "smd_from_surface": "0", "smd_max_horizon": "0", "generations": "0"}  # SMD, as before quick searched
ONLINE_TINY = {**IMAGE_DATA, "task": "mlp", "mlp_steps": "40", "meta_steps": "2", "interval": "5",
               "chunks": "2", "mlp_batch_size": "20", "mlp_init_lrs": "0.05", "eval_examples": "400"}
RUNS: dict[str, tuple[str, dict[str, str]]] = {
    "nqm": ("nqm", {"dim": "20", "horizon": "20", "fit_steps": "50", "fixed_fit_steps": "30", "tail_dims": "5",
                    "fig1_steps": "10", "fig1_trajectories": "2", "fig2_horizons": "1,5,20",
                    "fig2_decay_steps": "5"}),
    "nqm-map": ("nqm-map", {"dim": "8", "horizon": "20", "fit_steps": "60", "kappas": "1,100", "noises": "0,1",
                            "paper_kappa": "100"}),
    "estimators": ("estimators", {"dim": "10", "horizon": "20", "truncations": "5,20",
                                  "estimators": "forward,reverse,es,pes", "estimates": "20",
                                  "smoothing_samples": "2", "exact_steps": "100", "fit_inner_steps": "1000",
                                  "fit_particles": "2", "seeds": "1"}),
    # forward-mode SMD at two horizons (the default estimator)
    "offline": ("offline", {**OFFLINE_TINY, "horizons": "5,10"}),
    # SMD with ES hypergradients (antithetic pairs)
    "offline-es": ("offline", {**OFFLINE_TINY, "horizons": "10", "estimator": "es", "particles": "2"}),
    # SMD restarted from the best surface samples, the longer horizon zoomed instead of fitted
    "offline-zoom": ("offline", {**OFFLINE_TINY, "horizons": "5,10", "smd_from_surface": "2",
                                 "smd_max_horizon": "5", "zoom_samples": "4", "zoom_width": "0.2"}),
    # forward-mode SMD, both lookaheads (stochastic and deterministic), and the baseline
    "online": ("online", ONLINE_TINY),
    # PES particles training beside the run
    "online-pes": ("online", {**ONLINE_TINY, "estimator": "pes", "particles": "2"}),
    # the CNN task's own config keys (cnn_*), one lookahead
    "online-cnn": ("online", {**IMAGE_DATA, "task": "cnn", "lookaheads": "stochastic", "cnn_steps": "20",
                              "meta_steps": "2", "interval": "5", "chunks": "2", "cnn_batch_size": "10",
                              "cnn_init_lrs": "0.001", "eval_examples": "100"}),
    # every windowed estimator against the whole-run reference
    "truncated": ("truncated", {**IMAGE_DATA, "horizon": "40", "truncation": "10",
                                "estimators": "forward,reverse,es,pes", "fit_particles": "2",
                                "fit_inner_steps": "400", "warm_start_steps": "5", "eval_batches": "2",
                                "surface_samples": "4", "surface_chunk": "2", "curve_points": "4",
                                "meta_chunk": "5"}),
    # the paper's schedule (meta, rung), two seeds, a zoom and an SMD refinement at K
    "bias": ("bias", {**IMAGE_DATA, "horizon": "20", "short": "5", "seeds": "2", "warm_start_steps": "5",
                      "eval_batches": "2", "surface_samples": "8", "surface_chunk": "4", "zoom_samples": "4",
                      "meta_steps": "2", "smd_max_horizon": "5", "meta_chunk": "2", "curve_points": "2"}),
    # a schedule laid over the run's length (rerun, rung)
    "bias-cosine": ("bias", {**IMAGE_DATA, "horizon": "20", "short": "5", "seeds": "2", "schedule": "cosine",
                             "warm_start_steps": "5", "eval_batches": "2", "surface_samples": "8",
                             "surface_chunk": "4", "zoom_samples": "4", "curve_points": "2"}),
}
DATA = "_data"  # OUTDIR/_data: the fake MNIST
LOGS = "_logs"  # OUTDIR/_logs/NAME.log: each run's output
SHOWN = 8  # differing keys listed per run
UNIT_INPUTS = "__inputs__"  # in units/*.npz: the unit's arguments as text (resume bookkeeping)
UNIT_DIGEST = "__digest__"  # in units/*.npz: SHA-256 of its other entries (inputs and timings included)


def is_timing(key: str) -> bool:
    """Keys left out of the comparison: wall times and their ratios differ run to run."""
    return "time" in key


# --- run -------------------------------------------------------------------------------------
def _cli() -> str:
    beside = Path(sys.executable).parent / "shorthorizon"
    found = str(beside) if beside.exists() else shutil.which("shorthorizon")
    if not found:
        sys.exit("no `shorthorizon` command beside this Python or on PATH; install the package (make venv)")
    return found


def _git_head() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run(outdir: Path, only: list[str] | None) -> int:
    names = only or list(RUNS)
    outdir = outdir.resolve()
    taken = [n for n in names if (outdir / n).exists()]
    if taken:
        sys.exit(f"{outdir} already holds {', '.join(taken)}; pins are made from scratch: choose a new OUTDIR")
    data = outdir / DATA
    if not (data / FAKE_MNIST["name"]).exists():
        from shorthorizon.data import make_fake_dataset

        make_fake_dataset(data, FAKE_MNIST["name"], n_train=FAKE_MNIST["n_train"], n_test=FAKE_MNIST["n_test"],
                          seed=FAKE_MNIST["seed"])
    (outdir / LOGS).mkdir(parents=True, exist_ok=True)
    cli, head = _cli(), _git_head()
    print(f"pinning code at {head} with {cli} into {outdir}")
    failed, total = [], time.perf_counter()
    record = {"code": head, "runs": {}}
    for name in names:
        command, overrides = RUNS[name]
        args = [cli, command, "--preset", "quick", "--out", str(outdir / name)]
        for key, value in overrides.items():
            args += ["--set", f"{key}={value.replace('{data}', str(data))}"]
        start = time.perf_counter()
        with open(outdir / LOGS / f"{name}.log", "w") as log:
            code = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - start
        record["runs"][name] = {"args": args[1:], "exit": code}
        print(f"  {name:14s} {'ok' if code == 0 else f'FAILED (exit {code})':>16s}  {seconds:6.1f} s")
        if code:
            failed.append(name)
            tail = (outdir / LOGS / f"{name}.log").read_text().splitlines()[-15:]
            print("\n".join("      " + line for line in tail))
    (outdir / "pins.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{len(names) - len(failed)} of {len(names)} runs in {time.perf_counter() - total:.1f} s")
    return 1 if failed else 0


# --- compare ---------------------------------------------------------------------------------
def _flatten(value, path: str = "") -> dict[str, object]:
    """JSON leaves by dotted path (``a.b[2].c``), timing keys left out."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not is_timing(k):
                out.update(_flatten(v, f"{path}.{k}" if path else k))
        return out if value or not path else {path: {}}
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{path}[{i}]"))
        return out if value else {path: []}
    return {path: value}


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    """Largest elementwise |a - b| / max(|a|, |b|) over numeric arrays of one shape (inf where
    one side is not finite and the other differs)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return 0.0
    a, b = a[~same], b[~same]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(a - b) / np.maximum(np.abs(a), np.abs(b))
    rel[~np.isfinite(rel)] = math.inf
    return float(rel.max())


class Diff:
    """What differs in one run folder: relative differences by key, keys missing and added."""

    def __init__(self):
        self.keys = 0
        self.values = 0
        self.differ: dict[str, float] = {}  # key -> relative difference (inf: not numeric, shape, dtype)
        self.notes: dict[str, str] = {}  # key -> why a non-numeric difference
        self.missing: list[str] = []
        self.added: list[str] = []

    def leaf(self, key: str, a, b) -> None:
        self.keys += 1
        self.values += 1
        if _number(a) and _number(b):
            if a != b:
                self.differ[key] = _relative(np.asarray(a), np.asarray(b))
        elif a != b or type(a) is not type(b):
            self.differ[key] = math.inf
            self.notes[key] = f"{json.dumps(a)} -> {json.dumps(b)}"

    def array(self, key: str, a: np.ndarray, b: np.ndarray) -> None:
        self.keys += 1
        self.values += a.size
        if a.shape != b.shape or a.dtype != b.dtype:
            self.differ[key] = math.inf
            self.notes[key] = f"{a.dtype}{list(a.shape)} -> {b.dtype}{list(b.shape)}"
        elif a.dtype.kind in "fiub":
            if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                self.differ[key] = _relative(a, b)
        elif not np.array_equal(a, b):
            self.differ[key] = math.inf
            self.notes[key] = "non-numeric values differ"

    @property
    def identical(self) -> bool:
        return not (self.differ or self.missing or self.added)


def _summary(folder: Path) -> dict | None:
    path = folder / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def _curves(folder: Path) -> dict[str, np.ndarray]:
    """Every array of the folder's curve files and stored units, by ``FILE:ARRAY``. A unit's
    record of its inputs is left out: it names the run's own paths (``data_dir``)."""
    out = {}
    for path in sorted([*folder.glob("*.npz"), *folder.glob("units/*.npz")]):
        name = path.relative_to(folder).as_posix()
        with np.load(path, allow_pickle=False) as data:
            out.update({f"{name}:{k}": data[k] for k in data.files if k not in (UNIT_INPUTS, UNIT_DIGEST) and not is_timing(k)})
    return out


def compare_run(before: Path, after: Path) -> Diff:
    diff = Diff()
    a, b = _summary(before), _summary(after)
    if a is None or b is None:
        (diff.missing if b is None else diff.added).append("summary.json")
    if a is not None or b is not None:
        fa = {f"summary.json:{k}": v for k, v in _flatten(a or {}).items()}
        fb = {f"summary.json:{k}": v for k, v in _flatten(b or {}).items()}
        diff.missing += [k for k in fa if k not in fb]
        diff.added += [k for k in fb if k not in fa]
        for key in fa.keys() & fb.keys():
            diff.leaf(key, fa[key], fb[key])
    ca, cb = _curves(before), _curves(after)
    diff.missing += [k for k in ca if k not in cb]
    diff.added += [k for k in cb if k not in ca]
    for key in ca.keys() & cb.keys():
        diff.array(key, ca[key], cb[key])
    return diff


def _listed(keys: list[str]) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:SHOWN]) + (f", ... ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else "")


def compare(before: Path, after: Path) -> int:
    def runs(folder: Path) -> list[str]:
        return [p.name for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith("_")]

    names = list(dict.fromkeys([*RUNS, *runs(before), *runs(after)]))
    all_identical = True
    for name in names:
        a, b = before / name, after / name
        if not a.is_dir() or not b.is_dir():
            if a.is_dir() or b.is_dir():
                print(f"{name}: {'missing in AFTER' if a.is_dir() else 'added in AFTER'} (no run folder)")
                all_identical = False
            continue
        diff = compare_run(a, b)
        if diff.identical:
            print(f"{name}: identical ({diff.keys} keys, {diff.values} values)")
            continue
        all_identical = False
        if diff.differ:
            worst = max(diff.differ.values())
            print(f"{name}: {len(diff.differ)} of {diff.keys} keys differ, max relative difference {worst:.3g}")
            for key in sorted(diff.differ, key=lambda k: (-diff.differ[k], k))[:SHOWN]:
                print(f"    {key}: {diff.notes.get(key, f'relative difference {diff.differ[key]:.3g}')}")
            if len(diff.differ) > SHOWN:
                print(f"    ... and {len(diff.differ) - SHOWN} more")
        else:
            print(f"{name}: the values present in both are identical")
        if diff.missing:
            print(f"    missing in AFTER: {_listed(diff.missing)}")
        if diff.added:
            print(f"    added in AFTER: {_listed(diff.added)}")
    print("all identical" if all_identical else "NOT identical")
    return 0 if all_identical else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("run", help="run every experiment on its tiny config into OUTDIR/NAME")
    p.add_argument("outdir", type=Path)
    p.add_argument("--only", nargs="+", choices=list(RUNS), help="just these runs")
    p = sub.add_parser("compare", help="compare two OUTDIRs; exit 0 only if all identical")
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.action == "run":
        return run(args.outdir, args.only)
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
