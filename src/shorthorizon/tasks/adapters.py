"""A Flax NNX or Equinox classifier as a :class:`~shorthorizon.tasks.Task`, in one call.

Both libraries are optional (``pip install shorthorizon[flax]`` / ``[equinox]``); each is
imported only when its adapter is called. The adapters split a model into what training
differentiates (the parameters), what it carries from step to step without differentiating
(BatchNorm statistics: the task's model state) and the static rest, and put the model back
together inside the loss, so unrolled training, ``jax.jvp`` and ``jax.grad`` see pure
functions of arrays. Randomness (dropout) is drawn from the key the loss is given, never from
a stream stored in the model, so every hyperparameter sees the same masks.

Flax: NNX, the API that Flax's documentation recommends since 2024 (Linen is its
predecessor). The model is built by ``make_model(rngs)`` and called as ``model(x) -> logits``;
training mode and inference mode are ``nnx.view`` of it with ``deterministic`` and
``use_running_average`` set.

    >>> from flax import nnx
    >>> class Net(nnx.Module):
    ...     def __init__(self, rngs):
    ...         self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
    ...         self.bn = nnx.BatchNorm(4, rngs=rngs)
    ...         self.out = nnx.Linear(4, 10, rngs=rngs)
    ...     def __call__(self, x):
    ...         return self.out(nnx.relu(self.bn(self.conv(x))).mean(axis=(1, 2)))
    >>> task = nnx_classifier(Net)
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from shorthorizon.tasks.base import Task, classification_loss, classifier_evaluate


def nnx_classifier(make_model: Callable[[Any], Any], name: str = "nnx") -> Task:
    """The Flax NNX model ``make_model(rngs)`` (called with ``nnx.Rngs(key)``), whose
    ``model(x)`` gives logits (batch, classes), as a classifier task on ``(x, y)`` batches:
    params are its ``nnx.Param`` variables, the model state every other variable except RNG
    streams (BatchNorm's statistics), and the loss the mean softmax cross-entropy in training
    mode. The model is built once here (with key 0) to read its structure."""
    from flax import nnx

    model = make_model(nnx.Rngs(0))
    filters = (nnx.Param, nnx.RngState, ...)
    modes = {"deterministic", "use_running_average"}
    train_def, _, rngs, _ = nnx.split(nnx.view(model, **dict.fromkeys(modes, False), raise_if_not_found=False),
                                      *filters)
    eval_def = nnx.graphdef(nnx.view(model, **dict.fromkeys(modes, True), raise_if_not_found=False))
    streams = sorted({node.tag for _, node in nnx.iter_graph(model) if isinstance(node, nnx.RngStream)})

    def build(key):
        return nnx.split(make_model(nnx.Rngs(key)), *filters)

    def loss(params, model_state, batch, key):
        # copies of the variables (made under the current trace), which BatchNorm and reseed then set
        model = nnx.merge(train_def, params, rngs, model_state, copy=True)
        if key is not None and streams:
            if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):  # a typed key from either kind
                key = jax.random.wrap_key_data(key)
            nnx.reseed(model, **{s: jax.random.fold_in(key, i) for i, s in enumerate(streams)})
        x, y = batch
        loss = classification_loss(model(x), y)
        return loss, (nnx.split(model, *filters)[3], {"loss": loss})

    def apply(params, model_state, x):
        return nnx.merge(eval_def, params, rngs, model_state)(x)

    return Task(name, lambda key: build(key)[1], loss, classifier_evaluate(apply), lambda key: build(key)[3], apply)


def equinox_classifier(make_model: Callable[[jax.Array], Any], name: str = "equinox") -> Task:
    """The Equinox model built by ``make_model(key)`` as a classifier task on ``(x, y)``
    batches. The model sees one example, as is Equinox's way: ``model(x, key=key) -> logits``,
    or, when ``make_model`` returns ``(model, state)`` (``eqx.nn.make_with_state``),
    ``model(x, state, key=key) -> (logits, state)``, vmapped over the batch with axis name
    ``"batch"`` (give ``eqx.nn.BatchNorm`` that ``axis_name``). ``key`` is None in inference
    mode (``eqx.nn.inference_mode``) and for a deterministic loss; params are the model's
    floating-point arrays."""
    import equinox as eqx

    def build(key):
        built = make_model(key)
        model, state = built if isinstance(built, tuple) else (built, ())
        params, static = eqx.partition(model, eqx.is_inexact_array)
        return params, static, state

    params, train_static, state = build(jax.random.key(0))
    stateful = state != ()
    eval_static = eqx.partition(eqx.nn.inference_mode(eqx.combine(params, train_static)), eqx.is_inexact_array)[1]

    def forward(static, params, model_state, x, key):
        model = eqx.combine(params, static)
        keys = None if key is None else jax.random.split(key, x.shape[0])
        if not stateful:
            return jax.vmap(lambda xi, k: model(xi, key=k))(x, keys), model_state
        # a fresh copy of the state: Equinox marks a State object used once set, and this one
        # may be traced again (by every derivative mode, by every lookahead)
        return jax.vmap(lambda xi, s, k: model(xi, s, key=k), axis_name="batch", in_axes=(0, None, 0),
                        out_axes=(0, None))(x, jax.tree.map(lambda a: a, model_state), keys)

    def loss(params, model_state, batch, key):
        x, y = batch
        logits, model_state = forward(train_static, params, model_state, x, key)
        loss = classification_loss(logits, y)
        return loss, (model_state, {"loss": loss})

    def apply(params, model_state, x):
        return forward(eval_static, params, model_state, x, None)[0]

    return Task(name, lambda key: build(key)[0], loss, classifier_evaluate(apply), lambda key: build(key)[2], apply)
