"""Hypergradient estimators: the gradient of a whole run's objective, seen one window at a time.

**Estimator objects** estimate the gradient of a *whole-run* objective of an inner problem
(:class:`Inner`) one window of ``truncation`` = K steps at a time, keeping state between
windows (learned_optimization's ``GradientEstimator``, without its global configuration)::

    estimator = make_estimator("pes", truncation=10, particles=4, sigma=0.1)  # names resolved once
    estimator = estimator.with_inner(inner)                  # the problem a driver composes it with
    state = estimator.init(hyper, key)                       # particles at step 0 (staggered)
    loss, grads, state = estimator.estimate(state, hyper, key)   # one window each

The same object estimates the gradient of a plain meta-objective ``f(hyper, key)``
(``objective_gradient``, what :class:`~shorthorizon.meta.smd.SMD` calls) and says what an
estimate costs (``cost`` in inner steps, ``work`` in plain passes). Adding an estimator is one
class with these methods and one entry in :data:`ESTIMATORS`.

The whole-run objective is the **mean per-step loss over the run** of T steps,
J = (1/T) Σ_{t=1..T} L_t. A window's loss is the mean loss over its K steps, so for a particle
at a uniformly random window the expectation of (the gradient of) its window loss is J's
(the window losses average to J). Estimators:

- :class:`Truncated` with a derivative mode: the window's derivative with the inner state at
  the window's start held constant. ``mode="reverse"`` is truncated backpropagation through
  time (TBPTT), ``"forward"`` the paper's short-horizon SMD; with K = T (one window) both are
  the exact whole-run derivative. For K < T they are biased: they ignore how the
  hyperparameters moved the state the window starts from.
- :class:`ES` (antithetic evolution strategies): each particle pair runs the window at
  ``hyper ± ε``, ε ~ N(0, σ²I), from its own two inner states, and estimates
  ε (L₊ − L₋) / (2σ²). ``persistent=True`` is **PES** (Vicol, Metz, Sohl-Dickstein, ICML 2021):
  the pair keeps the sum ξ of every perturbation drawn since its inner run started and
  estimates ξ (L₊ − L₋) / (2σ²), which credits a window's loss to the perturbations of all
  earlier windows too; unbiased for the gradient of the Gaussian-smoothed whole-run objective
  (each window's hyperparameters perturbed independently). Truncated ES (``persistent=False``)
  is as biased as TBPTT, smoothed.
- :class:`NRES` (noise-reuse ES; Li, Harrison, Sohl-Dickstein, Smith and Metz, NeurIPS 2023,
  the same estimator as Vicol, Kolter and Swersky's ES-Single, ICML 2023): a pair draws one
  perturbation ε when its inner run starts and keeps it for every window of the run,
  estimating ε (L₊ − L₋) / (2σ²). Its trajectories run at ``hyper ± ε`` from step 0, so the
  window's loss difference carries ε's whole effect on the run so far, and the estimate is
  unbiased for the gradient of the whole-run objective smoothed by one perturbation per run;
  PES's ξ instead sums one fresh draw per window, so its variance grows with the windows run.

The + and − particles of a pair, and every mode of one particle, see the same randomness: an
inner state carries its own key and the step index (common random numbers), so the estimate's
noise comes from the trajectory, not from a difference of two unrelated ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from shorthorizon.hypergrad.modes import MODES, check_mode, hypergradient


# --- inner problems and windowed estimators --------------------------------------------------
class Inner(Protocol):
    """An inner problem seen one window at a time.

    ``init(key)`` starts a fresh inner run (step 0) whose randomness is fixed by ``key``;
    ``unroll(hyper, state, steps)`` takes ``steps`` steps (a static int) and returns the mean
    per-step loss over them and the state after. ``unroll`` must be a deterministic function
    of its arguments (the state carries its key and step index), so that two calls from one
    state with different ``hyper`` see the same randomness. ``horizon`` is T, the length of
    one whole run."""

    horizon: int

    def init(self, key: jax.Array) -> Any: ...

    def unroll(self, hyper: Mapping[str, jax.Array], state: Any, steps: int) -> tuple[jax.Array, Any]: ...


class EstState(NamedTuple):
    """Per-particle inner states (leading axis: particles; for ES a second axis of 2, the + and
    − states), steps done in each particle's current run, and ``xi``, the perturbation state of
    the run (PES: the sum ξ of its draws; NRES: its one ε; unused by the others)."""

    inner: Any
    steps: jax.Array
    xi: jax.Array


def _window(inner: Inner, hyper, state, steps: int, checkpoint: int | None):
    """``inner.unroll`` over ``steps`` steps; with ``checkpoint`` = c, as ``steps / c``
    checkpointed chunks (``jax.checkpoint``): reverse mode then stores the states at chunk
    boundaries only and recomputes each chunk, memory ∝ steps / c + c instead of ∝ steps."""
    if not checkpoint or checkpoint >= steps:
        return inner.unroll(hyper, state, steps)
    if steps % checkpoint:
        raise ValueError(f"checkpoint chunk {checkpoint} does not divide the window of {steps} steps")
    chunk = jax.checkpoint(lambda s: inner.unroll(hyper, s, checkpoint))

    def body(s, _):
        loss, s = chunk(s)
        return s, loss

    state, losses = jax.lax.scan(body, state, None, length=steps // checkpoint)
    return jnp.mean(losses), state


def _where(mask, new, old):
    """Per-particle select: ``mask`` has one entry per leading index of every leaf."""
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b), new, old)


class _Windowed:
    """What every windowed estimator shares: the window length, particles at staggered
    phases, restarting a particle's inner run when it reaches the horizon, binding to an inner
    problem, its report name and the cost model."""

    # whether an estimate credits a window's loss to perturbations drawn in the earlier windows
    # of the particle's run (PES, NRES): then a particle must train its whole run itself and is
    # never restarted from another run's state (an online driver keeps them beside its run)
    persistent = False

    def _restart_xi(self, key, xi):
        """The perturbation state ``xi`` (one row per particle) a fresh inner run starts with:
        nothing drawn yet (NRES draws the run's perturbation here)."""
        return jnp.zeros_like(xi)

    def with_inner(self, inner: Inner) -> "_Windowed":
        """This estimator on the inner problem ``inner``."""
        return dataclasses.replace(self, inner=inner)

    def label(self, horizon: int) -> str:
        """Report name for runs of ``horizon`` steps: ``forward_full``, ``pes_K10``, ..."""
        if not self.truncation or self.truncation >= horizon:
            return f"{self.name}_full"
        return f"{self.name}_K{self.truncation}"

    def work(self, hypers: int) -> float:
        """One estimate in plain passes over its window (every particle and trajectory), for
        ``hypers`` hyperparameters: what progress bars and cost estimates weigh it by."""
        return self.particles * self._trajectories * self.step_work(hypers)

    def _check(self) -> int:
        horizon = self.inner.horizon
        k = self.truncation or horizon
        if k < 1 or horizon % k:
            raise ValueError(f"truncation {k} must be a positive divisor of the horizon {horizon}")
        if self.particles < 1:
            raise ValueError(f"particles must be at least 1, got {self.particles}")
        return k

    @property
    def windows(self) -> int:
        """Windows in one inner run: T / K."""
        return self.inner.horizon // self._check()

    @property
    def cost(self) -> int:
        """Inner steps one estimate takes: K per trajectory (an ES pair has two)."""
        return self.particles * self._trajectories * self._check()

    @property
    def init_cost(self) -> int:
        """Inner steps :meth:`init` takes to stagger the particles (none without ``stagger``)."""
        windows = sum(p * self.windows // self.particles for p in range(self.particles)) if self.stagger else 0
        return windows * self._trajectories * self._check()

    def _fresh(self, key, xi) -> tuple[Any, jax.Array]:
        """New inner runs for every particle, and the perturbation state (from ``xi``) they start with."""
        inner = jax.vmap(self.inner.init)(jax.random.split(key, self.particles))
        return self._pair(inner), self._restart_xi(jax.random.fold_in(key, 1), xi)

    def init(self, hyper: Mapping[str, jax.Array], key: jax.Array) -> EstState:
        """Fresh inner runs for every particle; with ``stagger``, particle p then runs
        ``p * windows // particles`` windows at ``hyper`` (perturbed as ``estimate`` would), so
        successive meta-steps do not all see the same phase of training."""
        self._check()
        init_key, stagger_key = jax.random.split(key)
        x = ravel_pytree(dict(hyper))[0]
        inner, xi = self._fresh(init_key, jnp.zeros((self.particles, x.shape[0]), x.dtype))
        state = EstState(inner, jnp.zeros(self.particles, jnp.int32), xi)
        if not self.stagger or self.particles == 1:
            return state
        target = jnp.arange(self.particles) * self.windows // self.particles

        def body(state, w):
            _, _, new = self.estimate(state, hyper, jax.random.fold_in(stagger_key, w))
            return _where(w < target, new, state), None

        return jax.lax.scan(body, state, jnp.arange(self.windows - 1))[0]

    def _advance(self, state: EstState, inner, xi, key) -> EstState:
        """Count the window's steps; particles whose run reached the horizon start a new one,
        with a fresh perturbation state."""
        steps = state.steps + self._check()
        done = steps >= self.inner.horizon

        # new runs are drawn only in windows where one ends (a real branch outside vmap)
        inner, xi = jax.lax.cond(jnp.any(done), lambda: _where(done, self._fresh(key, xi), (inner, xi)),
                                 lambda: (inner, xi))
        return EstState(inner, jnp.where(done, 0, steps), xi)

    def estimate(self, state: EstState, hyper: Mapping[str, jax.Array], key: jax.Array):
        """One window: ``(loss, gradient estimate, new state)``, both averaged over particles."""
        losses, grads, state = self.estimate_particles(state, hyper, key)
        return jnp.mean(losses), jax.tree.map(lambda g: jnp.mean(g, 0), grads), state


@dataclasses.dataclass(frozen=True)
class Truncated(_Windowed):
    """Derivative of each window's loss by ``mode`` (``"forward"``, ``"reverse"``, ``"fd"``),
    the window's start state held constant; averaged over ``particles``. ``truncation`` None
    (or T): the whole run, exact. ``checkpoint``: reverse-mode memory, see :func:`_window`."""

    inner: Inner | None = None
    mode: str = "forward"
    truncation: int | None = None
    particles: int = 1
    stagger: bool = True
    checkpoint: int | None = None
    fd_step: float = 1e-7
    _trajectories = 1  # per particle

    def __post_init__(self):
        check_mode(self.mode)

    @property
    def name(self) -> str:
        return self.mode

    def label(self, horizon: int) -> str:
        """As :meth:`_Windowed.label`; truncated reverse mode is called ``tbptt``."""
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

    def _pair(self, inner):
        return inner

    def estimate_particles(self, state: EstState, hyper: Mapping[str, jax.Array], key: jax.Array):
        """One window; every particle's loss and estimate (leading axis: particles)."""
        k = self._check()
        x, unravel = ravel_pytree(dict(hyper))

        def one(start):
            start = jax.lax.stop_gradient(start)
            return MODES[self.mode](lambda v: _window(self.inner, unravel(v), start, k, self.checkpoint),
                                    x, self.fd_step)

        losses, inner, grads = jax.vmap(one)(state.inner)
        return losses, jax.vmap(unravel)(grads), self._advance(state, inner, state.xi, key)


@dataclasses.dataclass(frozen=True)
class _Antithetic(_Windowed):
    """What the ES family shares: ``particles`` antithetic pairs, each running the window at
    ``hyper ± ε`` from its own two inner states, estimating ξ (L₊ − L₋) / (2σ²); ``sigma`` = σ
    is ε's standard deviation in the coordinates of ``hyper`` (e.g. log space). A member says
    which ε a window runs at and which ξ its loss difference is credited to (:meth:`_perturb`),
    and what perturbation state a fresh run starts with (:meth:`_restart_xi`)."""

    inner: Inner | None = None
    truncation: int | None = None
    particles: int = 1
    sigma: float = 0.01
    stagger: bool = True
    _trajectories = 2  # per particle: the + and the − run

    def _perturb(self, xi: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(ε, ξ)`` per particle from the run's perturbation state ``xi``: the window runs at
        ``hyper ± ε`` and credits ξ; ξ is the state the next window sees."""
        raise NotImplementedError

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
            return jax.vmap(lambda s, start: _window(self.inner, unravel(x + s * e), start, k, None))(signs, starts)

        losses, inner = jax.vmap(one)(state.inner, eps)  # losses (particles, 2)
        grads = xi * ((losses[:, 0] - losses[:, 1]) / (2 * self.sigma**2))[:, None]
        return losses.mean(1), jax.vmap(unravel)(grads), self._advance(state, inner, xi, reset_key)


@dataclasses.dataclass(frozen=True)
class ES(_Antithetic):
    """Antithetic evolution strategies over windows: a fresh ε every window; ``persistent=True``
    is PES, crediting the sum ξ of every ε drawn since the run started (module docstring)."""

    persistent: bool = False

    @property
    def name(self) -> str:
        return "pes" if self.persistent else "es"

    def _perturb(self, xi, key):
        eps = self._draw(key, xi)
        return eps, xi + eps if self.persistent else eps


@dataclasses.dataclass(frozen=True)
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

    def _restart_xi(self, key, xi):
        """A fresh run's one perturbation."""
        return self._draw(key, xi)

    def _perturb(self, xi, key):
        return xi, xi


class Objective(NamedTuple):
    """A plain meta-objective ``f(hyper, key)`` as a one-step inner problem: every estimator
    over it is a full-horizon estimator (ES: antithetic pairs of whole unrolls sharing ``key``)."""

    f: Callable[[Mapping[str, jax.Array], jax.Array], jax.Array]
    horizon: int = 1

    def init(self, key: jax.Array) -> jax.Array:
        return key

    def unroll(self, hyper, key: jax.Array, steps: int):
        return self.f(hyper, key), key


# name -> (class, the fields that name fixes): the one table of estimator names
ESTIMATORS = {
    "forward": (Truncated, {"mode": "forward"}),
    "reverse": (Truncated, {"mode": "reverse"}),
    "fd": (Truncated, {"mode": "fd"}),
    "es": (ES, {"persistent": False}),
    "pes": (ES, {"persistent": True}),
    "nres": (NRES, {}),
}


def make_estimator(name: str, inner: Inner | None = None, truncation: int | None = None, particles: int = 1,
                   sigma: float = 0.01, **options):
    """The estimator called ``name`` (a key of :data:`ESTIMATORS`), on ``inner`` if given (else
    bind one later with ``with_inner``); ``sigma`` goes to the classes that perturb, ``options``
    to its class (``stagger``, ``checkpoint``, ``fd_step``)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose one of: {', '.join(ESTIMATORS)}")
    cls, fixed = ESTIMATORS[name]
    if "sigma" in {f.name for f in dataclasses.fields(cls)}:
        options["sigma"] = sigma
    return cls(inner=inner, truncation=truncation, particles=particles, **fixed, **options)
