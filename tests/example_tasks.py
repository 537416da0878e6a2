"""Task factories for the tests, named as ``example_tasks:<name>`` (tests/ is on sys.path):
tiny models with BatchNorm and dropout, and wrong ones for the error messages."""

import equinox as eqx
import jax
import jax.numpy as jnp
from flax import nnx

from shorthorizon.tasks import mlp
from shorthorizon.tasks.adapters import equinox_classifier, nnx_classifier


class NNXNet(nnx.Module):
    def __init__(self, features: int, num_classes: int, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(features, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.dropout = nnx.Dropout(0.2, rngs=rngs)
        self.out = nnx.Linear(8, num_classes, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.bn(self.hidden(x.reshape(x.shape[0], -1))))
        return self.out(self.dropout(h))


def nnx_net(input_shape, num_classes):
    features = input_shape[0] * input_shape[1] * input_shape[2]
    return nnx_classifier(lambda rngs: NNXNet(features, num_classes, rngs), name="nnx_net")


class EquinoxNet(eqx.Module):
    hidden: eqx.nn.Linear
    bn: eqx.nn.BatchNorm
    dropout: eqx.nn.Dropout
    out: eqx.nn.Linear

    def __init__(self, features: int, num_classes: int, key):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(features, 8, key=k1)
        self.bn = eqx.nn.BatchNorm(8, axis_name="batch", mode="batch")
        self.dropout = eqx.nn.Dropout(0.2)
        self.out = eqx.nn.Linear(8, num_classes, key=k2)

    def __call__(self, x, state, *, key=None):
        h, state = self.bn(self.hidden(x.reshape(-1)), state)
        return self.out(self.dropout(jax.nn.relu(h), key=key)), state


def equinox_net(input_shape, num_classes):
    features = input_shape[0] * input_shape[1] * input_shape[2]
    return equinox_classifier(lambda key: eqx.nn.make_with_state(EquinoxNet)(features, num_classes, key),
                              name="equinox_net")


def small_mlp(input_shape, num_classes):
    """The paper's MLP, narrowed: a user's task that is cheap to train."""
    return mlp(input_shape, hidden=(8,), num_classes=num_classes)


def nan_loss(input_shape, num_classes):
    """The small MLP whose loss is NaN at every step (a model broken in its arithmetic)."""
    task = small_mlp(input_shape, num_classes)

    def loss(params, model_state, batch, key):
        value, aux = task.loss(params, model_state, batch, key)
        return value * jnp.nan, aux

    return task._replace(loss=loss)


def too_few_logits(input_shape, num_classes):
    """Logits of width 7 whatever the number of classes."""
    return nnx_net(input_shape, 7)


class Unflattened(nnx.Module):
    def __init__(self, features: int, num_classes: int, rngs: nnx.Rngs):
        self.out = nnx.Linear(features, num_classes, rngs=rngs)

    def __call__(self, x):
        return self.out(x)  # images (batch, H, W, C) into a layer that wants (batch, H * W * C)


def unflattened(input_shape, num_classes):
    features = input_shape[0] * input_shape[1] * input_shape[2]
    return nnx_classifier(lambda rngs: Unflattened(features, num_classes, rngs), name="unflattened")


NOT_A_FUNCTION = 3


def wrong_signature(shape):
    return nnx_net(shape, 10)


def not_a_task(input_shape, num_classes):
    return {"init": None}


def needs_color(input_shape, num_classes):
    raise ValueError("needs color images")
