"""How well the online runs' cost model (``Online.cost``, which their progress bars count)
matches time: seconds per unit of cost in the adaptation half and in the decay half of one run.

A ratio near 1 means the bar's time left is right all along; a ratio r means it is off by up to
a factor r while the adaptation half runs. The first chunk of each half is left out (it
compiles). Settings: the quick preset's (10 meta-steps every 20 steps, 5-step stochastic
lookahead), MLP batch 100 and CNN batch 25, on Fashion-MNIST.

    python benchmarks/online_cost.py [--mlp-steps 1000] [--cnn-steps 200]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from shorthorizon.data import splits
from shorthorizon.meta.online import Online
from shorthorizon.tasks import make_task

CHUNKS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlp-steps", type=int, default=1000, help="steps of each half")
    parser.add_argument("--cnn-steps", type=int, default=200, help="steps of each half")
    args = parser.parse_args()
    _, train, _ = splits.load("fashion-mnist")
    for name, batch, half, lr in (("mlp", 100, args.mlp_steps, 0.1), ("cnn", 25, args.cnn_steps, 0.01)):
        online = Online(make_task(name, train.x.shape[1:]), meta_steps=10, interval=20, meta_lr=0.05,
                        batch_size=batch, chunks=CHUNKS)
        stamps, costs = [time.perf_counter()], []

        def progress(cost):
            stamps.append(time.perf_counter())
            costs.append(cost)

        online.run(train, jax.random.key(0), {"lr": lr, "momentum": 0.9}, half, half, progress=progress)
        seconds, costs = np.diff(stamps), np.array(costs)
        adapt, decay = slice(1, CHUNKS), slice(CHUNKS + 1, 2 * CHUNKS)
        per_cost = [seconds[s].sum() / costs[s].sum() for s in (adapt, decay)]
        print(f"{name}: adaptation {costs[:CHUNKS].sum() / costs.sum():.1%} of the cost model; seconds per "
              f"unit of cost: adaptation {per_cost[0] * 1e3:.3f} ms, decay {per_cost[1] * 1e3:.3f} ms, "
              f"ratio {per_cost[0] / per_cost[1]:.2f} (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
