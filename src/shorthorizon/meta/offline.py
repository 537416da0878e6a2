"""Offline meta-optimization (paper Section 3.2): fit an inverse-time decay schedule
lr_t = lr0 (1 + t / decay_steps)^(-decay_exponent) by re-training from a warm start.

The meta-objective for a horizon T is the mean training loss after T steps from the warm
start, on a fixed set of evaluation batches. :class:`Offline` is the problem's static half (task,
optimizer with the schedule, batch size, the box SMD searches, SMD's settings and estimator),
built once and passed down; :class:`Problem` its arrays (warm start, training split, evaluation
batches). Every function below takes both, the first as a static argument of ``jit`` (so a
dataset is an argument of each program, never a constant baked into it):

    >>> offline = Offline(task, optim.momentum(optim.inverse_time(5000.0)))
    >>> problem = warm_start(offline, train, key, eval_set, steps=50, hyper={"lr": 0.1, "momentum": 0.9})
    >>> losses = surface(offline, problem, {"lr": lr0s, "decay_exponent": exponents}, key, (100, 1000))
    >>> state = offline.smd(problem, 100).init(offline.space.to_raw({"lr": 0.03, "decay_exponent": 1.0}))
    >>> state, (objective, _, raw) = fit_chunk(offline, problem, state, keys, 100)

Windowed estimators (truncated forward/reverse, ES, PES) fit the same schedule from K-step
windows of whole runs of T steps, restarted from the warm start when they end:

    >>> pes = make_estimator("pes", truncation=100, particles=4, sigma=0.1)
    >>> state, est_state = windowed_init(offline, problem, pes, raw, key, 3000)
    >>> (state, est_state), (window_loss, _, raw) = windowed_chunk(offline, problem, pes, state, est_state, keys, 3000)
"""

from __future__ import annotations

from functools import partial
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

from shorthorizon.hypergrad import (Data, EstState, Estimator, TrainingRun, Truncated, Unroll, evaluate, mean_loss,
                                    model_key, run_keys, stochastic_batches, train)
from shorthorizon.meta.smd import SMD, SMDState, cosine
from shorthorizon.optim import LogSpace, Optimizer, OptState
from shorthorizon.tasks import ModelState, Params, Task

# The paper's box of (lr0, decay_exponent): surface samples and SMD's bounds.
PAPER_BOX = LogSpace((("lr", 1e-3, 10**-0.3), ("decay_exponent", 1e-2, 10**2.3)))


class Problem(NamedTuple):
    """What every horizon starts from: the warm-started weights and optimizer state (step
    counter reset, so the schedule's t counts from the warm start), the training split, the
    fixed evaluation batches of the meta-objective, and the model state (``()`` for a
    stateless task)."""

    params: Params
    state: OptState
    train: Data
    eval_set: Data
    model_state: ModelState = ()


class Offline(NamedTuple):
    """The offline problem's static half; hashable, so it is a static argument of the jitted
    functions. ``optimizer`` carries the inverse-time schedule on its lr (the warm start runs
    it without). ``space``: SMD's log space of ``lr`` (= lr0) and ``decay_exponent`` and its
    box. ``meta_lr``: Adam's step, a number or ``(peak, steps)`` for :func:`~shorthorizon.meta.smd.cosine`.
    ``estimator``: the full-horizon fits' hypergradients (an unbound estimator object)."""

    task: Task
    optimizer: Optimizer
    batch_size: int = 100
    space: LogSpace = PAPER_BOX
    meta_lr: float | tuple[float, int] = 0.01
    clip: float = 10.0
    estimator: Estimator = Truncated(mode="forward")

    def unroll(self, horizon: int) -> Unroll:
        """``horizon`` steps with the schedule, a fresh batch each step."""
        return Unroll(self.task, self.optimizer, horizon, self.batch_size, "stochastic")

    def smd(self, problem: Problem, horizon: int) -> SMD:
        """SMD on the log-space schedule of the loss at ``horizon``."""
        meta_lr = cosine(*self.meta_lr) if isinstance(self.meta_lr, tuple) else self.meta_lr
        return SMD(lambda raw, key: meta_objective(self, problem, self.space.from_raw(raw), key, horizon),
                   meta_lr, self.clip, self.space.bounds(), self.estimator)

    def windowed(self, problem: Problem, estimator, horizon: int):
        """``estimator`` over whole runs of ``horizon`` steps from the warm start, in SMD's log
        space (:class:`~shorthorizon.hypergrad.TrainingRun`). Its whole-run objective is the
        mean training loss over the run (each window's minibatch losses), not the loss at the
        horizon. Built inside the jitted functions, so the training split is an argument of the
        program."""
        return estimator.with_inner(TrainingRun(self.task, self.optimizer, problem.train, problem.params,
                                                problem.state, horizon, self.batch_size, self.space.from_raw,
                                                problem.model_state))


@partial(jax.jit, static_argnames=("offline", "steps"))
def warm_start(offline: Offline, train_data: Data, key: jax.Array, eval_set: Data, steps: int,
               hyper: Mapping[str, float]) -> Problem:
    """Fresh weights from ``key``, then ``steps`` steps of the optimizer without its schedule at
    the constant hyperparameters ``hyper`` (the paper's: ``lr`` 0.1, ``momentum`` 0.9), which
    the horizons keep but for the scheduled lr."""
    init_key, batch_key = jax.random.split(key)
    params = offline.task.init(init_key)
    optimizer = offline.optimizer._replace(schedule=None)
    state = optimizer.init(params, hyper)
    model_state = offline.task.init_state(init_key)
    if steps:  # no warm start (0 steps): a scan of none would still index an empty batch stream while tracing
        params, state, model_state, _ = train(offline.task, optimizer, params, state,
                                              stochastic_batches(train_data, batch_key, steps, offline.batch_size),
                                              steps, model_state=model_state, key=model_key(batch_key))
    # the horizons' optimizer adds the schedule, whose hyperparameters the state then holds (at
    # their defaults until a horizon sets them)
    defaults = offline.optimizer.schedule.defaults
    state = state._replace(step=jnp.zeros_like(state.step),
                           hyper={**state.hyper, **{k: jnp.full_like(state.hyper["lr"], v) for k, v in defaults.items()}})
    return Problem(params, state, train_data, eval_set, model_state)


@partial(jax.jit, static_argnames=("offline", "horizon"))
def meta_objective(offline: Offline, problem: Problem, hyper: Mapping[str, jax.Array], key: jax.Array,
                   horizon: int) -> jax.Array:
    """Mean training loss on ``problem.eval_set`` after ``horizon`` steps with ``hyper``;
    ``key`` draws the training batches."""
    return offline.unroll(horizon).objective(hyper, problem.params, problem.state, problem.train, key,
                                             problem.eval_set, problem.model_state)


def meta_objectives(offline: Offline, problem: Problem, hyper: Mapping[str, jax.Array], key: jax.Array,
                    horizons: tuple[int, ...]) -> jax.Array:
    """:func:`meta_objective` at each of the increasing ``horizons`` from one unroll: an unroll
    draws the batch of step t from ``key`` and t alone, so the first T steps of a longer
    unroll are the T-step unroll."""
    train_key, _, train_model_key, eval_model_key = run_keys(key)  # the streams of Unroll.run
    params, state, model_state = problem.params, problem.state.with_hyper(hyper), problem.model_state
    losses = []
    for start, stop in zip((0, *horizons[:-1]), horizons):
        params, state, model_state, _ = train(
            offline.task, offline.optimizer, params, state,
            stochastic_batches(problem.train, train_key, stop - start, offline.batch_size, start),
            stop - start, model_state=model_state, key=train_model_key)
        losses.append(mean_loss(offline.task, params, problem.eval_set, model_state, eval_model_key))
    return jnp.stack(losses)


@partial(jax.jit, static_argnames=("offline", "horizons", "batch_size"))
def surface(offline: Offline, problem: Problem, points: Mapping[str, jax.Array], key: jax.Array,
            horizons: tuple[int, ...], batch_size: int = 16) -> jax.Array:
    """Meta-objective at each horizon (rows) for each point (columns; ``points``: hyperparameter
    name -> values, e.g. lr and decay_exponent), every point trained on the same batches, drawn from ``key`` (common random numbers: the
    surface's differences are the settings', not the batches'; and :func:`meta_objective` with
    ``key`` gives the same value for any one pair). Pairs are vmapped ``batch_size`` at a time.
    Shared batches also let the pairs share work: the first layer's input is the same for every
    pair, so its forward product is one matmul (batch x inputs) @ (inputs x pairs*units)
    instead of a batch of small ones, and on the paper's MLP that layer holds most of the
    FLOPs. Its weight gradient stays a batched product (JAX's transpose of the vmapped dot), as
    do the smaller layers (benchmarks/surface_speed.py)."""
    return jax.lax.map(lambda hyper: meta_objectives(offline, problem, hyper, key, horizons), dict(points),
                       batch_size=batch_size).T


@partial(jax.jit, static_argnames=("offline", "horizon"))
def fit_chunk(offline: Offline, problem: Problem, state: SMDState, keys: jax.Array, horizon: int):
    """``len(keys)`` SMD meta-steps (one fresh key each) of the loss at ``horizon`` under one
    ``lax.scan``. Returns the new state and the per-step (objective, hypergradient, raw before
    the step)."""
    return offline.smd(problem, horizon).run(state, keys)


@partial(jax.jit, static_argnames=("offline", "estimator", "horizon"))
def windowed_init(offline: Offline, problem: Problem, estimator, raw: Mapping[str, jax.Array], key: jax.Array,
                  horizon: int) -> tuple[SMDState, EstState]:
    """SMD's state at ``raw`` and the windowed ``estimator``'s particles, staggered over the
    run's windows."""
    state = offline.smd(problem, horizon).init(raw)
    return state, offline.windowed(problem, estimator, horizon).init(state.raw, key)


@partial(jax.jit, static_argnames=("offline", "estimator", "horizon"))
def windowed_chunk(offline: Offline, problem: Problem, estimator, state: SMDState, est_state: EstState,
                   keys: jax.Array, horizon: int):
    """``len(keys)`` meta-steps, one window each (:meth:`~shorthorizon.meta.smd.SMD.run_windowed`):
    the same SMD update (clipping, Adam, bounds) as :func:`fit_chunk`, on the windowed
    estimator's hypergradients. Returns ``((state, est_state), (window loss, hypergradient,
    raw before the step))``."""
    return offline.smd(problem, horizon).run_windowed(offline.windowed(problem, estimator, horizon), state,
                                                      est_state, keys)


@partial(jax.jit, static_argnames=("offline",))
def start_loss(offline: Offline, problem: Problem, key: jax.Array) -> jax.Array:
    """The warm start's mean training loss on the evaluation batches: what every horizon starts
    from (:func:`long_run`'s first point with the same ``key``), the scale divergence is judged on."""
    _, eval_model_key = jax.random.split(model_key(key))
    return mean_loss(offline.task, problem.params, problem.eval_set, problem.model_state, eval_model_key)


@partial(jax.jit, static_argnames=("offline", "horizon", "points"))
def long_run(offline: Offline, problem: Problem, hyper: Mapping[str, jax.Array], key: jax.Array, test: Data,
             horizon: int, points: int) -> dict:
    """Train ``horizon`` steps with ``hyper`` and record, at ``points`` evenly spaced steps (and
    at the start), the training loss on the evaluation batches and the test error."""
    if horizon % points:
        raise ValueError(f"{points} curve points do not divide {horizon} steps")
    interval = horizon // points
    task = offline.task
    state = problem.state.with_hyper(hyper)
    train_model_key, eval_model_key = jax.random.split(model_key(key))

    def measure(params, model_state):
        return (mean_loss(task, params, problem.eval_set, model_state, eval_model_key),
                evaluate(task, params, test, model_state=model_state)["error"])

    def body(carry, i):
        params, state, model_state = carry
        params, state, model_state, _ = train(
            task, offline.optimizer, params, state,
            stochastic_batches(problem.train, key, interval, offline.batch_size, i * interval), interval,
            model_state=model_state, key=train_model_key)
        return (params, state, model_state), measure(params, model_state)

    _, (loss, error) = jax.lax.scan(body, (problem.params, state, problem.model_state), jnp.arange(points))
    loss0, error0 = measure(problem.params, problem.model_state)
    return {"step": jnp.arange(points + 1) * interval,
            "train_loss": jnp.concatenate([loss0[None], loss]),
            "test_error": jnp.concatenate([error0[None], error])}
