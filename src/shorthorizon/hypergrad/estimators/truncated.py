"""Truncated estimators: the derivative of each window's loss by a derivative mode, the inner
state at the window's start held constant. ``mode="reverse"`` is truncated backpropagation
through time (TBPTT), ``"forward"`` the paper's short-horizon SMD; with K = T (one window)
both are the exact whole-run derivative. For K < T they are biased: they ignore how the
hyperparameters moved the state the window starts from."""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import jax
from jax.flatten_util import ravel_pytree

from shorthorizon.hypergrad.estimators.base import EstState, Estimator, Inner, window
from shorthorizon.hypergrad.modes import MODES, check_mode, hypergradient


@dataclasses.dataclass(frozen=True)
class Truncated(Estimator):
    """Derivative of each window's loss by ``mode`` (``"forward"``, ``"reverse"``, ``"fd"``),
    the window's start state held constant; averaged over ``particles``. ``truncation`` None
    (or T): the whole run, exact. ``checkpoint``: reverse-mode memory, see :func:`window`."""

    inner: Inner | None = None
    mode: str = "forward"
    truncation: int | None = None
    particles: int = 1
    stagger: bool = True
    checkpoint: int | None = None
    fd_step: float = 1e-7
    _trajectories = 1  # per particle
    description = ("forward: the derivative of each window's loss with its start state held (the paper's "
                   "short-horizon SMD; tbptt: the same by reverse mode); exact over the whole run at K = T.")

    def __post_init__(self):
        check_mode(self.mode)

    @property
    def name(self) -> str:
        return self.mode

    @property
    def color(self) -> str:
        """Forward and reverse mode give the same estimates: one hue, two shades."""
        return {"forward": "tab:blue", "reverse": "tab:cyan", "fd": "tab:gray"}[self.mode]

    @property
    def windowed(self) -> bool:
        """Central differences are a check (float64, a few steps), not an estimator to fit with."""
        return self.mode != "fd"

    def label(self, horizon: int) -> str:
        """As :meth:`Estimator.label`; truncated reverse mode is called ``tbptt``."""
        return super().label(horizon).replace("reverse_K", "tbptt_K")

    def step_work(self, hypers: int) -> float:
        """One differentiated inner step in plain steps. Forward mode runs one jvp per
        hyperparameter (:func:`hypergradient`), each the primal step and a tangent of about its
        size: a tangent matmul has the primal's shape, one product at the first layer (its input
        has no tangent) and two at the others (x_dot W + x W_dot). XLA counts 2.2 (paper's MLP)
        and 2.8 (CNN) times a plain step's FLOPs, and small ops run no faster in a tangent, so 2
        per hyperparameter. Reverse mode: the primal, then a backward pass that costs about two
        of them, 3. Central differences: 2 per hyperparameter and the value."""
        return {"forward": 2.0 * hypers, "reverse": 3.0, "fd": 2.0 * hypers + 1}[self.mode]

    def objective_gradient(self, f: Callable[[Mapping[str, jax.Array], jax.Array], jax.Array],
                           hyper: Mapping[str, jax.Array], key: jax.Array) -> tuple[jax.Array, dict]:
        """``(f(hyper, key), its exact derivative)`` by this estimator's mode: a plain
        meta-objective is one window, so truncation and particles play no part."""
        return hypergradient(lambda h: f(h, key), hyper, self.mode, fd_step=self.fd_step)

    def estimate_particles(self, state: EstState, hyper: Mapping[str, jax.Array], key: jax.Array):
        k = self._check()
        x, unravel = ravel_pytree(dict(hyper))

        def one(start):
            start = jax.lax.stop_gradient(start)
            return MODES[self.mode](lambda v: window(self.inner, unravel(v), start, k, self.checkpoint),
                                    x, self.fd_step)

        losses, inner, grads = jax.vmap(one)(state.inner)
        return losses, jax.vmap(unravel)(grads), self._advance(state, inner, state.xi, key)
