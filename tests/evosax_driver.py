"""evosax's ``PersistentES`` and ``NoiseReuseES`` (evosax 0.3) driven on one of our inner problems,
one window at a time: the independent implementation ``test_evosax.py`` checks our PES and NRES
against, and ``benchmarks/evosax_speed.py`` times them beside.

evosax's population is 2N members, the first N at ``mean + ε_j``, the last N at ``mean − ε_j``
(antithetic), and its gradient is Σ_i fitness_i ξ_i / (σ² 2N): ours, ξ_j (L₊ − L₋) / (2σ²)
averaged over pairs, with member j and member N + j as pair j. It leaves the inner states to
its user: here each member trains its own from the pair's run, as ours do. Its ``tell`` feeds
the gradient to an optax optimizer; :func:`recorder` keeps it and moves nothing, so the mean
stays at the hyperparameters and the estimate can be read from the optimizer's state.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from evosax.algorithms import NoiseReuseES, PersistentES

STRATEGIES = {"pes": PersistentES, "nres": NoiseReuseES}


def recorder() -> optax.GradientTransformation:
    """An optax 'optimizer' whose state is the last gradient it was given and whose updates are zero."""
    return optax.GradientTransformation(lambda mean: jnp.zeros_like(mean),
                                        lambda grad, state, mean=None: (jnp.zeros_like(grad), grad))


class Evosax:
    """evosax's strategy ``name`` (``"pes"`` or ``"nres"``) with ``pairs`` antithetic pairs and
    perturbation std ``sigma`` over windows of ``truncation`` steps of ``inner``, around the
    flat hyperparameter vector ``x`` (``unravel`` makes it the dict ``inner`` takes)."""

    def __init__(self, name: str, inner: Any, pairs: int, sigma: float, truncation: int, x: jax.Array, unravel):
        self.inner, self.pairs, self.truncation, self.x, self.unravel = inner, pairs, truncation, x, unravel
        self.strategy = STRATEGIES[name](2 * pairs, x, optimizer=recorder(), std_schedule=optax.constant_schedule(sigma))
        self.params = self.strategy.default_params.replace(T=inner.horizon, K=truncation)

    def init(self, key: jax.Array):
        return self.strategy.init(key, self.x, self.params)

    def ask(self, es_state, key: jax.Array):
        """The population of this window (rows: + members, then − members) and evosax's state."""
        return self.strategy.ask(key, es_state, self.params)

    def tell(self, es_state, population: jax.Array, states, key: jax.Array):
        """Each member trains the window from its own inner state (``states``: leading axes
        (pairs, 2), + then −); returns evosax's gradient, its state and the members' new states."""
        flat = jax.tree.map(lambda a: jnp.concatenate([a[:, 0], a[:, 1]]), states)
        losses, flat = jax.vmap(lambda h, s: self.inner.unroll(self.unravel(h), s, self.truncation))(population, flat)
        es_state, _ = self.strategy.tell(key, population, losses, es_state, self.params)
        states = jax.tree.map(lambda a: jnp.stack([a[:self.pairs], a[self.pairs:]], axis=1), flat)
        return es_state.opt_state, es_state, states

    def window(self, es_state, states, ask_key: jax.Array, tell_key: jax.Array):
        """One estimate: :meth:`ask`, then :meth:`tell`."""
        population, es_state = self.ask(es_state, ask_key)
        return self.tell(es_state, population, states, tell_key)
