"""What every estimator shares: the inner problem it sees (:class:`Inner`), its state
(:class:`EstState`) and the interface it offers, with the window machinery behind it
(:class:`Estimator`)."""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


class Inner(Protocol):
    """An inner problem seen one window at a time.

    ``init(key)`` starts a fresh inner run (step 0) whose randomness is fixed by ``key``;
    ``unroll(hyper, state, steps)`` takes ``steps`` steps (a static int) and returns the mean
    per-step loss over them and the state after. ``unroll`` must be a deterministic function
    of its arguments (the state carries its key and step index), so that two calls from one
    state with different ``hyper`` see the same randomness. ``horizon`` is T, the length of
    one whole run."""

    @property
    def horizon(self) -> int: ...  # read-only: NamedTuples are inner problems

    def init(self, key: jax.Array) -> Any: ...

    def unroll(self, hyper: Mapping[str, jax.Array], state: Any, steps: int) -> tuple[jax.Array, Any]: ...


class EstState(NamedTuple):
    """Per-particle inner states (leading axis: particles; for ES a second axis of 2, the + and
    − states), steps done in each particle's current run, and ``xi``, the perturbation state of
    the run (PES: the sum ξ of its draws; NRES: its one ε; unused by the others)."""

    inner: Any
    steps: jax.Array
    xi: jax.Array


class Objective(NamedTuple):
    """A plain meta-objective ``f(hyper, key)`` as a one-step inner problem: every estimator
    over it is a full-horizon estimator (ES: antithetic pairs of whole unrolls sharing ``key``)."""

    f: Callable[[Mapping[str, jax.Array], jax.Array], jax.Array]
    horizon: int = 1

    def init(self, key: jax.Array) -> jax.Array:
        return key

    def unroll(self, hyper, key: jax.Array, steps: int):
        return self.f(hyper, key), key


def window(inner: Inner, hyper, state, steps: int, checkpoint: int | None):
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


class Estimator(abc.ABC):
    """What every estimator offers, and the window machinery they all share: the window length,
    particles at staggered phases, restarting a particle's inner run when it reaches the
    horizon, binding to an inner problem, its report name and the cost model.

    An ABC rather than a Protocol: every estimator runs its particles over windows this way, so
    it inherits the machinery from here, and ``ABCMeta`` refuses to build one that lacks a
    method or a report attribute (the test that registers an estimator sees it) instead of it
    failing inside a trace. (:class:`Inner` is a Protocol: tasks implement it without
    inheriting.) A family is a frozen dataclass with the fields annotated here (``with_inner``
    replaces ``inner``); each estimator says how the report shows it (``color``,
    ``description``) and whether the experiments run it by default (``windowed``)."""

    inner: Inner | None  # the problem, bound by with_inner
    truncation: int | None  # K, steps per window; None: the whole run
    particles: int  # inner runs in flight (ES: antithetic pairs), averaged over
    stagger: bool  # whether init spreads the particles over the run's phases
    _trajectories: ClassVar[int]  # inner runs per particle (an antithetic pair: 2)
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field]]  # every family is a dataclass
    # whether an estimate credits a window's loss to perturbations drawn in the earlier windows
    # of the particle's run (PES, NRES): then a particle must train its whole run itself and is
    # never restarted from another run's state (an online driver keeps them beside its run)
    persistent: bool = False

    if TYPE_CHECKING:  # every family's dataclass takes these keywords (make_estimator passes them)
        def __init__(self, *, inner: Inner | None = None, truncation: int | None = None, particles: int = 1,
                     **fields: Any) -> None: ...

    @property
    @abc.abstractmethod
    def name(self) -> str: ...  # its key in ESTIMATORS, the start of its label

    @property
    @abc.abstractmethod
    def color(self) -> str: ...  # its lines' colour in the report's figures

    @property
    @abc.abstractmethod
    def description(self) -> str: ...  # for the report: a sentence starting with its name (a shared one said once)

    @abc.abstractmethod
    def step_work(self, hypers: int) -> float: ...  # one step of one trajectory in plain steps, for `hypers`

    @abc.abstractmethod
    def objective_gradient(self, f: Callable[[Mapping[str, jax.Array], jax.Array], jax.Array],
                           hyper: Mapping[str, jax.Array], key: jax.Array) -> tuple[jax.Array, dict]:
        """``(f(hyper, key), this estimator's estimate of its gradient)`` for a plain
        meta-objective ``f``: what :class:`~shorthorizon.meta.smd.SMD` calls."""

    @abc.abstractmethod
    def estimate_particles(self, state: EstState, hyper: Mapping[str, jax.Array],
                           key: jax.Array) -> tuple[jax.Array, dict, EstState]:
        """One window; every particle's loss and estimate (leading axis: particles), and the new state."""

    @property
    def windowed(self) -> bool:
        """Whether the experiments that compare estimators over windows run it by default (:data:`WINDOWED`)."""
        return True

    def _pair(self, inner):
        """A particle's inner states from one fresh inner state: itself (ES: the + and − copies)."""
        return inner

    def _restart_xi(self, key, xi):
        """The perturbation state ``xi`` (one row per particle) a fresh inner run starts with:
        nothing drawn yet (NRES draws the run's perturbation here)."""
        return jnp.zeros_like(xi)

    def with_inner(self, inner: Inner) -> Estimator:
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

    def estimate(self, state: EstState, hyper: Mapping[str, jax.Array],
                 key: jax.Array) -> tuple[jax.Array, dict, EstState]:
        """One window: ``(loss, gradient estimate, new state)``, both averaged over particles."""
        losses, grads, state = self.estimate_particles(state, hyper, key)
        return jnp.mean(losses), jax.tree.map(lambda g: jnp.mean(g, 0), grads), state
