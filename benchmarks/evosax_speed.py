"""One PES and one NRES estimate of ours against evosax's (``PersistentES``, ``NoiseReuseES``) on
the same problem and particle count, in one process.

The problem is the sampled NQM of the ``estimators`` experiment (paper spectrum, dimension
``--dim``, T = ``--horizon``, float64 as the experiment runs it); one estimate is one window of
``--window`` steps for ``--pairs`` antithetic pairs: ours is the estimator's ``estimate``,
evosax's its ``ask``, every member's window from its own inner state, then ``tell``
(``tests/evosax_driver.py``, the driver the cross-check test uses). Both are jitted whole and
timed from the same inputs in interleaved rounds, alternating which goes first; the ratio is
the median over rounds of evosax's time / ours in the same round (paired), as in
``speed_against.py``: on a shared machine only a ratio measured round by round means anything.
Ratios above 1: ours is faster.

    python benchmarks/evosax_speed.py [--dim 1000] [--horizon 250] [--window 10] [--pairs 8] [--rounds 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from shorthorizon.hypergrad import make_estimator
from shorthorizon.nqm import NQM
from shorthorizon.nqm.inner import SampledNQM, to_raw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from evosax_driver import Evosax  # noqa: E402


def paired(jobs: dict, rounds: int) -> dict:
    """name -> per-round seconds of each ``(fn, args)``, compiled first, timed round-robin with
    the order reversed every other round."""
    for fn, args in jobs.values():
        jax.block_until_ready(fn(*args))
    times = {name: [] for name in jobs}
    for r in range(rounds):
        for name in (list(jobs) if r % 2 == 0 else list(jobs)[::-1]):
            fn, args = jobs[name]
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    return {name: np.array(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=1000)
    parser.add_argument("--horizon", type=int, default=250)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--sigma", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    sampled = SampledNQM(NQM.paper(args.dim), args.horizon)
    raw = to_raw(0.8, 0.7, 0.4)
    x, unravel = ravel_pytree(raw)
    key = jax.random.PRNGKey(0)
    jobs = {}
    for name in ("pes", "nres"):
        ours = make_estimator(name, sampled, args.window, args.pairs, args.sigma, stagger=False)
        theirs = Evosax(name, sampled, args.pairs, args.sigma, args.window, x, unravel)
        state = ours.init(raw, key)
        jobs[f"{name} ours"] = (jax.jit(lambda s, k, ours=ours: ours.estimate(s, raw, k)), (state, key))
        jobs[f"{name} evosax"] = (jax.jit(lambda e, s, k, theirs=theirs: theirs.window(e, s, k, k)),
                                  (theirs.init(key), state.inner, key))
    times = paired(jobs, args.rounds)
    print(f"one estimate: {args.pairs} pairs x {args.window} steps of the sampled NQM (d={args.dim}, "
          f"T={args.horizon}, float64); median ms of {args.rounds} interleaved rounds")
    print(f"{'estimator':10s} {'ours':>9s} {'evosax':>9s}  evosax/ours (paired median)")
    for name in ("pes", "nres"):
        ours, theirs = times[f"{name} ours"], times[f"{name} evosax"]
        print(f"{name:10s} {1e3 * np.median(ours):9.3f} {1e3 * np.median(theirs):9.3f}  {np.median(theirs / ours):.3f}")


if __name__ == "__main__":
    main()
