"""Schedules fitted by gradient descent on the exact loss at the horizon.

The learning rate and momentum are optimised in a space that keeps them valid,
``lr = exp(u)`` and ``momentum = sigmoid(w)``, by the project's outer loop
(:class:`~shorthorizon.meta.smd.SMD`: Adam, reverse-mode hypergradients, unclipped), with all
meta-steps inside one jitted ``lax.scan``. ``fixed=True`` fits one (lr, momentum) pair shared by every step.

**The constraint.** Left alone, the optimiser finds schedules whose loss transiently reaches
1e20 and more before collapsing (the pathological solutions the paper mentions). We require
that no dimension's loss component ever exceeds its initial value:

    r_{t,i} = ½h_i(E[θ_i(t)]² + V[θ_i(t)]) / ½h_i(E[θ_i(0)]² + V[θ_i(0)]) ≤ 1   for all t, i.

It is enforced by a quadratic penalty on the log-ratios above a slightly tighter bound,

    objective = log L(T) + penalty · Σ_{t,i} max(0, log r_{t,i} − log(1 − margin))²,

so the small violations a penalty leaves fall inside the margin. The fitted schedule's
``max_component_ratio`` is reported and the experiment checks it is ≤ 1.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from shorthorizon.hypergrad.estimators import Truncated
from shorthorizon.meta.smd import SMD, cosine
from shorthorizon.nqm.dynamics import ScheduledRun, loss_components, ratios_of
from shorthorizon.nqm.problem import NQM


class Fit(NamedTuple):
    """A fitted schedule, its largest component ratio and the objective at each meta-step."""

    schedule: ScheduledRun
    max_component_ratio: jax.Array
    history: jax.Array


def _schedule(params, horizon: int, momentum: bool):
    """{u, w} -> (lr, momentum) of length ``horizon`` (length-1 parameters broadcast)."""
    u, w = params["u"], params["w"]
    lr = jnp.broadcast_to(jnp.exp(u), (horizon,))
    mu = jnp.broadcast_to(jax.nn.sigmoid(w), (horizon,)) if momentum else jnp.zeros(horizon)
    return lr, mu


def objective(nqm: NQM, lr, momentum, penalty=None, margin=0.0):
    """log L(T), plus the constraint penalty of the module docstring unless ``penalty`` is None."""
    components = loss_components(nqm, lr, momentum)
    # On deterministic problems a loss can underflow to exactly 0 (e.g. lr near 1/h for 250
    # steps); the logs are floored at the smallest normal number so that its gradient is 0, not NaN.
    tiny = jnp.finfo(components.dtype).tiny
    value = jnp.log(jnp.maximum(components[-1].sum(), tiny))
    if penalty is not None:
        ratios = jnp.maximum(ratios_of(components)[1:], tiny)
        excess = jax.nn.relu(jnp.log(ratios) - jnp.log1p(-margin))
        value = value + penalty * jnp.sum(excess**2)
    return value


@partial(jax.jit, static_argnames=("horizon", "fixed", "momentum", "constrained", "steps"))
def fit_schedule(
    nqm: NQM,
    horizon: int,
    *,
    fixed: bool = False,
    momentum: bool = True,
    constrained: bool = True,
    steps: int = 1000,
    adam_lr: float = 0.05,
    init_lr: float = 0.1,
    init_momentum: float = 0.5,
    penalty: float = 1e3,
    margin: float = 1e-3,
) -> Fit:
    """Fit a per-step (or, with ``fixed=True``, a constant) lr and momentum to minimise the
    loss after ``horizon`` steps, subject to the component constraint unless ``constrained``
    is False. ``momentum=False`` fits plain SGD (momentum fixed at 0).

    Adam's step size decays on a cosine from ``adam_lr`` to 1% of it, which lets the
    parameters settle instead of oscillating around the constraint boundary.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    size = 1 if fixed else horizon
    params = {"u": jnp.full(size, jnp.log(init_lr)), "w": jnp.full(size, jax.scipy.special.logit(init_momentum))}

    def loss_fn(params, key):
        return objective(nqm, *_schedule(params, horizon, momentum),
                         penalty if constrained else None, margin)

    smd = SMD(loss_fn, meta_lr=cosine(adam_lr, steps), clip=math.inf, estimator=Truncated(mode="reverse"))
    state, (history, _, _) = smd.run(smd.init(params), jax.random.split(jax.random.PRNGKey(0), steps))
    lr, mu = _schedule(state.raw, horizon, momentum)
    components = loss_components(nqm, lr, mu)
    return Fit(ScheduledRun(lr, mu, components.sum(-1)), ratios_of(components).max(), history)
