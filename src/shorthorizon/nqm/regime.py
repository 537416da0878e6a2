"""When is a short horizon safe? Greedy, best fixed and long-horizon schedules on one problem.

Section 2.2.4 of the paper argues qualitatively that greedy (one-step) schedules are optimal
when the problem is deterministic or spherical and fail when it is noisy *and*
ill-conditioned. On any NQM the three final losses are computed exactly:

- ``greedy``: Theorem 2 (Theorem 3 without momentum), the one-step-optimal schedule;
- ``fixed``: the best constant lr (and momentum), found on the grid of the horizon curves;
- ``optimized``: the per-step schedule fitted at the horizon (Figure 3's constrained fit).

``greedy / optimized`` is the price of a one-step meta-objective.

**Horizon curves.** A user who tunes a constant lr and momentum on runs of ``k`` steps and then
trains for ``T`` gets, for each ``k = 1..T``, the loss at ``T`` of the constant schedule that is
best at ``k``. It is computed on a grid of (lr, momentum): one rollout of ``T`` steps per grid
point gives the loss after every ``k`` at once, so the best point at each ``k`` is an argmin over
the grid of one column, and its loss at ``T`` is read off the same rollout. Grid points that
break the component constraint of ``nqm.fit`` (a dimension's loss above its initial value) at
any step up to ``k`` do not count at horizon ``k``; what happens after ``k`` is not looked at,
which is the point: a short meta-objective cannot see it. The *safe horizon* is the smallest
``k`` from which on every longer meta-horizon gives a loss at ``T`` within ``tolerance`` (10%)
of the constant schedule tuned at ``T`` itself, the long-horizon optimum of that family.

**Noise is initial distance.** With ``var0 = 0`` the mean of θ is proportional to ``mean0``
and its variance to the noise scale ``s`` (σ² = s/h), for any fixed schedule. So
``L(mean0, s) = s · L(mean0/√s, 1)``, the greedy and optimal schedules depend on ``mean0²/s``
only, and so does every ratio here: more noise is the same problem started closer to the
optimum, relative to the noise floor.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from shorthorizon.nqm.dynamics import loss_components, ratios_of
from shorthorizon.nqm.fit import fit_schedule
from shorthorizon.nqm.greedy import greedy_schedule
from shorthorizon.nqm.problem import NQM, chebyshev_spectrum

# Default grid for horizon curves: lr · h_max from 1e-4 to 4 (the largest stable value with
# momentum near 1 is 2(1 + μ)), 20 points per decade; momentum 0, then 1 − μ from 10^(−1/8)
# down to 0.01 in steps of 1/8 decade.
LR_GRID = np.geomspace(1e-4, 4.0, 93)
MOMENTUM_GRID = 1.0 - np.geomspace(1.0, 1e-2, 17)


def regime_problem(kappa: float, noise: float, dim: int = 1000, mean0: float = 10.0) -> NQM:
    """The paper's NQM with condition number ``kappa`` and noise scale ``noise``: a Chebyshev
    spectrum on [1/κ, 1] (spherical at κ = 1), σ_i² = noise / h_i, E[θ(0)] = ``mean0``,
    V[θ(0)] = 0. ``regime_problem(1000, 1)`` is ``NQM.paper()``."""
    if not kappa >= 1:
        raise ValueError(f"the condition number kappa must be >= 1, got {kappa!r}")
    if not noise >= 0:
        raise ValueError(f"the noise scale must be >= 0, got {noise!r}")
    curvature = chebyshev_spectrum(dim, 1.0 / kappa, 1.0)
    return NQM(curvature, sigma2=noise / curvature, mean0=mean0)


class HorizonCurve(NamedTuple):
    """For each meta-horizon k = 1..T (index k − 1): the constant lr and momentum that minimise
    the loss after k steps, and the loss after T steps when they are used for all T."""

    lr: jax.Array
    momentum: jax.Array
    loss: jax.Array


@partial(jax.jit, static_argnames=("horizon", "momentum", "batch_size"))
def horizon_curve(nqm: NQM, horizon: int, *, momentum: bool = True, lrs=None, momenta=None,
                  batch_size: int = 16) -> HorizonCurve:
    """The horizon curve of the module docstring, on the grid ``lrs`` × ``momenta`` (defaults:
    ``LR_GRID / max(curvature)`` and ``MOMENTUM_GRID``, or momentum 0 when ``momentum`` is False).

    Ties go to the first grid point (smallest momentum): at k = 1 momentum has no effect.
    ``batch_size`` rollouts run at once (memory ~ batch_size · (T+1) · d floats).
    """
    h_max = jnp.max(jnp.asarray(nqm.curvature, dtype=float))
    lrs = jnp.asarray(LR_GRID, dtype=float) / h_max if lrs is None else jnp.asarray(lrs, dtype=float)
    momenta = jnp.asarray((MOMENTUM_GRID if momentum else [0.0]) if momenta is None else momenta,
                          dtype=float)
    grid_mu, grid_lr = (g.ravel() for g in jnp.meshgrid(momenta, lrs, indexing="ij"))

    def rollout(point):
        lr, mu = point
        components = loss_components(nqm, jnp.full(horizon, lr), jnp.full(horizon, mu))
        return components.sum(-1), lax.cummax(ratios_of(components).max(-1))

    loss, worst = lax.map(rollout, (grid_lr, grid_mu), batch_size=batch_size)  # (points, T+1)
    at_k = jnp.where(worst <= 1.0, loss, jnp.inf)[:, 1:]
    best = jnp.argmin(at_k, axis=0)
    return HorizonCurve(grid_lr[best], grid_mu[best], loss[best, -1])


def safe_horizon(losses, tolerance: float = 0.1) -> jax.Array:
    """The smallest k such that every meta-horizon k' >= k has ``losses[k' − 1]`` (loss at T)
    within ``1 + tolerance`` of ``losses[-1]`` (the schedule tuned at T itself)."""
    losses = jnp.asarray(losses)
    k = jnp.arange(1, losses.shape[-1] + 1)
    unsafe = losses > (1 + tolerance) * losses[..., -1:]
    return jnp.max(jnp.where(unsafe, k, 0), axis=-1) + 1


class Regime(NamedTuple):
    """What ``regime`` computes: the three final losses, greedy / optimized, the horizon curve
    of constant schedules and its safe horizon."""

    greedy: jax.Array
    fixed: jax.Array
    optimized: jax.Array
    ratio: jax.Array
    horizon: HorizonCurve
    safe_horizon: jax.Array
    max_component_ratio: jax.Array  # of the optimized schedule (the fit's constraint: <= 1)


def regime(nqm: NQM, horizon: int, *, momentum: bool = True, tolerance: float = 0.1,
           lrs=None, momenta=None, fit_steps: int = 500, adam_lr: float = 0.03,
           penalty: float = 1e3, margin: float = 1e-3) -> Regime:
    """How much a short meta-horizon costs on ``nqm`` after ``horizon`` steps (plain SGD when
    ``momentum`` is False); ``vmap``-able over a stack of problems.

    ``greedy``: Theorem 2 (3); ``optimized``: ``fit_schedule`` with ``fit_steps``, ``adam_lr``,
    ``penalty``, ``margin``; ``fixed``: the best constant schedule of the horizon-curve grid
    (``lrs`` × ``momenta``) under the same constraint, a global search where an Adam fit of two
    parameters can stop in a local optimum. ``ratio`` is greedy / optimized.

    For a measured problem: Hessian eigenvalues h_i, gradient-noise variances g_i along the same
    eigenvectors (per example, divided by the batch size) and the distance to the optimum along
    them: ``NQM(h, sigma2=g / h**2, mean0=distance)``. Every dimension needs a positive initial
    loss (mean0 ≠ 0 or var0 > 0), or the constraint admits no step. Call it under
    ``jax.enable_x64(True)``.
    """
    greedy = greedy_schedule(nqm, horizon, momentum=momentum).loss[-1]
    curve = horizon_curve(nqm, horizon, momentum=momentum, lrs=lrs, momenta=momenta)
    fit = fit_schedule(nqm, horizon, momentum=momentum, steps=fit_steps, adam_lr=adam_lr,
                       penalty=penalty, margin=margin)
    optimized = fit.schedule.loss[-1]
    return Regime(greedy, curve.loss[-1], optimized, greedy / optimized, curve,
                  safe_horizon(curve.loss, tolerance), fit.max_component_ratio)
