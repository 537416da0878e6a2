"""Offline meta-optimization (paper Section 3.2): fit an inverse-time decay schedule
lr_t = lr0 (1 + t / decay_steps)^(-decay_exponent) by re-training from a warm start.

The meta-objective for a horizon T is the mean training loss after T steps from the warm
start, on a fixed set of evaluation batches. This module composes a task, an optimizer (the
paper's: momentum) with an inverse-time schedule on its lr, :class:`~shorthorizon.hypergrad.Unroll` and
:class:`~shorthorizon.meta.smd.SMD`; every function takes the device arrays as arguments
(jit never bakes a dataset into a program) and the :class:`Unroll` as a static argument.

    >>> unroll = schedule_unroll(task, horizon=100)
    >>> problem = warm_start(task, train, key, eval_set, steps=50, hyper={"lr": 0.1, "momentum": 0.9})
    >>> losses = surface(unroll, problem, lr0s, decay_exponents, key, (100, 1000))  # vmapped in batches
    >>> state = smd(unroll, problem, meta_lr, bounds).init(to_raw(0.03, 1.0))
    >>> state, (objective, _, raw) = fit_chunk(unroll, problem, state, keys, meta_lr, bounds)

Windowed estimators (truncated forward/reverse, ES, PES) fit the same schedule from K-step
windows of whole runs of ``unroll.steps`` steps, restarted from the warm start when they end:

    >>> est = ("pes", 100, 4, 0.1)  # name, truncation K, particles, sigma
    >>> state, est_state = windowed_init(unroll, problem, to_raw(0.03, 1.0), key, meta_lr, bounds, est)
    >>> (state, est_state), (window_loss, _, raw) = windowed_chunk(unroll, problem, state, est_state, keys,
    ...                                                             meta_lr, bounds, est)
"""

from __future__ import annotations

from functools import partial
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from shorthorizon import optim
from shorthorizon.hypergrad import (Data, EstState, TrainingRun, Unroll, evaluate, make_estimator, mean_loss,
                                    model_key, run_keys, stochastic_batches, train)
from shorthorizon.meta.smd import SMD, SMDState, meta_steps
from shorthorizon.optim import OptState
from shorthorizon.tasks import ModelState, Params, Task

# Names of the fitted hyperparameters in SMD's log space.
LOG_LR = "log_lr"
LOG_DECAY_EXPONENT = "log_decay_exponent"


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


def to_raw(lr0, decay_exponent) -> dict:
    """(lr0, decay_exponent) -> SMD's log space (strongly typed, so every chunk of meta-steps
    reuses one compiled program)."""
    return {LOG_LR: jnp.log(jnp.asarray(lr0, float)), LOG_DECAY_EXPONENT: jnp.log(jnp.asarray(decay_exponent, float))}


def from_raw(raw: Mapping[str, jax.Array]) -> dict:
    """SMD's log space -> the optimizer's hyperparameters ``lr`` (= lr0) and ``decay_exponent``."""
    return {"lr": jnp.exp(raw[LOG_LR]), "decay_exponent": jnp.exp(raw[LOG_DECAY_EXPONENT])}


def schedule_unroll(task: Task, horizon: int, batch_size: int = 100, decay_steps: float = 5000.0,
                    optimizer: str = "momentum") -> Unroll:
    """``horizon`` steps of ``optimizer`` (a name in ``optim.OPTIMIZERS``; the paper's: the heavy
    ball) with the inverse-time schedule on its lr, a fresh batch each step."""
    return Unroll(task, optim.make_optimizer(optimizer, optim.inverse_time(decay_steps)), horizon, batch_size,
                  "stochastic")


def epoch_batches(data: Data, key: jax.Array, count: int, batch_size: int) -> Data:
    """``count`` batches drawn without replacement, stacked (count, batch_size, ...): with
    ``count * batch_size`` equal to the split's size, one shuffled epoch."""
    if count * batch_size > data.x.shape[0]:
        raise ValueError(f"{count} batches of {batch_size} exceed the {data.x.shape[0]} examples")
    idx = jax.random.permutation(key, data.x.shape[0])[: count * batch_size].reshape(count, batch_size)
    return Data(data.x[idx], data.y[idx])


@partial(jax.jit, static_argnames=("task", "steps", "batch_size", "optimizer"))
def warm_start(task: Task, train_data: Data, key: jax.Array, eval_set: Data, steps: int, hyper: Mapping[str, float],
               batch_size: int = 100, optimizer: str = "momentum") -> Problem:
    """Fresh weights from ``key``, then ``steps`` steps of ``optimizer`` (a name in
    ``optim.OPTIMIZERS``) with the constant hyperparameters ``hyper`` (the paper's: ``lr`` 0.1,
    ``momentum`` 0.9), which the horizons keep but for the scheduled lr."""
    init_key, batch_key = jax.random.split(key)
    params = task.init(init_key)
    optimizer = optim.make_optimizer(optimizer)
    state = optimizer.init(params, hyper)
    params, state, model_state, _ = train(task, optimizer, params, state,
                                          stochastic_batches(train_data, batch_key, steps, batch_size), steps,
                                          model_state=task.init_state(init_key), key=model_key(batch_key))
    # the horizons' optimizer adds the inverse-time schedule, whose exponent the state then holds
    state = state._replace(step=jnp.zeros_like(state.step),
                           hyper={**state.hyper, "decay_exponent": jnp.zeros_like(state.hyper["lr"])})
    return Problem(params, state, train_data, eval_set, model_state)


@partial(jax.jit, static_argnames="unroll")
def meta_objective(unroll: Unroll, problem: Problem, hyper: Mapping[str, jax.Array], key: jax.Array) -> jax.Array:
    """Mean training loss on ``problem.eval_set`` after ``unroll.steps`` steps with ``hyper``;
    ``key`` draws the training batches."""
    return unroll.objective(hyper, problem.params, problem.state, problem.train, key, problem.eval_set,
                            problem.model_state)


def meta_objectives(unroll: Unroll, problem: Problem, hyper: Mapping[str, jax.Array], key: jax.Array,
                    horizons: tuple[int, ...]) -> jax.Array:
    """:func:`meta_objective` at each of the increasing ``horizons`` (``unroll.steps`` is not
    used) from one unroll: an unroll draws the batch of step t from ``key`` and t alone, so
    the first T steps of a longer unroll are the T-step unroll."""
    train_key, _, train_model_key, eval_model_key = run_keys(key)  # the streams of Unroll.run
    params, state, model_state = problem.params, problem.state.with_hyper(hyper), problem.model_state
    losses = []
    for start, stop in zip((0, *horizons[:-1]), horizons):
        params, state, model_state, _ = train(
            unroll.task, unroll.optimizer, params, state,
            stochastic_batches(problem.train, train_key, stop - start, unroll.batch_size, start),
            stop - start, model_state=model_state, key=train_model_key)
        losses.append(mean_loss(unroll.task, params, problem.eval_set, model_state, eval_model_key))
    return jnp.stack(losses)


@partial(jax.jit, static_argnames=("unroll", "horizons", "batch_size"))
def surface(unroll: Unroll, problem: Problem, lr0: jax.Array, decay_exponent: jax.Array, key: jax.Array,
            horizons: tuple[int, ...], batch_size: int = 16) -> jax.Array:
    """Meta-objective at each horizon (rows) for each (lr0, decay_exponent) pair (columns),
    every pair trained on the same batches, drawn from ``key`` (common random numbers: the
    surface's differences are the settings', not the batches'; and :func:`meta_objective` with
    ``key`` gives the same value for any one pair). Pairs are vmapped ``batch_size`` at a time.
    Shared batches also let the pairs share work: the first layer's input is the same for every
    pair, so its forward product is one matmul (batch x inputs) @ (inputs x pairs*units)
    instead of a batch of small ones, and on the paper's MLP that layer holds most of the
    FLOPs. Its weight gradient stays a batched product (JAX's transpose of the vmapped dot), as
    do the smaller layers; a plain step's large first-layer matmul already runs near the CPU's
    matmul speed, so vmapping adds little there (benchmarks/surface_speed.py)."""
    def one(pair):
        a, b = pair
        return meta_objectives(unroll, problem, {"lr": a, "decay_exponent": b}, key, horizons)

    return jax.lax.map(one, (lr0, decay_exponent), batch_size=batch_size).T


def _meta_lr(meta_lr: float | tuple[float, int]):
    """Adam's step: a constant, or ``(peak, steps)``: cosine-decayed from ``peak`` to 1% of it
    over ``steps`` meta-steps (a noisy estimate then settles instead of jittering at the end)."""
    if isinstance(meta_lr, tuple):
        return optax.cosine_decay_schedule(meta_lr[0], meta_lr[1], alpha=0.01)
    return meta_lr


def smd(unroll: Unroll, problem: Problem, meta_lr: float | tuple[float, int],
        bounds: tuple[tuple[str, float, float], ...],
        estimator: tuple[str, int, float] = ("forward", 1, 0.01)) -> SMD:
    """SMD on the log-space schedule hyperparameters of the loss at ``unroll.steps``;
    ``meta_lr`` a number or ``(peak, steps)`` (see :func:`_meta_lr`); ``bounds`` as hashable
    ``(name, low, high)`` triples in log space; ``estimator`` as (name, particles, sigma)."""
    return SMD(lambda raw, key: meta_objective(unroll, problem, from_raw(raw), key),
               meta_lr=_meta_lr(meta_lr), bounds={k: (lo, hi) for k, lo, hi in bounds}, estimator=estimator[0],
               particles=estimator[1], sigma=estimator[2])


@partial(jax.jit, static_argnames=("unroll", "meta_lr", "bounds", "estimator"))
def fit_chunk(unroll: Unroll, problem: Problem, state: SMDState, keys: jax.Array, meta_lr: float | tuple[float, int],
              bounds: tuple[tuple[str, float, float], ...], estimator: tuple[str, int, float] = ("forward", 1, 0.01)):
    """``len(keys)`` SMD meta-steps (one fresh key each) under one ``lax.scan``. Returns the
    new state and the per-step (objective, hypergradient, raw before the step)."""
    return smd(unroll, problem, meta_lr, bounds, estimator).run(state, keys)


def windowed_estimator(unroll: Unroll, problem: Problem, estimator: tuple[str, int, int, float]):
    """``estimator`` = (name, truncation K, particles, sigma) over whole runs of ``unroll.steps``
    steps of ``unroll``'s optimizer from the warm start, in SMD's log space
    (:class:`~shorthorizon.hypergrad.TrainingRun`). Its whole-run objective is the mean
    training loss over the run (each window's minibatch losses), not the loss at the horizon.
    Built inside the jitted functions below, so the training split is an argument of the
    program, not a constant baked into it."""
    name, truncation, particles, sigma = estimator
    inner = TrainingRun(unroll.task, unroll.optimizer, problem.train, problem.params, problem.state, unroll.steps,
                        unroll.batch_size, from_raw, problem.model_state)
    return make_estimator(name, inner, truncation, particles, sigma)


@partial(jax.jit, static_argnames=("unroll", "meta_lr", "bounds", "estimator"))
def windowed_init(unroll: Unroll, problem: Problem, raw: Mapping[str, jax.Array], key: jax.Array,
                  meta_lr: float | tuple[float, int], bounds: tuple[tuple[str, float, float], ...],
                  estimator: tuple[str, int, int, float]) -> tuple[SMDState, EstState]:
    """SMD's state at ``raw`` and the estimator's particles, staggered over the run's windows."""
    state = smd(unroll, problem, meta_lr, bounds).init(raw)
    return state, windowed_estimator(unroll, problem, estimator).init(state.raw, key)


@partial(jax.jit, static_argnames=("unroll", "meta_lr", "bounds", "estimator"))
def windowed_chunk(unroll: Unroll, problem: Problem, state: SMDState, est_state: EstState, keys: jax.Array,
                   meta_lr: float | tuple[float, int], bounds: tuple[tuple[str, float, float], ...],
                   estimator: tuple[str, int, int, float]):
    """``len(keys)`` meta-steps, one window each (:func:`~shorthorizon.meta.smd.meta_steps`):
    the same SMD update (clipping, Adam, bounds) as :func:`fit_chunk`, on the windowed
    estimator's hypergradients. Returns ``((state, est_state), (window loss, hypergradient,
    raw before the step))``."""
    return meta_steps(windowed_estimator(unroll, problem, estimator), smd(unroll, problem, meta_lr, bounds),
                      state, est_state, keys)


@partial(jax.jit, static_argnames=("unroll", "points"))
def long_run(unroll: Unroll, problem: Problem, hyper: Mapping[str, jax.Array], key: jax.Array, test: Data,
             points: int) -> dict:
    """Train ``unroll.steps`` steps with ``hyper`` and record, at ``points`` evenly spaced
    steps (and at the start), the training loss on the evaluation batches and the test error."""
    if unroll.steps % points:
        raise ValueError(f"{points} curve points do not divide {unroll.steps} steps")
    interval = unroll.steps // points
    task, batch_size = unroll.task, unroll.batch_size
    state = problem.state.with_hyper(hyper)
    train_model_key, eval_model_key = jax.random.split(model_key(key))

    def measure(params, model_state):
        return (mean_loss(task, params, problem.eval_set, model_state, eval_model_key),
                evaluate(task, params, test, model_state=model_state)["error"])

    def body(carry, i):
        params, state, model_state = carry
        params, state, model_state, _ = train(
            task, unroll.optimizer, params, state,
            stochastic_batches(problem.train, key, interval, batch_size, i * interval), interval,
            model_state=model_state, key=train_model_key)
        return (params, state, model_state), measure(params, model_state)

    _, (loss, error) = jax.lax.scan(body, (problem.params, state, problem.model_state), jnp.arange(points))
    loss0, error0 = measure(problem.params, problem.model_state)
    return {"step": jnp.arange(points + 1) * interval,
            "train_loss": jnp.concatenate([loss0[None], loss]),
            "test_error": jnp.concatenate([error0[None], error])}
