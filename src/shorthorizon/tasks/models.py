"""The paper's models: the MLP and the CNN, as classifier tasks."""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from shorthorizon.tasks.base import Task, classifier


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
    """Whether the CNN's convolution and pooling take their CPU forms (below): XLA:CPU compiles
    them better inside training loops; elsewhere the library's operations are the ones the
    compiler optimizes. Measurements: ``notes/tasks.md``."""
    return jax.default_backend() == "cpu"


def _conv_same(h: jax.Array, w: jax.Array) -> jax.Array:
    """Stride-1 SAME convolution (NHWC input, HWIO odd-sized kernel). On CPU, as one matmul
    over shifted copies of the input (im2col), the same values as ``lax.conv_general_dilated``:
    XLA:CPU runs a convolution inside a ``lax.scan`` loop far slower than outside one, and every
    training and lookahead loop here is a scan, while a matmul keeps its speed in a loop."""
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
    reshape and a max: the same values as ``lax.reduce_window``, and a cheaper forward-mode
    derivative (``jvp`` of ``grad``, which every SMD meta-step takes): a max over a reshaped
    axis differentiates by elementwise selection, where ``reduce_window``'s derivative is a
    windowed ``select_and_gather_add``, and the derivative of its gradient one more."""
    if not _cpu_workarounds():
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "SAME")
    n, height, width, c = h.shape
    h = jnp.pad(h, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), constant_values=-jnp.inf)
    return h.reshape(n, (height + 1) // 2, 2, (width + 1) // 2, 2, c).max(axis=(2, 4))
