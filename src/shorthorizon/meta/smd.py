"""Stochastic meta-descent (paper Algorithm 1) on hyperparameters held in log space.

Each meta-step evaluates the meta-objective and its forward-mode hypergradient at the
current hyperparameters, clips the hypergradient to ``[-clip, clip]``, takes an Adam step
and clips the values to their valid range. The Adam state persists across meta-steps
(the reference code reset it after every step; that was a bug).
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from shorthorizon.hypergrad.estimators import hypergradient


class SMDState(NamedTuple):
    raw: dict  # hyperparameters in the meta-optimizer's (log) space
    adam: optax.OptState


class SMD(NamedTuple):
    """``objective(raw, key) -> scalar`` is minimized over ``raw`` (a dict of scalars)."""

    objective: Callable[[dict, jax.Array], jax.Array]
    meta_lr: float = 0.01
    clip: float = 10.0
    bounds: Mapping[str, tuple[float, float]] = {}
    estimator: str = "forward"

    def _adam(self):
        return optax.adam(self.meta_lr)

    def init(self, raw: Mapping[str, jax.Array]) -> SMDState:
        raw = {k: jnp.asarray(v) for k, v in raw.items()}
        return SMDState(raw, self._adam().init(raw))

    def step(self, state: SMDState, key: jax.Array) -> tuple[SMDState, tuple[jax.Array, dict, dict]]:
        """One meta-step; returns the new state and (objective, hypergradient, raw) before it."""
        value, grad = hypergradient(lambda r: self.objective(r, key), state.raw, self.estimator)
        clipped = jax.tree.map(lambda g: jnp.clip(g, -self.clip, self.clip), grad)
        updates, adam = self._adam().update(clipped, state.adam, state.raw)
        raw = optax.apply_updates(state.raw, updates)
        raw = {k: jnp.clip(v, *self.bounds.get(k, (-jnp.inf, jnp.inf))) for k, v in raw.items()}
        return SMDState(raw, adam), (value, grad, state.raw)

    def run(self, state: SMDState, keys: jax.Array) -> tuple[SMDState, tuple[jax.Array, dict, dict]]:
        """``len(keys)`` meta-steps under ``lax.scan``; per-step (objective, hypergradient, raw)."""
        return jax.lax.scan(self.step, state, keys)
