"""Hypergradient estimators behind one interface.

``hypergradient(f, hyper, estimator)`` returns ``(f(hyper), {name: ∂f/∂hyper[name]})`` for a
scalar function ``f`` of a dict of scalar hyperparameters:

- ``"forward"``: stochastic meta-descent's forward mode (paper Eq. 8-9). One ``jax.jvp``
  per hyperparameter, one after another under ``lax.map``; exact, and its memory does not
  grow with the horizon. Each jvp recomputes the primal unroll, yet on XLA:CPU this is
  faster than ``vmap`` over the tangents (which shares the primal): batched tangents turn
  every matmul into a batched one with transposes around it. Two hyperparameters on the CNN
  (batch 25, 5 steps): 3.0x a plain unroll with ``lax.map``, 6.1x with ``vmap``; on the MLP
  (batch 100, 200 steps) the two are within this machine's noise (3.2x to 4.3x).
- ``"reverse"``: ``jax.value_and_grad`` through the same unroll (memory grows with T).
- ``"fd"``: central finite differences, for checking (use float64).

Finite differences need small steps here: with ReLU or max-pooling the gradient jumps where a
unit switches, so one training step is a discontinuous map of the weights and a long unroll's
meta-objective has small jumps in the hyperparameters. Forward and reverse mode give the
derivative of the smooth piece the point lies on; central differences agree with them only
while ``±fd_step`` stays inside that piece (short unrolls, steps ~1e-7 in float64).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

ESTIMATORS = ("forward", "reverse", "fd")


def hypergradient(
    f: Callable[[dict], jax.Array],
    hyper: Mapping[str, jax.Array],
    estimator: str = "forward",
    wrt: Sequence[str] | None = None,
    fd_step: float = 1e-7,
) -> tuple[jax.Array, dict]:
    """Value of ``f`` at ``hyper`` and its derivatives w.r.t. the keys ``wrt`` (default all).

    ``fd_step`` is relative: hyperparameter h moves by ``±fd_step * |h|`` (``±fd_step`` at 0)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of: {', '.join(ESTIMATORS)}")
    hyper = dict(hyper)
    wrt = tuple(wrt if wrt is not None else hyper)
    missing = [k for k in wrt if k not in hyper]
    if missing:
        raise ValueError(f"hyperparameters {missing} are not among {list(hyper)}")
    fixed = {k: v for k, v in hyper.items() if k not in wrt}
    x = jnp.stack([jnp.asarray(hyper[k]) for k in wrt])

    def g(vec):
        return f({**fixed, **{k: vec[i] for i, k in enumerate(wrt)}})

    if estimator == "forward":
        values, grad = jax.lax.map(lambda t: jax.jvp(g, (x,), (t,)), jnp.eye(len(wrt), dtype=x.dtype))
        value = values[0]
    elif estimator == "reverse":
        value, grad = jax.value_and_grad(g)(x)
    else:  # a Python loop over the few hyperparameters reuses f's compiled program
        steps = fd_step * jnp.where(x == 0, 1.0, jnp.abs(x))
        basis = jnp.diag(steps)
        grad = jnp.stack([(g(x + basis[i]) - g(x - basis[i])) / (2 * steps[i]) for i in range(len(wrt))])
        value = g(x)
    return value, {k: grad[i] for i, k in enumerate(wrt)}
