"""The adaptive search against today's blind one on the real offline problem, one run each.

For one seed, ``shorthorizon offline`` fits every horizon twice from the same warm start and on
the same batches (the surface stream, which every fit is judged on):

- **blind**: ``surface_samples`` log-uniform samples of the paper's box (default 128) scored at
  every horizon from one vmapped unroll, then a zoom of ``zoom`` samples (default 32) within 0.3
  decades of each horizon's best;
- **adaptive**: a coarse surface of ``coarse`` samples (default 16), then ``generations`` x
  ``population`` points (default 4 x 6) of the adaptive search (``shorthorizon.meta.search``)
  per horizon.

No SMD in either (``smd_max_horizon=1``: every horizon is fitted from samples alone), so the
comparison is of the searches. It prints, per horizon, both fits' objective (the training loss
after T steps on the fixed evaluation batches) and their relative difference, and each run's
estimated plain-step equivalents (``estimated_cost``, broken down) and wall time. Long runs
and their curves are each run's own. Output folders are kept under OUTDIR.

The objective is deterministic (the same point scores the same loss, bit for bit) but chaotic:
moving the lr by one part in a million moves the loss after 20,000 steps by up to 2.5%, because
a trajectory of thousands of float32 steps amplifies the difference (and so does scoring the same
point by another compiled program: a vmapped batch of another width, other horizons). So a fit's loss is one
draw of that noise, and the best of many points is a lucky one. The runs are then also judged by
each fit's **noise floor**: the fit and ``replicas - 1`` copies with the lr moved by k parts in a
million (no step a smooth surface could tell apart), all scored in one vmapped unroll; the
table gives their mean and standard deviation per fit, and the difference of the two runs'
means with its standard error. ``--judge`` scores the fits of any finished ``offline`` folders
of one problem this way without running anything else (e.g. today's search with its SMD against
an adaptive one).

    python benchmarks/search_offline.py OUTDIR --horizons 100,300,3000 --eval-batches 50
    python benchmarks/search_offline.py OUTDIR   # the paper's horizons 100 ... 20,000 (hours on a CPU)
    python benchmarks/search_offline.py --judge BLIND_DIR ADAPTIVE_DIR [--replicas 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def replicated(folders: list[Path], replicas: int) -> dict:
    """Per folder and horizon, its fit's objective and that of ``replicas - 1`` copies with the lr
    moved by k parts in a million, k = 1 .. replicas - 1 (one vmapped unroll of the first folder's
    problem to its longest horizon: every folder must pose the same problem)."""
    from shorthorizon import config as configlib
    from shorthorizon.experiments import offline, pipeline
    from shorthorizon.offline_problem import PROBLEM

    configs = [configlib.resolve(offline.PRESETS, "paper", {k: json.dumps(v) if isinstance(v, list) else v
                                                          for k, v in json.loads((f / "config.json").read_text())["config"].items()})
               for f in folders]
    differ = [k for k in PROBLEM if len({getattr(c, k) for c in configs}) > 1]
    if differ:
        raise SystemExit(f"the folders pose different problems ({', '.join(differ)} differ)")
    horizons = tuple(sorted(configs[0].horizons))
    fits = [(f, h, json.loads((f / "summary.json").read_text())["horizons"][str(h)]) for f in folders for h in horizons]
    jitter = 1 + 1e-6 * np.arange(replicas)
    points = {"lr": np.concatenate([fit["lr0"] * jitter for *_, fit in fits]).astype(np.float32)}
    for name in pipeline.space(configs[0]).names[1:]:
        points[name] = np.repeat([fit[name] for *_, fit in fits], replicas).astype(np.float32)
    loss = np.asarray(pipeline.problem(configs[0]).surface(points, horizons))
    return {(f, h): loss[horizons.index(h), i * replicas:(i + 1) * replicas] for i, (f, h, _) in enumerate(fits)}


def judge(folders: list[Path], replicas: int) -> None:
    """Print each folder's fits at their noise floor (:func:`replicated`) and each later folder's
    mean against the first's."""
    scored = replicated(folders, replicas)
    print(f"\nnoise floor: each fit and {replicas - 1} copies with the lr moved by 1 .. {replicas - 1} parts in a "
          "million (mean +- standard deviation); the first replica is the fit itself")
    horizons = sorted({h for _, h in scored})
    for h in horizons:
        first = scored[(folders[0], h)]
        cells = []
        for f in folders:
            r = scored[(f, h)]
            diff = ""
            if f != folders[0]:
                se = np.hypot(r.std(ddof=1), first.std(ddof=1)) / np.sqrt(replicas)
                diff = f" [{100 * (r.mean() / first.mean() - 1):+.2f}% +- {100 * se / first.mean():.2f}% vs {folders[0].name}]"
            cells.append(f"{f.name}: fit {r[0]:.5f}, mean {r.mean():.5f} +- {r.std(ddof=1):.5f} "
                         f"({100 * r.std(ddof=1) / r.mean():.1f}%){diff}")
        print(f"T={h:>6}  " + "; ".join(cells))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", type=Path, nargs="?")
    p.add_argument("--judge", type=Path, nargs="+", help="finished offline folders to judge at their noise floor")
    p.add_argument("--replicas", type=int, default=8)
    p.add_argument("--horizons", default="100,1000,5000,20000")
    p.add_argument("--eval-batches", type=int, default=600)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--zoom", type=int, default=32)
    p.add_argument("--coarse", type=int, default=16)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--population", type=int, default=6)
    args = p.parse_args()
    if args.judge:
        judge(args.judge, args.replicas)
        return 0
    if args.outdir is None:
        p.error("give OUTDIR, or --judge FOLDER ...")

    from shorthorizon.experiments import offline

    common = dict(horizons=tuple(int(h) for h in args.horizons.split(",")), eval_batches=args.eval_batches,
                  dataset=args.dataset, seed=args.seed, smd_from_surface=1, smd_max_horizon=1, meta_steps=1)
    runs = {"blind": dict(surface_samples=args.samples, surface_chunk=args.samples, zoom_samples=args.zoom),
            "adaptive": dict(surface_samples=args.coarse, surface_chunk=args.coarse, generations=args.generations,
                             population=args.population)}
    results = {}
    for name, keys in runs.items():
        config = dataclasses.replace(offline.PRESETS["paper-horizons"], **common, **keys)
        sets = [a for k, v in {**common, **keys}.items()
                for a in ("--set", f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}")]
        out = args.outdir / name
        begin = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "shorthorizon"), "offline", "--preset", "paper-horizons",
                        "--out", str(out), *sets], check=True)
        summary = json.loads((out / "summary.json").read_text())
        results[name] = dict(cost=offline.estimated_cost(config), wall=time.perf_counter() - begin,
                             objective={h: v["meta_objective"] for h, v in summary["horizons"].items()})

    blind, adaptive = results["blind"], results["adaptive"]
    print(f"\nseed {args.seed}, {args.dataset}, {args.eval_batches} evaluation batches; objective = training loss "
          "after T steps on the fixed evaluation batches (lower is better)")
    print(f"{'T':>7} {'blind':>10} {'adaptive':>10} {'adaptive/blind - 1':>20}")
    for h in blind["objective"]:
        b, a = blind["objective"][h], adaptive["objective"][h]
        print(f"{h:>7} {b:10.5f} {a:10.5f} {100 * (a / b - 1):+19.2f}%")
    for name, r in results.items():
        total = sum(r["cost"].values())
        print(f"{name}: {total:.3g} plain-step equivalents ("
              + ", ".join(f"{k} {v:.3g}" for k, v in r["cost"].items()) + f"), wall {r['wall']:.0f} s (compiling included)")
    ratio = sum(adaptive["cost"].values()) / sum(blind["cost"].values())
    print(f"adaptive / blind cost: {ratio:.2f}")
    judge([args.outdir / "blind", args.outdir / "adaptive"], args.replicas)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
