"""What every task is: :class:`Task`, and the classifiers' loss and metrics.

A :class:`Task` is what training, every hypergradient estimator and every driver need to know
of a model: ``init(key) -> params``; ``init_state(key) -> model_state`` (BatchNorm
statistics and the like; ``()`` for a stateless model); ``loss(params, model_state, batch,
key) -> (loss, (model_state, metrics))``, the scalar training loss in training mode (batch
statistics, dropout drawn from ``key``); ``evaluate(params, model_state, batch) -> metrics``
(``"loss"`` and ``"error"``), in inference mode; ``apply(params, model_state, x) -> outputs``,
the model's outputs for a batch's inputs in inference mode (the classifiers' logits, batch x
classes), by which a task is checked against a dataset before any training
(:func:`~shorthorizon.tasks.registry.check_output`; ``None`` leaves the check to the loss's
trace). The classifiers' training metrics hold the loss
alone: training discards them, and an error rate (an argmax) at every step would cost every
unroll for nothing (``notes/tasks.md``). A batch is any pytree whose leaves share a leading batch axis; the
classifiers here take ``(x, y)``: NHWC float images, integer labels.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

Params = Any
ModelState = Any


def _stateless(key: jax.Array) -> ModelState:
    return ()


class Task(NamedTuple):
    """A base-level problem (module docstring). Hashable: a static argument of jitted code."""

    name: str
    init: Callable[[jax.Array], Params]
    loss: Callable[[Params, ModelState, Any, jax.Array | None], tuple[jax.Array, tuple[ModelState, dict]]]
    evaluate: Callable[[Params, ModelState, Any], dict]
    init_state: Callable[[jax.Array], ModelState] = _stateless
    apply: Callable[[Params, ModelState, Any], jax.Array] | None = None


def cast_floats(tree, dtype):
    """``tree`` with its floating-point leaves cast to ``dtype`` (integer and key leaves kept)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def initialize(task: Task, key: jax.Array, dtype=jnp.float32) -> tuple[Params, ModelState]:
    """``task``'s initial parameters and model state from ``key``, as ``dtype``. The parameters
    are drawn with 64-bit types off, then cast, so that one key gives the same weights (to
    float32 rounding) whatever the precision: under ``jax.enable_x64`` initializers draw float64
    numbers from the key's bits, which are other numbers, not more digits of the same ones. The
    model state (BatchNorm statistics: constants, and counters whose integer type the model
    checks against its own) is built under the precision in effect."""
    with jax.enable_x64(False):
        params = task.init(key)
    return cast_floats(params, dtype), cast_floats(task.init_state(key), dtype)


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of ``logits`` (batch, classes) for integer ``labels``.

    One-hot labels, not ``optax.softmax_cross_entropy_with_integer_labels``: that one picks
    each example's logit with gathers (``take_along_axis(...).take(0)``), whose derivatives
    are scatter-adds, and forward-mode hypergradients differentiate the training gradient
    once more; the one-hot product differentiates elementwise, a little faster on XLA:CPU
    (``benchmarks/speed_against.py``)."""
    return jnp.mean(optax.softmax_cross_entropy(logits, jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)))


def classification_metrics(logits: jax.Array, labels: jax.Array) -> dict:
    """Mean softmax cross-entropy and error rate of ``logits`` (batch, classes)."""
    return {"loss": classification_loss(logits, labels), "error": jnp.mean(jnp.argmax(logits, axis=-1) != labels)}


def classifier_evaluate(apply: Callable[[Params, ModelState, Any], jax.Array]) -> Callable:
    """A classifier task's ``evaluate`` on ``(x, y)`` batches, from its model in inference mode
    ``apply(params, model_state, x) -> logits``."""

    def evaluate(params, model_state, batch):
        x, y = batch
        return classification_metrics(apply(params, model_state, x), y)

    return evaluate


def classifier(name: str, init: Callable[[jax.Array], Params], apply: Callable[[Params, jax.Array], jax.Array]) -> Task:
    """A stateless, deterministic classifier ``apply(params, x) -> logits`` as a :class:`Task`
    on ``(x, y)`` batches; its loss is the mean softmax cross-entropy."""

    def model(params, model_state, x):
        return apply(params, x)

    def loss(params, model_state, batch, key):
        x, y = batch
        loss = classification_loss(apply(params, x), y)
        return loss, (model_state, {"loss": loss})

    return Task(name, init, loss, classifier_evaluate(model), apply=model)
