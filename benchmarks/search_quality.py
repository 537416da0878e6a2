"""Fit quality of the adaptive search (:mod:`shorthorizon.meta.search`: a quadratic model in a
trust region, from a coarse surface) against the blind one it replaces (log-uniform samples + a
zoom) at today's budget (128 + 32) and at the search's, and against CMA-ES (evosax's
``CMA_ES``, from the best coarse point, clipped onto the box, told the ranks) at the search's,
on synthetic log-space surfaces with a known optimum.

Every surface lives on a box of the paper's (lr in [1e-3, 10^-0.3], decay exponent in
[1e-2, 10^2.3], or lr and momentum in [0, 0.999]); its optimum and best objective come from a
dense grid of the box in decades. For each method and seed it prints the regret (best objective
found minus the grid's) and the distance of the best point found from the grid's optimum in
decades (on the flat surface the decay exponent is not identified: read its regret); the table
gives the median and the worst over seeds, and how many seeds the method matched or beat
the blind search of today's budget (128 + 32) on.

    python benchmarks/search_quality.py [--seeds 10] [--coarse 16] [--population 6] [--generations 4]
"""

from __future__ import annotations

import argparse
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
from evosax.algorithms import CMA_ES

from shorthorizon import optim
from shorthorizon.meta import search

PAPER = optim.LogSpace((("lr", 1e-3, 10 ** -0.3), ("decay_exponent", 1e-2, 10 ** 2.3)))
MOMENTUM = optim.LogSpace((("lr", 1e-3, 10 ** -0.3), ("momentum", 0.0, 0.999)))


def decades(space, points):
    """Points as rows of the search's coordinates in decades (log10 of value or of 1 - value)."""
    _, low, high = search.log_box(space)
    return low + search.to_unit(space, points) * (high - low)


def quadratic(center, scales, angle=0.0, cliff=None):
    """0.3 + 0.05 Σ scale_i u_i², u the decades from ``center`` rotated by ``angle`` (degrees);
    with ``cliff`` (a, b): inf (diverged) where the first coordinate exceeds a + b (second − its centre)."""
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    rotation = np.array([[c, -s], [s, c]])

    def f(x):
        u = (x - center) @ rotation
        loss = 0.3 + 0.05 * (u ** 2 @ np.asarray(scales)) + 1e-5 * np.sin(37 * x[:, 0]) * np.sin(23 * x[:, 1])
        if cliff is not None:
            loss = np.where(x[:, 0] > cliff[0] + cliff[1] * (x[:, 1] - center[1]), np.inf, loss)
        return loss
    return f


def asymmetric(center, scale=1.0, bend=0.0):
    """A valley steep on the high-lr side and gentle on the low (as a loss against log lr is),
    ``bend``: its floor curves, the second coordinate's best moving with the first's square."""
    def f(x):
        u = x - center
        u1, u2 = u[:, 0], u[:, 1] - bend * u[:, 0] ** 2
        return 0.3 + 0.05 * (np.expm1(2 * u1) - 2 * u1 + scale * u2 ** 2) + 1e-5 * np.sin(37 * x[:, 0])
    return f


SURFACES = {  # name -> (space, loss of rows in decades)
    "bowl": (PAPER, quadratic(np.array([-1.5, 0.5]), (1.0, 1.0))),
    "rotated 30:1": (PAPER, quadratic(np.array([-1.2, 1.0]), (1.0, 30.0), angle=30.0)),
    "flat decay": (PAPER, quadratic(np.array([-1.0, 0.0]), (1.0, 1e-3))),
    "cliff": (PAPER, quadratic(np.array([-0.5, 0.5]), (1.0, 1.0), cliff=(-0.7, 0.2))),
    "edge": (PAPER, quadratic(np.array([0.0, -2.5]), (1.0, 1.0))),
    "asymmetric": (PAPER, asymmetric(np.array([-1.0, 0.8]))),
    "curved": (PAPER, asymmetric(np.array([-1.3, 0.3]), scale=3.0, bend=1.5)),
    "lr x momentum": (MOMENTUM, quadratic(np.array([-1.8, -1.0]), (1.0, 3.0), angle=-40.0)),
}


def optimum(space, f, size=1201):
    """The grid's best point (decades) and objective."""
    _, low, high = search.log_box(space)
    grid = np.stack(np.meshgrid(*(np.linspace(a, b, size) for a, b in zip(low, high)), indexing="ij"), -1)
    grid = grid.reshape(-1, len(low))
    loss = f(grid)
    return grid[np.argmin(loss)], float(np.min(loss))


def coarse_surface(space, objective, seed, samples):
    """The shared coarse surface a search starts from: log-uniform samples and their losses."""
    points = search.from_unit(space, np.random.default_rng([seed, 1]).uniform(size=(samples, len(space.ranges))))
    return points, objective(points)


def adaptive(space, objective, seed, coarse, population, generations):
    start, losses = coarse_surface(space, objective, seed, coarse)
    return search.search(objective, space, seed, population * generations, population, start, losses)


@lru_cache(maxsize=None)
def _cma_es(population, dims):
    """One strategy object per shape: evosax compiles its ask and tell per object."""
    return CMA_ES(population, jnp.zeros(dims))


def cma(space, objective, seed, coarse, population, generations, sigma=0.15):
    """evosax's CMA-ES in the search's unit coordinates, its mean at the best coarse point, step
    ``sigma``; candidates clipped onto the box, told the ranks of their losses (non-finite last)."""
    start, losses = coarse_surface(space, objective, seed, coarse)
    unit, seen = search.to_unit(space, start), [losses]
    strategy = _cma_es(population, unit.shape[1])
    params = strategy.default_params.replace(std_init=sigma)
    key = jax.random.PRNGKey(seed)
    state = strategy.init(key, jnp.asarray(unit[search.order(losses)[0]], jnp.float32), params)
    for g in range(generations):
        ask_key, tell_key = jax.random.split(jax.random.fold_in(key, g))
        population_unit, state = strategy.ask(ask_key, state, params)
        clipped = np.clip(np.asarray(population_unit, float), 0.0, 1.0)
        loss = objective(search.from_unit(space, clipped))
        ranks = np.empty(len(loss))
        ranks[search.order(loss)] = np.arange(len(loss))
        state, _ = strategy.tell(tell_key, jnp.asarray(clipped, jnp.float32), jnp.asarray(ranks, jnp.float32),
                                 state, params)
        unit, seen = np.concatenate([unit, clipped]), seen + [loss]
    return search.result_of(space, unit, np.concatenate(seen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--coarse", type=int, default=16, help="coarse (shared) surface samples the search starts from")
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument("--generations", type=int, default=4)
    args = parser.parse_args()
    evals = args.coarse + args.population * args.generations
    methods = {
        "blind 128+32": lambda sp, f, s: search.blind(f, sp, s, 128, 32),
        f"blind {evals - evals // 5}+{evals // 5}": lambda sp, f, s: search.blind(f, sp, s, evals - evals // 5, evals // 5),
        f"cma-es {args.coarse}+{args.generations}x{args.population}": lambda sp, f, s: cma(
            sp, f, s, args.coarse, args.population, args.generations),
        f"search {args.coarse}+{args.generations}x{args.population}": lambda sp, f, s: adaptive(
            sp, f, s, args.coarse, args.population, args.generations),
    }
    print(f"{'surface':14s} {'method':19s} {'evals':>5s} {'regret med':>10s} {'regret max':>10s} "
          f"{'dist med':>8s} {'dist max':>8s} {'<= blind160':>11s}")
    for name, (space, f) in SURFACES.items():
        best_x, best_f = optimum(space, f)
        objective = lambda points, space=space, f=f: f(decades(space, points))
        reference = None
        for label, method in methods.items():
            regret, dist, count = [], [], []
            for seed in range(args.seeds):
                out = method(space, objective, seed)
                regret.append(out["best_loss"] - best_f)
                dist.append(float(np.linalg.norm(decades(space, {k: [v] for k, v in out["best"].items()})[0] - best_x)))
                count.append(len(out["losses"]))
            regret = np.array(regret)
            reference = regret if reference is None else reference
            print(f"{name:14s} {label:19s} {int(np.mean(count)):5d} {np.median(regret):10.2e} {regret.max():10.2e} "
                  f"{np.median(dist):8.3f} {np.max(dist):8.3f} {np.sum(regret <= reference + 1e-12):6d}/{args.seeds}")


if __name__ == "__main__":
    main()
