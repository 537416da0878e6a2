"""Throughput of the vectorized surface (``meta.offline.surface``) against plain training of one
setting, on the paper's MLP (784-100-100-10, batch 100, inverse-time schedule, momentum).

Every row trains for ``--steps`` steps and evaluates the meta-objective at two prefix horizons
(steps/2 and steps), as the offline surface does. "plain": one setting, one jitted unroll.
"surface xB": ``surface`` with B settings vmapped together (``batch_size``), all on the same
batches (common random numbers), for ``--settings`` settings. "vmap xB, own batches": B settings
vmapped with a batch stream each (what the surface did before it shared one): the first layer's
product is then a batch of small matmuls, not one. Rows are timed in interleaved rounds and
each keeps its fastest round, so a slow spell on a shared machine hits no single row alone;
compare ratios from one run, never absolute speeds from different runs.

    python benchmarks/surface_speed.py [--steps 200] [--settings 32] [--rounds 5] \
        [--out benchmarks/results/surface_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp

from hypergrad_speed import best_times  # this folder's: the same interleaved timing
from shorthorizon.hypergrad import Data, batches
from shorthorizon.meta import offline
from shorthorizon.optim import inverse_time, momentum
from shorthorizon.tasks import mlp

BATCHES = (4, 8, 16, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--settings", type=int, default=32, help="settings per surface call")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/surface_speed.json"))
    args = parser.parse_args()

    key = jax.random.PRNGKey(0)
    data = Data(jax.random.uniform(key, (10_000, 28, 28, 1)), jax.random.randint(key, (10_000,), 0, 10))
    paper = offline.Offline(mlp(), momentum(inverse_time(5000.0)))
    problem = offline.warm_start(paper, data, key, batches(data, key, 2, 100, replace=False), 5,
                                 {"lr": 0.1, "momentum": 0.9})
    horizons = (args.steps // 2, args.steps)
    lr0 = jnp.geomspace(0.003, 0.3, args.settings)
    decay_exponent = jnp.geomspace(0.03, 30.0, args.settings)

    plain = jax.jit(lambda a, b: offline.meta_objectives(paper, problem, {"lr": a, "decay_exponent": b}, key,
                                                         horizons))
    own = jax.jit(jax.vmap(lambda a, b, k: offline.meta_objectives(
        paper, problem, {"lr": a, "decay_exponent": b}, k, horizons)))
    keys = jax.random.split(key, 16)
    width = {"plain": 1, "vmap x16, own batches": 16}
    jobs = {"plain": (lambda h: plain(*h), (lr0[0], decay_exponent[0])),
            "vmap x16, own batches": (lambda h: own(*h, keys), (lr0[:16], decay_exponent[:16]))}
    for b in BATCHES:
        if b <= args.settings:
            name = f"surface x{b}"
            width[name] = args.settings
            jobs[name] = (lambda h, b=b: offline.surface(paper, problem, h, key, horizons, b),
                          {"lr": lr0, "decay_exponent": decay_exponent})
    times = best_times(jobs, args.rounds)
    rate = {name: width[name] * args.steps / t for name, t in times.items()}
    rows = [{"mode": name, "steps_per_s": r, "vs_plain": r / rate["plain"]} for name, r in rate.items()]
    print(f"device {jax.devices()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
          f"{args.steps} steps, horizons {horizons}")
    print(f"{'mode':24s} {'steps/s':>9s} {'x plain':>8s}")
    for row in rows:
        print(f"{row['mode']:24s} {row['steps_per_s']:9.0f} {row['vs_plain']:8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"steps": args.steps, "settings": args.settings,
                                    "load_average": os.getloadavg()[0], "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
