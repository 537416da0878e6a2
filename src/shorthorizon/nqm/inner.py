"""The NQM as an inner problem for the hypergradient estimators, on an inverse-time schedule.

The schedule has three hyperparameters, held in log space (the estimators' coordinates):

    lr_t = lr (1 + t / decay_steps)^(−decay_exponent),    momentum μ constant,
    raw = {log_lr: log lr, log_decay_exponent: log decay_exponent, log_one_minus_momentum: log(1 − μ)}.

Two views of one problem, both :class:`~shorthorizon.hypergrad.estimators.Inner`:

- :class:`ExactNQM`: the state is the moments of (θ, v) (Theorem 1) and a window's loss is the
  mean *expected* excess loss over its steps. Deterministic: the whole-run objective and its
  exact gradient are one window of length T, and the **expected** truncated (TBPTT /
  short-horizon SMD) gradient is the same estimator with K < T: E[window loss | start state] is
  a quadratic function of the start state, so its expectation (and its gradient's) depends on
  the start state only through its first and second moments, and holding the moments constant
  at each window start is exactly what a truncated estimator does with a sampled state.
- :class:`SampledNQM`: real SGD with momentum, noisy gradients h(θ − c), c ~ N(0, σ²), one
  trajectory per inner run; a window's loss is the mean of ½ Σ h_i θ_i² over its steps (the
  excess loss of the sampled parameters, whose expectation is the exact one). This is what a
  neural-net task looks like to an estimator.

The whole-run objective is the mean excess loss over steps 1..T (see the estimators module for
why windowed estimators optimize a mean); forward and reverse mode both work through it
(plain ``lax.scan``; the custom VJP of :func:`~shorthorizon.nqm.loss_curve` blocks ``jvp``).
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

from shorthorizon.nqm.dynamics import Moments, initial_moments, loss_of, step_moments
from shorthorizon.nqm.problem import NQM
from shorthorizon.nqm.simulate import sample_step
from shorthorizon.optim import LogSpace

# The estimators' coordinates: log lr, log decay_exponent, log(1 - momentum) (the ranges are the
# values' domains; a fit's bounds are its own space's).
SPACE = LogSpace((("lr", 0.0, math.inf), ("decay_exponent", 0.0, math.inf), ("momentum", 0.0, 1.0)))
RAW = SPACE.coordinates


def to_raw(lr, decay_exponent, momentum) -> dict:
    """Natural units -> the estimators' log-space coordinates (strongly typed)."""
    return SPACE.to_raw({"lr": jnp.asarray(lr, float), "decay_exponent": jnp.asarray(decay_exponent, float),
                         "momentum": jnp.asarray(momentum, float)})


from_raw = SPACE.from_raw  # log-space coordinates -> {"lr", "decay_exponent", "momentum"}


def _at(raw: Mapping[str, jax.Array], t, decay_steps: float):
    """(lr_t, μ) at step(s) t."""
    h = from_raw(raw)
    return h["lr"] * (1.0 + t / decay_steps) ** (-h["decay_exponent"]), h["momentum"]


def schedule(raw: Mapping[str, jax.Array], horizon: int, decay_steps: float) -> tuple[jax.Array, jax.Array]:
    """The per-step (lr, momentum) arrays, shape (horizon,) each (for ``loss_curve``)."""
    lr, mu = _at(raw, jnp.arange(horizon), decay_steps)
    return lr, jnp.broadcast_to(mu, lr.shape)


class ExactState(NamedTuple):
    moments: Moments
    step: jax.Array


class SampledState(NamedTuple):
    theta: jax.Array
    v: jax.Array
    step: jax.Array
    key: jax.Array  # the noise of step t is drawn from fold_in(key, t)


class ExactNQM(NamedTuple):
    """Moment dynamics; ``unroll`` returns the mean expected excess loss over its steps."""

    nqm: NQM
    horizon: int
    decay_steps: float = 10.0

    def init(self, key: jax.Array | None = None) -> ExactState:
        return ExactState(initial_moments(self.nqm), jnp.zeros((), jnp.int32))

    def unroll(self, hyper, state: ExactState, steps: int):
        def body(m, t):
            lr, mu = _at(hyper, t, self.decay_steps)
            m = step_moments(self.nqm, m, lr, mu)
            return m, loss_of(self.nqm, m).sum()

        moments, losses = jax.lax.scan(body, state.moments, state.step + jnp.arange(steps))
        return jnp.mean(losses), ExactState(moments, state.step + steps)


class SampledNQM(NamedTuple):
    """SGD with momentum on noisy gradients; ``unroll`` returns the mean of ½ Σ h θ² after
    each of its steps."""

    nqm: NQM
    horizon: int
    decay_steps: float = 10.0

    def init(self, key: jax.Array) -> SampledState:
        init_key, noise_key = jax.random.split(key)
        mean0, var0 = (jnp.asarray(a, float) for a in (self.nqm.mean0, self.nqm.var0))
        theta = mean0 + jnp.sqrt(var0) * jax.random.normal(init_key, mean0.shape, mean0.dtype)
        return SampledState(theta, jnp.zeros_like(theta), jnp.zeros((), jnp.int32), noise_key)

    def unroll(self, hyper, state: SampledState, steps: int):
        h = jnp.asarray(self.nqm.curvature, float)
        t = state.step + jnp.arange(steps)
        # The window's noise drawn up front, vectorized (faster than inside the loop), in float32:
        # a Gaussian sample needs no finer resolution, and float64 draws cost twice the random
        # bits, which dominate a sampled NQM step.
        z = jax.vmap(lambda t: jax.random.normal(jax.random.fold_in(state.key, t), h.shape, jnp.float32))(t)
        z = z.astype(h.dtype)

        def body(carry, inputs):
            t, z = inputs
            lr, mu = _at(hyper, t, self.decay_steps)
            theta, v = sample_step(self.nqm, *carry, lr, mu, z)
            return (theta, v), 0.5 * jnp.sum(h * theta**2)

        (theta, v), losses = jax.lax.scan(body, (state.theta, state.v), (t, z))
        return jnp.mean(losses), SampledState(theta, v, state.step + steps, state.key)


def whole_run_loss(nqm: NQM, raw: Mapping[str, jax.Array], horizon: int, decay_steps: float = 10.0) -> jax.Array:
    """The exact whole-run objective: mean expected excess loss over steps 1..horizon."""
    inner = ExactNQM(nqm, horizon, decay_steps)
    return inner.unroll(raw, inner.init(), horizon)[0]
