"""Exact mean and variance dynamics of SGD with momentum on an NQM (Theorem 1).

One step with learning rate α and momentum μ, per dimension (gradient h(θ − c), c ~ N(0, σ²)):

    v' = μ v − α h (θ − c),        θ' = θ + v' = (1 − αh) θ + μ v + αh c.

Taking moments (θ, v independent of the fresh c):

    E[v'] = μ E[v] − αh E[θ]
    E[θ'] = (1 − αh) E[θ] + μ E[v]
    V[v'] = μ² V[v] − 2αhμ C + α²h² V[θ] + α²h²σ²
    V[θ'] = (1 − αh)² V[θ] + 2μ(1 − αh) C + μ² V[v] + α²h²σ²
    C'    = −αh(1 − αh) V[θ] + μ(1 − 2αh) C + μ² V[v] + α²h²σ²

where C = Cov(θ, v). The excess expected loss is ½ Σ_i h_i (E[θ_i]² + V[θ_i]).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from shorthorizon.nqm.problem import NQM


class ScheduledRun(NamedTuple):
    """A learning-rate and momentum schedule (shape (T,) each) and its loss curve (T+1,); not
    :data:`shorthorizon.optim.Schedule`, a function of the step."""

    lr: jax.Array
    momentum: jax.Array
    loss: jax.Array


class Moments(NamedTuple):
    """First and second moments of (θ, v), one entry per dimension (leading axes allowed)."""

    mean_theta: jax.Array
    mean_v: jax.Array
    var_theta: jax.Array
    var_v: jax.Array
    cov: jax.Array  # Cov(θ, v)


def initial_moments(nqm: NQM) -> Moments:
    """Moments at step 0: θ ~ N(mean0, var0), v = 0."""
    mean0 = jnp.asarray(nqm.mean0, dtype=float)
    zeros = jnp.zeros_like(mean0)
    return Moments(mean0, zeros, jnp.asarray(nqm.var0, dtype=float), zeros, zeros)


def step_moments(nqm: NQM, m: Moments, lr, momentum) -> Moments:
    """One step of SGD with momentum, in moments (the Theorem 1 recursions above)."""
    h = jnp.asarray(nqm.curvature, dtype=float)
    a = lr * h  # αh
    noise = a * a * jnp.asarray(nqm.sigma2, dtype=float)  # α²h²σ²
    mu = momentum
    return Moments(
        mean_theta=(1 - a) * m.mean_theta + mu * m.mean_v,
        mean_v=mu * m.mean_v - a * m.mean_theta,
        var_theta=(1 - a) ** 2 * m.var_theta + 2 * mu * (1 - a) * m.cov + mu**2 * m.var_v + noise,
        var_v=mu**2 * m.var_v - 2 * a * mu * m.cov + a * a * m.var_theta + noise,
        cov=-a * (1 - a) * m.var_theta + mu * (1 - 2 * a) * m.cov + mu**2 * m.var_v + noise,
    )


def loss_of(nqm: NQM, m: Moments) -> jax.Array:
    """Per-dimension excess expected loss ½ h_i (E[θ_i]² + V[θ_i])."""
    h = jnp.asarray(nqm.curvature, dtype=float)
    return 0.5 * h * (m.mean_theta**2 + m.var_theta)


def check_schedule(lr, momentum) -> tuple[jax.Array, jax.Array]:
    """Validate a (lr, momentum) schedule: 1-D, same length T >= 1."""
    lr, momentum = jnp.asarray(lr, dtype=float), jnp.asarray(momentum, dtype=float)
    if lr.ndim != 1 or lr.shape != momentum.shape:
        raise ValueError(
            f"lr and momentum must be 1-D arrays of the same length, got shapes "
            f"{lr.shape} and {momentum.shape}"
        )
    if lr.shape[0] < 1:
        raise ValueError("the horizon (schedule length) must be at least 1 step")
    return lr, momentum


def moment_trajectory(nqm: NQM, lr, momentum) -> Moments:
    """Moments after 0..T steps of the schedule; every field has shape (T+1, d)."""
    lr, momentum = check_schedule(lr, momentum)
    after, _ = _rollout(nqm, lr, momentum)
    return jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), initial_moments(nqm), after)


def loss_components(nqm: NQM, lr, momentum) -> jax.Array:
    """Per-dimension excess loss ½ h_i (E[θ_i(t)]² + V[θ_i(t)]), shape (T+1, d)."""
    lr, momentum = check_schedule(lr, momentum)
    return _loss_components(nqm, lr, momentum)


def _rollout(nqm: NQM, lr, momentum):
    """Moments after each step (fields (T, d)) and the loss components (T+1, d)."""
    m0 = initial_moments(nqm)

    def step(m, hyper):
        m = step_moments(nqm, m, *hyper)
        return m, (m, loss_of(nqm, m))

    _, (after, losses) = lax.scan(step, m0, (lr, momentum))
    return after, jnp.concatenate([loss_of(nqm, m0)[None], losses])


@jax.custom_vjp
def _loss_components(nqm: NQM, lr, momentum):
    return _rollout(nqm, lr, momentum)[1]


def _loss_components_fwd(nqm, lr, momentum):
    after, components = _rollout(nqm, lr, momentum)
    return components, (nqm, lr, momentum, after)


def _loss_components_bwd(residuals, cotangent):
    """Reverse pass of the rollout, written out: a reverse scan of per-step VJPs that recomputes
    each step's intermediates from the stored moments. Autodiff of the scan stores every
    intermediate instead, so it moves far more memory per step (benchmarks/nqm_speed.py times
    the two; the rollout dominates the schedule fits)."""
    nqm, lr, momentum, after = residuals
    m0 = initial_moments(nqm)
    before = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest[:-1]]), m0, after)
    zero_nqm = jax.tree.map(jnp.zeros_like, nqm)

    def step(carry, inputs):
        adjoint, nqm_bar = carry  # adjoint: cotangent of the moments after this step
        m, m_next, lr_t, mu_t, loss_bar = inputs
        nqm_loss, m_loss = jax.vjp(loss_of, nqm, m_next)[1](loss_bar)
        adjoint = jax.tree.map(jnp.add, adjoint, m_loss)
        _, vjp = jax.vjp(step_moments, nqm, m, lr_t, mu_t)
        nqm_step, adjoint, lr_bar, mu_bar = vjp(adjoint)
        nqm_bar = jax.tree.map(lambda *x: sum(x), nqm_bar, nqm_loss, nqm_step)
        return (adjoint, nqm_bar), (lr_bar, mu_bar)

    init = (jax.tree.map(jnp.zeros_like, m0), zero_nqm)
    (adjoint, nqm_bar), (lr_bar, mu_bar) = lax.scan(
        step, init, (before, after, lr, momentum, cotangent[1:]), reverse=True)
    nqm_loss0, m_loss0 = jax.vjp(loss_of, nqm, m0)[1](cotangent[0])
    (nqm_init,) = jax.vjp(initial_moments, nqm)[1](jax.tree.map(jnp.add, adjoint, m_loss0))
    nqm_bar = jax.tree.map(lambda *x: sum(x), nqm_bar, nqm_loss0, nqm_init)
    return nqm_bar, lr_bar, mu_bar


_loss_components.defvjp(_loss_components_fwd, _loss_components_bwd)


def loss_curve(nqm: NQM, lr, momentum) -> jax.Array:
    """Exact excess expected loss ½ Σ_i h_i (E[θ_i]² + V[θ_i]) after t = 0..T steps, shape (T+1,).

    Index 0 is the initial loss. Differentiable in ``lr``, ``momentum`` and the problem.
    """
    return loss_components(nqm, lr, momentum).sum(axis=-1)


def ratios_of(components: jax.Array) -> jax.Array:
    """Loss components (T+1, d) divided by their initial values (row 0).

    A dimension whose initial component is zero is compared with the smallest positive
    number, so any growth there counts as a huge ratio.
    """
    return components / jnp.maximum(components[0], jnp.finfo(components.dtype).tiny)


def component_ratios(nqm: NQM, lr, momentum) -> jax.Array:
    """Each dimension's loss component divided by its initial value, shape (T+1, d)."""
    return ratios_of(loss_components(nqm, lr, momentum))


def max_component_ratio(nqm: NQM, lr, momentum) -> jax.Array:
    """The largest ratio, over dimensions and steps, of a loss component to its initial value."""
    return component_ratios(nqm, lr, momentum).max()
