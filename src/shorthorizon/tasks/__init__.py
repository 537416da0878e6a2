"""Base-level problems: a model's parameters, state and loss, and its evaluation.

A :class:`Task` is what training, every hypergradient estimator and every driver need to know
of a model: ``init(key) -> params``; ``init_state(key) -> model_state`` (BatchNorm
statistics and the like; ``()`` for a stateless model); ``loss(params, model_state, batch,
key) -> (loss, (model_state, metrics))``, the scalar training loss in training mode (batch
statistics, dropout drawn from ``key``); ``evaluate(params, model_state, batch) -> metrics``
(``"loss"`` and ``"error"``), in inference mode. The classifiers' training metrics hold the loss
alone: computing the error (an argmax) at every step slowed forward-mode unrolls by ~5%, and
training discards them. A batch is any pytree whose leaves share a leading batch axis; the
classifiers here take ``(x, y)``: NHWC float images, integer labels. :func:`make_task` builds a
task by name or from a user's ``package.module:factory``; the adapters in
:mod:`shorthorizon.tasks.adapters` turn a Flax NNX or Equinox model into one.
"""

from __future__ import annotations

import importlib
import inspect
import math
from typing import Any, Callable, NamedTuple, Sequence

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


def cast_floats(tree, dtype):
    """``tree`` with its floating-point leaves cast to ``dtype`` (integer and key leaves kept)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


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


def classifier(name: str, init: Callable[[jax.Array], Params], apply: Callable[[Params, jax.Array], jax.Array]) -> Task:
    """A stateless, deterministic classifier ``apply(params, x) -> logits`` as a :class:`Task`
    on ``(x, y)`` batches; its loss is the mean softmax cross-entropy."""

    def evaluate(params, model_state, batch):
        x, y = batch
        return classification_metrics(apply(params, x), y)

    def loss(params, model_state, batch, key):
        x, y = batch
        loss = classification_loss(apply(params, x), y)
        return loss, (model_state, {"loss": loss})

    return Task(name, init, loss, evaluate)


def mlp(
    input_shape: Sequence[int] = (28, 28, 1),
    hidden: Sequence[int] = (100, 100),
    num_classes: int = 10,
    init_scale: float = 0.1,
) -> Task:
    """ReLU MLP (paper: 784-100-100-10), weights N(0, init_scale²), zero biases."""
    sizes = [math.prod(input_shape), *hidden, num_classes]

    def init(key):
        keys = jax.random.split(key, len(sizes) - 1)
        return [
            (init_scale * jax.random.normal(k, (n_in, n_out)), jnp.zeros(n_out))
            for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])
        ]

    def apply(params, x):
        h = x.reshape(x.shape[0], -1)
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        w, b = params[-1]
        return h @ w + b

    return classifier("mlp", init, apply)


def cnn(
    input_shape: Sequence[int] = (32, 32, 3),
    channels: Sequence[int] = (32, 32, 64),
    dense: int = 100,
    num_classes: int = 10,
) -> Task:
    """The paper's CNN: 3x3 conv + ReLU + 2x2/2 max-pool per entry of ``channels``,
    then a ``dense``-unit ReLU layer and the output layer. He-normal weights, zero biases."""
    height, width, in_ch = input_shape
    for _ in channels:
        height, width = (height + 1) // 2, (width + 1) // 2  # SAME-padded 2x2/2 pooling
    flat = height * width * channels[-1]

    def init(key):
        keys = jax.random.split(key, len(channels) + 2)
        params, c_in = [], in_ch
        for k, c_out in zip(keys, channels):
            std = math.sqrt(2.0 / (9 * c_in))
            params.append((std * jax.random.normal(k, (3, 3, c_in, c_out)), jnp.zeros(c_out)))
            c_in = c_out
        for k, n_in, n_out in ((keys[-2], flat, dense), (keys[-1], dense, num_classes)):
            params.append((math.sqrt(2.0 / n_in) * jax.random.normal(k, (n_in, n_out)), jnp.zeros(n_out)))
        return params

    def apply(params, x):
        h = x
        for w, b in params[: len(channels)]:
            h = _conv_same(h, w)
            h = jax.nn.relu(h + b)
            h = _max_pool_2x2(h)
        (w1, b1), (w2, b2) = params[len(channels):]
        h = jax.nn.relu(h.reshape(h.shape[0], -1) @ w1 + b1)
        return h @ w2 + b2

    return classifier("cnn", init, apply)


def _cpu_workarounds() -> bool:
    """Whether the CNN's convolution and pooling take their CPU forms (below): on XLA:CPU they
    are several times faster inside training loops; elsewhere the library's operations are the
    ones the compiler optimizes."""
    return jax.default_backend() == "cpu"


def _conv_same(h: jax.Array, w: jax.Array) -> jax.Array:
    """Stride-1 SAME convolution (NHWC input, HWIO odd-sized kernel). On CPU, as one matmul
    over shifted copies of the input (im2col), the same values as ``lax.conv_general_dilated``:
    XLA:CPU runs convolutions inside ``lax.scan`` loops about 10x slower than outside, and every
    training and lookahead loop here is a scan, while matmuls keep their speed."""
    if not _cpu_workarounds():
        return jax.lax.conv_general_dilated(h, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    kh, kw, c_in, c_out = w.shape
    _, height, width, _ = h.shape
    padded = jnp.pad(h, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    patches = jnp.concatenate(
        [padded[:, i:i + height, j:j + width, :] for i in range(kh) for j in range(kw)], axis=-1)
    return patches @ w.reshape(kh * kw * c_in, c_out)


def _max_pool_2x2(h: jax.Array) -> jax.Array:
    """2x2/2 max-pooling, SAME-padded (odd sizes padded with -inf at the end). On CPU, as a
    reshape and a max: the same values as ``lax.reduce_window``, but its forward-mode
    derivative (``jvp`` of ``grad``, which every SMD meta-step takes) is a few times cheaper."""
    if not _cpu_workarounds():
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "SAME")
    n, height, width, c = h.shape
    h = jnp.pad(h, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), constant_values=-jnp.inf)
    return h.reshape(n, (height + 1) // 2, 2, (width + 1) // 2, 2, c).max(axis=(2, 4))


TASKS = {"mlp": mlp, "cnn": cnn}
FACTORY = "factory(input_shape: tuple[int, int, int], num_classes: int) -> shorthorizon.tasks.Task"


def make_task(name: str, input_shape: Sequence[int], num_classes: int = 10) -> Task:
    """Build the task ``name`` for images of ``input_shape`` (H, W, C): one of :data:`TASKS`,
    or ``package.module:factory`` naming a function with the signature :data:`FACTORY`."""
    factory = task_factory(name)
    try:
        task = factory(input_shape=tuple(input_shape), num_classes=num_classes)
    except (ValueError, TypeError) as err:  # the factory's own complaint, said of this task
        raise ValueError(f"task {name} for images of shape {tuple(input_shape)}, {num_classes} classes: "
                         f"{type(err).__name__}: {err}") from err
    if not isinstance(task, Task):
        raise ValueError(f"task {name}: the factory returned a {type(task).__name__}, not a Task; expected {FACTORY}")
    return task


def task_factory(name: str) -> Callable[..., Task]:
    """The factory of task ``name`` (see :func:`make_task`); a ValueError that says what is
    wrong and what is expected otherwise, before any work is done."""
    if ":" in name:
        return load_factory(name)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}, "
                         "or name your own as package.module:factory")
    return TASKS[name]


def load_factory(spec: str) -> Callable[..., Task]:
    """The function named by ``package.module:factory``; a ValueError that names what is
    wrong (the module, the attribute, the signature) otherwise."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise ValueError(f"task {spec!r}: expected package.module:factory, with {FACTORY}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"task {spec}: cannot import module {module_name!r} ({err}); is its folder on "
                         f"PYTHONPATH or the package installed? expected {FACTORY}") from None
    except SyntaxError as err:
        raise ValueError(f"task {spec}: module {module_name!r} has a syntax error ({err})") from None
    factory = getattr(module, attribute, None)
    if factory is None:
        raise ValueError(f"task {spec}: module {module_name!r} has no attribute {attribute!r}; expected {FACTORY}")
    if not callable(factory):
        raise ValueError(f"task {spec}: {attribute!r} is a {type(factory).__name__}, not a function; "
                         f"expected {FACTORY}")
    try:
        inspect.signature(factory).bind(input_shape=(1, 1, 1), num_classes=1)
    except TypeError as err:
        raise ValueError(f"task {spec}: {attribute} does not take (input_shape, num_classes) ({err}); "
                         f"expected {FACTORY}") from None
    except ValueError:  # no signature to inspect (a builtin): call it and see
        pass
    return factory
