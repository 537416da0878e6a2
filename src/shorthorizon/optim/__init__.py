"""Base optimizers whose hyperparameters live in their state, and learning-rate schedules.

Keeping ``hyper`` (a dict of scalars) inside :class:`OptState` lets one step function serve
plain training, forward-mode and reverse-mode hypergradients: differentiate the unroll with
respect to ``state.hyper`` and nothing else changes.

Conventions (one name per idea): ``lr`` is α in ``v <- μ v - α ∇L, θ <- θ + v``;
``momentum`` is μ (β1 for Adam); ``decay_exponent`` is β of the inverse-time schedule;
``decay_rate`` is the factor of the exponential schedule per ``decay_steps``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

Hyper = Mapping[str, jax.Array]
Schedule = Callable[[Hyper, jax.Array], jax.Array]


# --- schedules: (hyper, step) -> learning rate at that step ------------------------------
def constant() -> Schedule:
    """lr_t = lr."""
    return lambda hyper, step: hyper["lr"]


def inverse_time(decay_steps: float = 5000.0) -> Schedule:
    """lr_t = lr (1 + t / decay_steps) ** (-decay_exponent) (paper Section 3.2)."""
    return lambda hyper, step: hyper["lr"] * (1.0 + step / decay_steps) ** (-hyper["decay_exponent"])


def exponential(decay_steps: float) -> Schedule:
    """lr_t = lr * decay_rate ** (t / decay_steps)."""
    return lambda hyper, step: hyper["lr"] * hyper["decay_rate"] ** (step / decay_steps)


SCHEDULES = {"constant": constant, "inverse_time": inverse_time, "exponential": exponential}


# --- optimizers -----------------------------------------------------------------------
class OptState(NamedTuple):
    step: jax.Array  # number of updates taken so far
    slots: Any  # per-parameter buffers (velocity, Adam moments), or () for SGD
    hyper: dict  # hyperparameters, the thing meta-optimization differentiates


class Optimizer(NamedTuple):
    """``init(params, hyper) -> OptState``; ``update(grads, state, params) -> (params, state)``."""

    name: str
    init: Callable[[Any, Hyper], OptState]
    update: Callable[[Any, OptState, Any], tuple[Any, OptState]]


def _tree_zeros(params):
    return jax.tree.map(jnp.zeros_like, params)


def _as_hyper(hyper: Hyper, params) -> dict:
    dtype = jax.tree.leaves(params)[0].dtype
    return {k: jnp.asarray(v, dtype) for k, v in hyper.items()}


def sgd(schedule: Schedule | None = None) -> Optimizer:
    """θ <- θ - lr_t ∇L."""
    schedule = schedule or constant()

    def init(params, hyper):
        return OptState(jnp.zeros((), jnp.int32), (), _as_hyper(hyper, params))

    def update(grads, state, params):
        lr = schedule(state.hyper, state.step)
        params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
        return params, state._replace(step=state.step + 1)

    return Optimizer("sgd", init, update)


def momentum(schedule: Schedule | None = None) -> Optimizer:
    """Heavy ball: v <- μ v - lr_t ∇L, θ <- θ + v (hyper: ``lr``, ``momentum``)."""
    schedule = schedule or constant()

    def init(params, hyper):
        return OptState(jnp.zeros((), jnp.int32), _tree_zeros(params), _as_hyper(hyper, params))

    def update(grads, state, params):
        lr, mu = schedule(state.hyper, state.step), state.hyper["momentum"]
        velocity = jax.tree.map(lambda v, g: mu * v - lr * g, state.slots, grads)
        params = jax.tree.map(jnp.add, params, velocity)
        return params, state._replace(step=state.step + 1, slots=velocity)

    return Optimizer("momentum", init, update)


def adam(schedule: Schedule | None = None, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam with bias correction; hyper ``lr`` and ``momentum`` (= β1)."""
    schedule = schedule or constant()

    def init(params, hyper):
        return OptState(jnp.zeros((), jnp.int32), (_tree_zeros(params), _tree_zeros(params)),
                        _as_hyper(hyper, params))

    def update(grads, state, params):
        lr, b1 = schedule(state.hyper, state.step), state.hyper["momentum"]
        t = state.step + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.slots[0], grads)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.slots[1], grads)
        def step(p, m, v):
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            # max(v_hat, tiny): same value, but a finite derivative where a gradient is exactly zero
            return p - lr * m_hat / (jnp.sqrt(jnp.maximum(v_hat, 1e-30)) + eps)

        params = jax.tree.map(step, params, m, v)
        return params, state._replace(step=t, slots=(m, v))

    return Optimizer("adam", init, update)


OPTIMIZERS = {"sgd": sgd, "momentum": momentum, "adam": adam}


def make_optimizer(name: str, schedule: Schedule | None = None) -> Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](schedule)


# --- reparameterizations (paper Section 3.3) --------------------------------------------
def to_effective(lr: jax.Array, mu: jax.Array) -> dict:
    """(lr, momentum) -> {"log_lr_eff": log(lr / (1 - μ)), "log_one_minus_momentum": log(1 - μ)}."""
    return {"log_lr_eff": jnp.log(lr / (1 - mu)), "log_one_minus_momentum": jnp.log1p(-mu)}


def from_effective(raw: Mapping[str, jax.Array]) -> dict:
    """Inverse of :func:`to_effective`: returns {"lr": α, "momentum": μ}."""
    one_minus_mu = jnp.exp(raw["log_one_minus_momentum"])
    return {"lr": jnp.exp(raw["log_lr_eff"]) * one_minus_mu, "momentum": 1 - one_minus_mu}
