"""This tree's training and hypergradient speed against another commit's, in one process.

Copies ``REF``'s package (``git archive``) under another name (``shorthorizon_ref``, its
imports rewritten), imports both, builds the same jobs from each — the paper's MLP
(784-100-100-10, batch 100), momentum with an inverse-time schedule, ``--steps`` unrolled
steps: plain, forward mode w.r.t. lr, and w.r.t. lr and momentum — and times them in
interleaved rounds. Whole processes on a shared 2-core VM differ in speed by up to 40% by
themselves (same code), so timing the two versions in separate processes could not resolve a
5% difference; in one process, round by round, both see the same machine.

The ratio is the median over rounds of REF's time / this tree's in the same round (paired),
not a ratio of fastest rounds: on a shared machine the fastest round of each job is a chance
quiet spell, and two builds of the *same* program differed by up to 14% in fastest rounds
where their paired median differed by 0.2%. ``--threads 1`` runs XLA on one thread, pinned
to one core (re-executes itself with ``XLA_FLAGS`` and ``taskset``): much steadier, though
not the speed users get from two threads. Uses only the API both versions share
(``Unroll``, ``hypergradient``, ``mlp``, ``optim.momentum``); prints median steps/s and the
ratio this tree / REF.

    python benchmarks/speed_against.py 8a3a6e3 [--steps 200] [--rounds 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HYPER = {"lr": 0.05, "momentum": 0.9, "decay_exponent": 0.5}
MODES = {"plain": None, "forward (1 hyper)": ("lr",), "forward (2 hypers)": ("lr", "momentum")}


def import_ref(ref: str, folder: Path):
    """``ref``'s ``src/shorthorizon`` as the package ``shorthorizon_ref``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src/shorthorizon"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / "shorthorizon_ref"
    (folder / "src" / "shorthorizon").rename(package)
    for path in package.rglob("*.py"):
        path.write_text(re.sub(r"\bshorthorizon\b", "shorthorizon_ref", path.read_text()))
    sys.path.insert(0, str(folder))
    return importlib.import_module("shorthorizon_ref")


def jobs(package: str, steps: int, data_key: jax.Array) -> dict:
    """name -> jitted function of the hyperparameters, from ``package``'s API."""
    hypergrad = importlib.import_module(f"{package}.hypergrad")
    optim = importlib.import_module(f"{package}.optim")
    tasks = importlib.import_module(f"{package}.tasks")
    data = hypergrad.Data(jax.random.uniform(data_key, (10_000, 28, 28, 1)),
                          jax.random.randint(data_key, (10_000,), 0, 10))
    task, optimizer = tasks.mlp(), optim.momentum(optim.inverse_time(5000.0))
    params = task.init(data_key)
    state = optimizer.init(params, HYPER)
    unroll = hypergrad.Unroll(task, optimizer, steps, batch_size=100)

    def objective(h):
        return unroll.objective(h, params, state, data, jax.random.PRNGKey(1))

    def mode(wrt):
        if wrt is None:
            return jax.jit(objective)
        return jax.jit(lambda h: hypergrad.hypergradient(objective, h, "forward", wrt=wrt))

    return {name: mode(wrt) for name, wrt in MODES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", help="the commit to compare with (e.g. the one before a change)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, choices=(1, 2), default=2,
                        help="1: XLA on one thread pinned to one core (steadier)")
    args = parser.parse_args()
    if args.threads == 1 and "--xla_cpu_multi_thread_eigen=false" not in os.environ.get("XLA_FLAGS", ""):
        env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false"}
        os.execvpe("taskset", ["taskset", "-c", "0", sys.executable, *sys.argv], env)
    hyper = {k: jnp.float32(v) for k, v in HYPER.items()}
    with tempfile.TemporaryDirectory() as tmp:
        import_ref(args.ref, Path(tmp))
        sides = {"this tree": jobs("shorthorizon", args.steps, jax.random.PRNGKey(0)),
                 args.ref: jobs("shorthorizon_ref", args.steps, jax.random.PRNGKey(0))}
        for side in sides.values():
            for fn in side.values():
                jax.block_until_ready(fn(hyper))
        times = {(s, m): [] for s in sides for m in MODES}
        for r in range(args.rounds):
            for m in MODES:
                # each side goes first in every other round: the job run before a timed one can
                # slow it (caches), which in a fixed order would count against one side
                for s in list(sides)[::1 if r % 2 else -1]:
                    start = time.perf_counter()
                    jax.block_until_ready(sides[s][m](hyper))
                    times[s, m].append(time.perf_counter() - start)
    print(f"{'mode':20s} {'this tree':>10s} {args.ref:>10s}  ratio  (median steps/s and median paired ratio "
          f"of {args.rounds} interleaved rounds, XLA threads: {args.threads})")
    for m in MODES:
        new, ref = np.array(times["this tree", m]), np.array(times[args.ref, m])
        print(f"{m:20s} {args.steps / np.median(new):10.0f} {args.steps / np.median(ref):10.0f}  {np.median(ref / new):.3f}")


if __name__ == "__main__":
    main()
