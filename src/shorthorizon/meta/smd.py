"""Stochastic meta-descent (paper Algorithm 1) on hyperparameters held in log space.

Each meta-step evaluates the meta-objective and its hypergradient at the current
hyperparameters, clips the hypergradient to ``[-clip, clip]``, takes an Adam step and clips
the values to their valid range. The Adam state persists across meta-steps (the reference code
reset it after every step; that was a bug). :meth:`SMD.step` takes the hypergradient of a plain
meta-objective; :func:`train` takes it from a windowed estimator object
(:mod:`shorthorizon.hypergrad.estimators`) and applies the same update.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from shorthorizon.hypergrad.estimators import objective_gradient


# A forward pass of one batch against a training step on it, for the cost of evaluating a
# meta-objective (XLA's FLOP count: 0.47 on the paper's MLP, 0.35 on its CNN).
EVALUATION_COST = 0.4


class SMDState(NamedTuple):
    raw: dict  # hyperparameters in the meta-optimizer's (log) space
    adam: optax.OptState


class SMD(NamedTuple):
    """``objective(raw, key) -> scalar`` is minimized over ``raw`` (a dict of scalars).
    ``meta_lr`` is Adam's step size, a number or an optax schedule of the meta-step.
    ``estimator`` (with ``particles`` and ``sigma`` for ES) estimates each hypergradient, see
    :func:`~shorthorizon.hypergrad.estimators.objective_gradient`."""

    objective: Callable[[dict, jax.Array], jax.Array] | None = None
    meta_lr: float | optax.Schedule = 0.01
    clip: float = 10.0
    bounds: Mapping[str, tuple[float, float]] = {}
    estimator: str = "forward"
    particles: int = 1
    sigma: float = 0.01

    def _adam(self):
        return optax.adam(self.meta_lr)

    def init(self, raw: Mapping[str, jax.Array]) -> SMDState:
        raw = {k: jnp.asarray(v) for k, v in raw.items()}
        return SMDState(raw, self._adam().init(raw))

    def update(self, state: SMDState, grad: Mapping[str, jax.Array]) -> SMDState:
        """Clip the hypergradient, take an Adam step, clip the values to ``bounds``."""
        clipped = jax.tree.map(lambda g: jnp.clip(g, -self.clip, self.clip), dict(grad))
        updates, adam = self._adam().update(clipped, state.adam, state.raw)
        raw = optax.apply_updates(state.raw, updates)
        raw = {k: jnp.clip(v, *self.bounds.get(k, (-jnp.inf, jnp.inf))) for k, v in raw.items()}
        return SMDState(raw, adam)

    def step(self, state: SMDState, key: jax.Array) -> tuple[SMDState, tuple[jax.Array, dict, dict]]:
        """One meta-step; returns the new state and (objective, hypergradient, raw) before it."""
        value, grad = objective_gradient(self.objective, state.raw, key, self.estimator, self.particles, self.sigma)
        return self.update(state, grad), (value, grad, state.raw)

    def step_cost(self, hypers: int) -> float:
        """One meta-step's cost in evaluations of the objective, for ``hypers`` hyperparameters
        (progress bars weigh work by it). An evaluation is mostly training steps, so the ratio is
        that of one step of the differentiated unroll to a plain one. Forward mode runs one jvp
        per hyperparameter (:func:`~shorthorizon.hypergrad.hypergradient`), each the primal step
        and a tangent of about its size: a tangent matmul has the primal's shape, one product at
        the first layer (its input has no tangent) and two at the others (x_dot W + x W_dot).
        XLA counts 2.2 (paper's MLP) and 2.8 (CNN) times a plain step's FLOPs; timed, two
        hyperparameters cost 3 to 4 plain unrolls (small ops run no faster in a tangent), so 2
        per hyperparameter. Reverse mode: the primal, then a backward pass through every step
        that costs about two of them, 3. Central differences: 2 per hyperparameter and the
        value. ES: a + and a - run per antithetic pair."""
        if self.estimator == "forward":
            return 2.0 * hypers
        if self.estimator == "reverse":
            return 3.0
        if self.estimator == "fd":
            return 2.0 * hypers + 1
        return 2.0 * self.particles

    def run(self, state: SMDState, keys: jax.Array) -> tuple[SMDState, tuple[jax.Array, dict, dict]]:
        """``len(keys)`` meta-steps under ``lax.scan``; per-step (objective, hypergradient, raw)."""
        return jax.lax.scan(self.step, state, keys)


def meta_steps(estimator, smd: SMD, state: SMDState, est_state, keys: jax.Array):
    """``len(keys)`` meta-steps of ``smd``'s update on the windowed ``estimator``'s
    hypergradients (one window each, key ``keys[i]``), under one ``lax.scan``, continuing
    from ``state`` and the estimator's ``est_state``: a long fit runs as a few chunks, each
    taking up where the last stopped. Returns ``((state, est_state), history)`` with the
    per-step (window loss, hypergradient, raw before the step)."""
    def body(carry, k):
        state, est_state = carry
        loss, grad, est_state = estimator.estimate(est_state, state.raw, k)
        return (smd.update(state, grad), est_state), (loss, grad, state.raw)

    return jax.lax.scan(body, (state, est_state), keys)


def train(estimator, smd: SMD, raw: Mapping[str, jax.Array], key: jax.Array, steps: int):
    """``steps`` meta-steps (:func:`meta_steps`) from ``raw`` and a fresh estimator state.
    Returns the final :class:`SMDState` and the per-step history."""
    init_key, key = jax.random.split(key)
    state = smd.init(raw)
    (state, _), history = meta_steps(estimator, smd, state, estimator.init(state.raw, init_key),
                                     jax.random.split(key, steps))
    return state, history
