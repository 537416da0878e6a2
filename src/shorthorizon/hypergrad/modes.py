"""Derivative modes: how the derivative of a plain meta-objective is computed.

A mode turns a function of a hyperparameter vector into its value and derivative;
``hypergradient(f, hyper, mode)`` applies one to a meta-objective ``f(hyper)``:

- ``"forward"``: stochastic meta-descent's forward mode (paper Eq. 8-9). One ``jax.jvp`` per
  hyperparameter, one after another under ``lax.map``; exact, and its memory does not grow
  with the horizon. Each jvp recomputes the primal unroll, yet on XLA:CPU this is not slower
  than ``vmap`` over the tangents (which shares the primal): batched tangents turn every
  matmul into a batched one with transposes around it (``benchmarks/hypergrad_speed.py``).
- ``"reverse"``: ``jax.value_and_grad`` through the same unroll (memory grows with T unless
  the unroll is checkpointed: :class:`~shorthorizon.hypergrad.estimators.Truncated`).
- ``"fd"``: central finite differences, for checking (use float64).

Finite differences need small steps: with ReLU or max-pooling the gradient jumps where a
unit switches, so one training step is a discontinuous map of the weights and a long unroll's
meta-objective has small jumps in the hyperparameters. Forward and reverse mode give the
derivative of the smooth piece the point lies on; central differences agree with them only
while ``±fd_step`` stays inside that piece (short unrolls, steps ~1e-7 in float64).

The estimator objects (:mod:`shorthorizon.hypergrad.estimators`) use these modes over windows.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp


# f(x) -> (value, aux) of a vector x; each mode returns (value, aux, grad)
def _forward(f, x, fd_step):
    def jvp(tangent):
        (value, aux), (dvalue, _) = jax.jvp(f, (x,), (tangent,))
        return value, aux, dvalue

    values, auxes, grad = jax.lax.map(jvp, jnp.eye(x.shape[0], dtype=x.dtype))
    return values[0], jax.tree.map(lambda a: a[0], auxes), grad


def _reverse(f, x, fd_step):
    (value, aux), grad = jax.value_and_grad(f, has_aux=True)(x)
    return value, aux, grad


def _finite_difference(f, x, fd_step):
    """Central differences with relative steps ``±fd_step * |x_i|`` (``±fd_step`` at 0); a
    Python loop over the few coordinates reuses f's compiled program. A step within 1000 units
    of roundoff of ``x``'s dtype is refused: ``x ± step`` would round to other steps (to none in
    float32 at the default step), and the quotient be off by as much."""
    resolution = float(jnp.finfo(x.dtype).eps)
    if fd_step < 1000 * resolution:
        raise ValueError(f"central differences with relative steps of {fd_step:g} in {x.dtype} (resolution "
                         f"{resolution:.1e}): the steps round away; compute in float64 (jax.enable_x64)")
    steps = fd_step * jnp.where(x == 0, 1.0, jnp.abs(x))
    basis = jnp.diag(steps)
    grad = jnp.stack([(f(x + basis[i])[0] - f(x - basis[i])[0]) / (2 * steps[i]) for i in range(x.shape[0])])
    value, aux = f(x)
    return value, aux, grad


MODES = {"forward": _forward, "reverse": _reverse, "fd": _finite_difference}


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown derivative mode {mode!r}; choose one of: {', '.join(MODES)}")


def hypergradient(
    f: Callable[[dict], jax.Array],
    hyper: Mapping[str, jax.Array],
    mode: str = "forward",
    wrt: Sequence[str] | None = None,
    fd_step: float = 1e-7,
) -> tuple[jax.Array, dict]:
    """Value of ``f`` at ``hyper`` and its derivatives w.r.t. the keys ``wrt`` (default all),
    by the derivative mode ``mode`` (``"forward"``, ``"reverse"`` or ``"fd"``).

    ``fd_step`` is relative: hyperparameter h moves by ``±fd_step * |h|`` (``±fd_step`` at 0)."""
    check_mode(mode)
    wrt = tuple(wrt if wrt is not None else hyper)
    missing = [k for k in wrt if k not in hyper]
    if missing:
        raise ValueError(f"hyperparameters {missing} are not among {list(hyper)}")
    x = jnp.stack([jnp.asarray(hyper[k]) for k in wrt])

    def g(vec):  # the others at their values
        return f({**hyper, **{k: vec[i] for i, k in enumerate(wrt)}}), ()

    value, _, grad = MODES[mode](g, x, fd_step)
    return value, {k: grad[i] for i, k in enumerate(wrt)}
