"""Unrolled training under ``lax.scan`` and the meta-objective it defines.

The whole T-step unroll is one traced function of the hyperparameters, so forward mode
(``jax.jvp``), reverse mode (``jax.grad``) and finite differences all see the same
computation. Batches are drawn inside the scan from the training set held on the device,
with a PRNG key folded with the step index: the same key gives the same batches. A task's own
randomness (dropout) comes from a second stream of the same key (:func:`model_key`), folded
with the optimizer's step count, so the hyperparameters never change which batches or masks a
step sees. A dataset is any pytree whose leaves share a leading example axis (:class:`Data`:
images and labels).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from shorthorizon.optim import Hyper, Optimizer, OptState
from shorthorizon.tasks import ModelState, Params, Task

LOOKAHEADS = ("stochastic", "deterministic")


class Data(NamedTuple):
    """Images (N, H, W, C) and integer labels (N,), on the device."""

    x: jax.Array
    y: jax.Array


# fold_in data of the model-randomness stream: far from any step index, and from split()'s counters
_MODEL_STREAM = 0x7FFFFFFF


def model_key(key: jax.Array) -> jax.Array:
    """The key of a run's model randomness (dropout), apart from its batch stream."""
    return jax.random.fold_in(key, _MODEL_STREAM)


def run_keys(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The four streams of an :class:`Unroll` run from ``key``: training batches, evaluation
    batches, model randomness in training and in the objective."""
    train_key, eval_key = jax.random.split(key)
    return train_key, eval_key, *jax.random.split(model_key(key))


def _size(data) -> int:
    return jax.tree.leaves(data)[0].shape[0]


def _take(data, idx):
    return jax.tree.map(lambda a: a[idx], data)


def _indices(key: jax.Array, size: int, batch_size: int) -> jax.Array:
    """Indices of a batch drawn uniformly with replacement from ``size`` examples; int32 under
    ``jax.enable_x64`` too, whose int64 draws would be other indices from the same key."""
    return jax.random.randint(key, (batch_size,), 0, size, jnp.int32)


def sample_batch(data: Data, key: jax.Array, batch_size: int) -> Data:
    """A batch drawn uniformly with replacement."""
    return _take(data, _indices(key, _size(data), batch_size))


def stochastic_batches(data: Data, key: jax.Array, steps: int, batch_size: int,
                       start: int = 0) -> Callable[[jax.Array], Data]:
    """``batch_at(t)`` for t = 0..steps-1: the batch of global step ``start + t`` of the stream
    drawn from ``key``, i.e. ``sample_batch(data, fold_in(key, start + t), batch_size)``. The
    indices of every step are drawn up front, vectorized: inside a ``lax.scan`` loop that is
    ~1.5x faster than drawing them step by step."""
    idx = jax.vmap(lambda t: _indices(jax.random.fold_in(key, t), _size(data), batch_size))(
        start + jnp.arange(steps))
    return lambda t: _take(data, idx[t])


def batches(data: Data, key: jax.Array, count: int, batch_size: int, replace: bool = True) -> Data:
    """``count`` batches stacked as (count, batch_size, ...): an evaluation set. With
    replacement, each batch is :func:`sample_batch` of its own key; without, one shuffle of the
    split is cut into batches (``count * batch_size`` equal to the split's size: one epoch)."""
    if replace:
        return jax.vmap(lambda k: sample_batch(data, k, batch_size))(jax.random.split(key, count))
    if count * batch_size > _size(data):
        raise ValueError(f"{count} batches of {batch_size} exceed the {_size(data)} examples")
    return _take(data, jax.random.permutation(key, _size(data))[: count * batch_size].reshape(count, batch_size))


def scalar_loss(task: Task, params: Params, model_state: ModelState, batch, key: jax.Array | None):
    """``task.loss``, checked to be a scalar: ``(loss, (model_state, metrics))``."""
    loss, aux = task.loss(params, model_state, batch, key)
    if jnp.shape(loss) != ():
        raise ValueError(f"task {task.name!r}: its loss has shape {jnp.shape(loss)}, not a scalar; "
                         "return the mean over the batch (e.g. jnp.mean of the per-example losses)")
    return loss, aux


def mean_loss(task: Task, params: Params, stacked, model_state: ModelState = (), key: jax.Array | None = None):
    """Mean training-mode loss over stacked batches, one batch at a time (bounded memory);
    batch i draws the task's randomness from ``fold_in(key, i)`` (``key`` None: a
    deterministic task)."""
    count = _size(stacked)
    keys = None if key is None else jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(count))
    return jnp.mean(jax.lax.map(lambda b: scalar_loss(task, params, model_state, b[0], b[1])[0], (stacked, keys)))


def evaluate(task: Task, params: Params, data, batch_size: int = 1000, model_state: ModelState = ()) -> dict:
    """``task.evaluate``'s metrics (``"loss"``, ``"error"``) averaged over a whole split, in
    chunks of ``batch_size`` (the remainder beyond a whole number of chunks is left out)."""
    n = (_size(data) // batch_size) * batch_size
    stacked = jax.tree.map(lambda a: a[:n].reshape(-1, batch_size, *a.shape[1:]), data)
    metrics = jax.lax.map(lambda b: task.evaluate(params, model_state, b), stacked)
    return jax.tree.map(jnp.mean, metrics)


def train(
    task: Task,
    optimizer: Optimizer,
    params: Params,
    state: OptState,
    batch_at: Callable[[jax.Array], Data],
    steps: int,
    unroll: int | bool = 1,
    *,
    model_state: ModelState = (),
    key: jax.Array | None = None,
) -> tuple[Params, OptState, ModelState, jax.Array]:
    """``steps`` optimizer steps on ``batch_at(t)``; returns final params, optimizer state,
    model state and the training loss of each step's batch (before that step's update).
    The task's randomness at a step is ``fold_in(key, state.step)`` (``key`` None: a
    deterministic task). ``unroll`` is ``lax.scan``'s: how many steps each loop iteration
    holds (``True``: all)."""
    loss_and_grad = jax.value_and_grad(partial(scalar_loss, task), has_aux=True)

    def body(carry, t):
        params, state, model_state = carry
        step_key = None if key is None else jax.random.fold_in(key, state.step)
        (loss, (model_state, _)), grads = loss_and_grad(params, model_state, batch_at(t), step_key)
        params, state = optimizer.update(grads, state, params)
        return (params, state, model_state), loss

    (params, state, model_state), losses = jax.lax.scan(body, (params, state, model_state), jnp.arange(steps),
                                                        unroll=unroll)
    return params, state, model_state, losses


class RunState(NamedTuple):
    """One inner run of a :class:`TrainingRun`: weights, optimizer state (its ``step`` counts
    from the run's start), the key its batches and model randomness are drawn from, and the
    model state (BatchNorm statistics; ``()`` for a stateless task)."""

    params: Params
    opt_state: OptState
    key: jax.Array
    model_state: ModelState = ()


class TrainingRun(NamedTuple):
    """A neural-net task as an estimator's inner problem
    (:class:`~shorthorizon.hypergrad.estimators.Inner`): ``horizon`` steps of ``optimizer``
    from ``params`` and ``opt_state`` (e.g. a warm start), a fresh batch of ``data`` every step,
    drawn from the run's key and the step index, so a window sees the same batches whatever the
    hyperparameters. A window's loss is the mean training loss of its batches (each before its
    step's update). ``to_hyper`` maps the estimator's coordinates to the optimizer's
    hyperparameters (identity by default, e.g. ``meta.offline.from_raw`` for log space);
    ``model_state`` is the task's at the start (``()`` for a stateless task). The data is held by the object, so a jitted estimator holds it as a constant: fine for the small
    sets of tests and studies, not for a full dataset on an accelerator."""

    task: Task
    optimizer: Optimizer
    data: Data
    params: Params
    opt_state: OptState
    horizon: int
    batch_size: int = 100
    to_hyper: Callable[[Hyper], Hyper] = dict
    model_state: ModelState = ()

    def init(self, key: jax.Array) -> RunState:
        return RunState(self.params, self.opt_state, key, self.model_state)

    def unroll(self, hyper: Hyper, state: RunState, steps: int):
        opt_state = state.opt_state.with_hyper(self.to_hyper(hyper))
        batch_at = stochastic_batches(self.data, state.key, steps, self.batch_size, start=opt_state.step)
        params, opt_state, model_state, losses = train(self.task, self.optimizer, state.params, opt_state, batch_at,
                                                       steps, model_state=state.model_state,
                                                       key=model_key(state.key))
        return jnp.mean(losses), RunState(params, opt_state, state.key, model_state)


class Unroll(NamedTuple):
    """A lookahead: ``steps`` of ``optimizer`` on ``task`` from given weights, then the
    meta-objective.

    ``lookahead="stochastic"``: a fresh batch every step and the objective on
    ``eval_batches`` further fresh batches; ``"deterministic"``: one batch repeated and the
    objective on that batch. An explicit evaluation set passed to :meth:`objective`
    replaces either objective (offline experiment: a fixed set of batches). The objective is
    the task's training-mode loss (the paper's meta-objective is the training loss), from the
    model state that training reached.
    """

    task: Task
    optimizer: Optimizer
    steps: int
    batch_size: int = 100
    lookahead: str = "stochastic"
    eval_batches: int = 1
    scan_unroll: int | bool = 1

    def run(self, hyper: Hyper, params: Params, state: OptState, data: Data, key: jax.Array,
            eval_set: Data | None = None, model_state: ModelState = ()):
        """Returns ``(objective, (params, state, model_state, train_losses))`` after the unroll."""
        if self.lookahead not in LOOKAHEADS:
            raise ValueError(f"unknown lookahead {self.lookahead!r}; choose one of {LOOKAHEADS}")
        train_key, eval_key, train_model_key, eval_model_key = run_keys(key)
        if self.lookahead == "stochastic":
            batch_at = stochastic_batches(data, train_key, self.steps, self.batch_size)
        else:
            fixed = sample_batch(data, train_key, self.batch_size)

            def batch_at(t):
                return fixed
        params, state, model_state, losses = train(self.task, self.optimizer, params, state.with_hyper(hyper),
                                                   batch_at, self.steps, self.scan_unroll, model_state=model_state,
                                                   key=train_model_key)
        if eval_set is None:
            eval_set = (batches(data, eval_key, self.eval_batches, self.batch_size) if self.lookahead == "stochastic"
                        else jax.tree.map(lambda a: a[None], fixed))
        objective = mean_loss(self.task, params, eval_set, model_state, eval_model_key)
        return objective, (params, state, model_state, losses)

    def objective(self, hyper: Hyper, params: Params, state: OptState, data: Data, key: jax.Array,
                  eval_set: Data | None = None, model_state: ModelState = ()) -> jax.Array:
        """The meta-objective alone, as a function of ``hyper`` (differentiable)."""
        return self.run(hyper, params, state, data, key, eval_set, model_state)[0]
