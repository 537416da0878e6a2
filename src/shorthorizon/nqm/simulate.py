"""Monte-Carlo simulation: real stochastic SGD with momentum on an NQM, many runs at once."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from shorthorizon.nqm.dynamics import check_schedule
from shorthorizon.nqm.problem import NQM


def sample_step(nqm: NQM, theta, v, lr, momentum, z: jax.Array):
    """One step on a fresh noisy gradient: c = σ z with z ~ N(0, I) given, v ← μ v − α h (θ − c),
    θ ← θ + v. ``theta``, ``v`` and ``z`` may carry leading axes (independent trajectories)."""
    h = jnp.asarray(nqm.curvature, dtype=float)
    c = jnp.sqrt(jnp.asarray(nqm.sigma2, dtype=float)) * z
    v = momentum * v - lr * h * (theta - c)
    return theta + v, v


def simulate(nqm: NQM, lr, momentum, key: jax.Array, num_trajectories: int) -> jax.Array:
    """Run ``num_trajectories`` independent trajectories of :func:`sample_step` with the
    schedule (lr, momentum) from θ(0) ~ N(mean0, var0), v(0) = 0. Returns θ after 0..T steps,
    shape (T+1, n, d). The excess loss of each is ½ Σ_i h_i θ_i²; its mean estimates
    ``loss_curve``."""
    lr, momentum = check_schedule(lr, momentum)
    h = jnp.asarray(nqm.curvature, dtype=float)
    init_key, step_key = jax.random.split(key)
    shape = (num_trajectories, h.shape[-1])
    theta0 = nqm.mean0 + jnp.sqrt(jnp.asarray(nqm.var0, dtype=float)) * jax.random.normal(
        init_key, shape, dtype=h.dtype
    )

    def step(state, inputs):
        lr_t, mu_t, k = inputs
        state = sample_step(nqm, *state, lr_t, mu_t, jax.random.normal(k, shape, dtype=h.dtype))
        return state, state[0]

    keys = jax.random.split(step_key, lr.shape[0])
    _, thetas = lax.scan(step, (theta0, jnp.zeros_like(theta0)), (lr, momentum, keys))
    return jnp.concatenate([theta0[None], thetas])
