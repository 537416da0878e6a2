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

    python benchmarks/search_offline.py OUTDIR --horizons 100,300,3000 --eval-batches 50
    python benchmarks/search_offline.py OUTDIR   # the paper's horizons 100 ... 20,000 (hours on a CPU)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", type=Path)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
