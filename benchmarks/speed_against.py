"""This tree's training and hypergradient speed against another commit's, in one process.

Copies ``REF``'s package (``git archive``) under another name (``shorthorizon_ref``, its
imports rewritten), imports both, builds the same jobs from each — the paper's MLP
(784-100-100-10, batch 100), momentum with an inverse-time schedule, ``--steps`` unrolled
steps: plain, forward mode w.r.t. lr, and w.r.t. lr and momentum — and times them in
interleaved rounds, keeping each job's fastest. Whole processes on a shared 2-core VM differ
in speed by up to 40% by themselves (same code), so timing the two versions in separate
processes could not resolve a 5% difference; in one process, round by round, both see the
same machine. Uses only the API both versions share (``Unroll``, ``hypergradient``, ``mlp``,
``optim.momentum``); prints steps/s and the ratio this tree / REF.

    python benchmarks/speed_against.py 8a3a6e3 [--steps 200] [--rounds 15]
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

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
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    hyper = {k: jnp.float32(v) for k, v in HYPER.items()}
    with tempfile.TemporaryDirectory() as tmp:
        import_ref(args.ref, Path(tmp))
        sides = {"this tree": jobs("shorthorizon", args.steps, jax.random.PRNGKey(0)),
                 args.ref: jobs("shorthorizon_ref", args.steps, jax.random.PRNGKey(0))}
        for side in sides.values():
            for fn in side.values():
                jax.block_until_ready(fn(hyper))
        best = {(s, m): float("inf") for s in sides for m in MODES}
        for _ in range(args.rounds):
            for m in MODES:
                for s, side in sides.items():
                    start = time.perf_counter()
                    jax.block_until_ready(side[m](hyper))
                    best[s, m] = min(best[s, m], time.perf_counter() - start)
    print(f"{'mode':20s} {'this tree':>10s} {args.ref:>10s}  ratio (steps/s, fastest of {args.rounds} interleaved rounds)")
    for m in MODES:
        new, ref = args.steps / best["this tree", m], args.steps / best[args.ref, m]
        print(f"{m:20s} {new:10.0f} {ref:10.0f}  {new / ref:.3f}")


if __name__ == "__main__":
    main()
