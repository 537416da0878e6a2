"""The evolution-strategies family: antithetic pairs of trajectories at ``hyper ± ε``, each
pair from its own two inner states, estimating ξ (L₊ − L₋) / (2σ²). Its members differ in which
ε a window runs at and which ξ its loss difference is credited to:

- :class:`ES` (truncated ES): a fresh ε every window, credited alone; as biased as TBPTT, smoothed.
- :class:`PES` (Vicol, Metz, Sohl-Dickstein, ICML 2021): the pair keeps the sum ξ of every
  perturbation drawn since its inner run started, which credits a window's loss to the
  perturbations of all earlier windows too; unbiased for the gradient of the Gaussian-smoothed
  whole-run objective (each window's hyperparameters perturbed independently).
- :class:`NRES` (noise-reuse ES; Li, Harrison, Sohl-Dickstein, Smith and Metz, NeurIPS 2023,
  the same estimator as Vicol, Kolter and Swersky's ES-Single, ICML 2023): one ε drawn when
  the run starts, run and credited in every window, unbiased for the whole-run objective
  smoothed by one perturbation per run; PES's ξ sums one fresh draw per window, so its
  variance grows with the windows run.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from shorthorizon.hypergrad.estimators.base import EstState, Estimator, Inner, Objective, window


@dataclasses.dataclass(frozen=True)
class _Antithetic(Estimator):
    """What the ES family shares (module docstring); ``sigma`` = σ is ε's standard deviation in
    the coordinates of ``hyper`` (e.g. log space). A member says which ε a window runs at and
    which ξ its loss difference is credited to (:meth:`_perturb`), and what perturbation state
    a fresh run starts with (:meth:`_restart_xi`)."""

    inner: Inner | None = None
    truncation: int | None = None
    particles: int = 1
    sigma: float = 0.01
    stagger: bool = True
    _trajectories = 2  # per particle: the + and the − run

    @abc.abstractmethod
    def _perturb(self, xi: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(ε, ξ)`` per particle from the run's perturbation state ``xi``: the window runs at
        ``hyper ± ε`` and credits ξ; ξ is the state the next window sees."""

    def _draw(self, key: jax.Array, like: jax.Array) -> jax.Array:
        return self.sigma * jax.random.normal(key, like.shape, like.dtype)

    def _check(self) -> int:
        if not self.sigma > 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}")
        return super()._check()

    def step_work(self, hypers: int) -> float:
        """A perturbed run's step is a plain step."""
        return 1.0

    def objective_gradient(self, f: Callable[[Mapping[str, jax.Array], jax.Array], jax.Array],
                           hyper: Mapping[str, jax.Array], key: jax.Array) -> tuple[jax.Array, dict]:
        """``(f(hyper, key), ES estimate)`` of a plain meta-objective: ``particles`` antithetic
        pairs of whole unrolls, every one with ``key`` (one window: PES and NRES are ES here)."""
        es = dataclasses.replace(self, inner=Objective(f), truncation=None, stagger=False)
        init_key, key = jax.random.split(key)
        state = es.init(hyper, init_key)
        state = state._replace(inner=jnp.broadcast_to(key, state.inner.shape))  # every pair sees key's unroll
        loss, grad, _ = es.estimate(state, hyper, init_key)
        return loss, grad

    def window_perturbations(self, key: jax.Array, dim: int, dtype=jnp.float32) -> jax.Array:
        """The perturbations the windows of one particle's run are evaluated at, shape
        (windows, dim), drawn as :meth:`estimate` draws them. A persistent member's expectation
        is the gradient of the whole-run objective with window w's hyperparameters at
        ``hyper + ε_w``, averaged over these draws (PES: independent per window; NRES: one for
        the run), which the ``estimators`` experiment computes exactly as its reference."""
        def body(xi, k):
            eps, xi = self._perturb(xi, k)
            return xi, eps[0]

        start = self._restart_xi(jax.random.fold_in(key, 1), jnp.zeros((1, dim), dtype))
        return jax.lax.scan(body, start, jax.random.split(key, self.windows))[1]

    def _pair(self, inner):
        return jax.tree.map(lambda a: jnp.stack([a, a], axis=1), inner)

    def estimate_particles(self, state: EstState, hyper: Mapping[str, jax.Array], key: jax.Array):
        """One window; every pair's mean loss (of ±) and estimate (leading axis: particles)."""
        k = self._check()
        x, unravel = ravel_pytree(dict(hyper))
        noise_key, reset_key = jax.random.split(key)
        eps, xi = self._perturb(state.xi, noise_key)
        signs = jnp.array([1.0, -1.0], x.dtype)

        def one(starts, e):  # one particle pair: both signs from their own states
            return jax.vmap(lambda s, start: window(self.inner, unravel(x + s * e), start, k, None))(signs, starts)

        losses, inner = jax.vmap(one)(state.inner, eps)  # losses (particles, 2)
        grads = xi * ((losses[:, 0] - losses[:, 1]) / (2 * self.sigma**2))[:, None]
        return losses.mean(1), jax.vmap(unravel)(grads), self._advance(state, inner, xi, reset_key)


class ES(_Antithetic):
    """Antithetic evolution strategies over windows: a fresh ε every window, credited alone."""

    name = "es"
    color = "tab:orange"
    description = "es: antithetic ES over each window, a fresh perturbation per window (as biased as truncation)."

    def _perturb(self, xi, key):
        eps = self._draw(key, xi)
        return eps, eps


class PES(_Antithetic):
    """Persistent ES: a fresh ε every window, credited with the sum ξ of every ε drawn since the
    particle's run started (module docstring)."""

    persistent = True
    name = "pes"
    color = "tab:red"
    description = ("pes: persistent ES (Vicol, Metz and Sohl-Dickstein, ICML 2021): each pair credits the sum of "
                   "every perturbation drawn since its run started, unbiased for the whole run smoothed per window.")

    def _perturb(self, xi, key):
        eps = self._draw(key, xi)
        return eps, xi + eps


class NRES(_Antithetic):
    """Noise-reuse ES (Li et al., NeurIPS 2023; ES-Single of Vicol et al., ICML 2023): one ε per
    particle, drawn when its inner run starts, runs and is credited in every window of the run.

    Unbiased: with the + and − trajectories at ``hyper ± ε`` since step 0, window w's losses
    are L_w(hyper ± ε) of the whole-run objective J = mean_w L_w, so by Stein's identity
    E[ε (L_w(x + ε) − L_w(x − ε))] / (2σ²) = ∇ E[L_w(x + ε)] for every w (and for every draw of
    the inner noise the pair shares), and a window at a uniformly random phase averages them to
    the gradient of J_σ(x) = E[J(x + ε)], J smoothed by one perturbation per run. PES's
    estimate at window w is ξ_w (L₊ − L₋) / (2σ²) with ξ_w the sum of w draws: unbiased for J
    smoothed per window, with |ξ_w|² growing as w σ² while the loss difference does not grow
    with it. Li et al. show NRES has the least variance of the unbiased online ES estimators
    they analyse; the ``estimators`` experiment measures both against the exact NQM gradient."""

    persistent = True
    name = "nres"
    color = "tab:green"
    description = ("nres: noise-reuse ES (Li, Harrison, Sohl-Dickstein, Smith and Metz, NeurIPS 2023; ES-Single of "
                   "Vicol, Kolter and Swersky, ICML 2023) draws one perturbation per particle when its inner run "
                   "starts and reuses it in every window, so each window's loss difference carries the "
                   "perturbation's whole effect on the run so far. It is unbiased for the whole-run objective "
                   "smoothed by one perturbation per run; Li et al. show it has the least variance of the unbiased "
                   "online ES estimators they analyse (the rows below measure it against PES's here).")

    def _restart_xi(self, key, xi):
        """A fresh run's one perturbation."""
        return self._draw(key, xi)

    def _perturb(self, xi, key):
        return xi, xi
