"""Does the short-horizon bias show for Adam too? A small residual CNN with BatchNorm (Flax
NNX) trained by optax AdamW on Fashion-MNIST, whose learning rate and weight decay are adapted
online by SMD on a short stochastic lookahead, beside the same run at the hand-tuned values.

Every ``interval`` training steps, ``meta_steps`` SMD steps (Adam on log lr and log weight
decay, hypergradients clipped) each differentiate the training loss after a ``horizon``-step
lookahead from the current weights, BatchNorm statistics and AdamW moments, on fresh batches
(the paper's stochastic lookahead). The question is the paper's: is the adapted learning rate
driven below the hand-tuned one, and does the run end worse for it?

    PYTHONPATH=examples python examples/adamw_short_horizon.py --steps 2000
    shorthorizon unroll --task adamw_short_horizon:resnet --lr 1e-3 --momentum 0.9 --steps 20  # the same model
"""

from __future__ import annotations

import argparse
import json
import math
from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from shorthorizon.hypergrad import Data, Unroll, evaluate, model_key, stochastic_batches, train
from shorthorizon.meta.smd import SMD
from shorthorizon.optim import Optimizer
from shorthorizon.tasks import Task
from shorthorizon.tasks.adapters import nnx_classifier

ADAPTED = ("learning_rate", "weight_decay")


class Block(nnx.Module):
    """conv-BN-ReLU-conv-BN plus the input, then ReLU."""

    def __init__(self, channels: int, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(channels, channels, (3, 3), use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(channels, rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(channels, rngs=rngs)

    def __call__(self, x):
        return nnx.relu(x + self.bn2(self.conv2(nnx.relu(self.bn1(self.conv1(x))))))


class ResNet(nnx.Module):
    """A stem convolution, ``blocks`` residual blocks, global average pooling, a linear layer."""

    def __init__(self, in_channels: int, num_classes: int, channels: int, blocks: int, rngs: nnx.Rngs):
        self.stem = nnx.Conv(in_channels, channels, (3, 3), strides=2, rngs=rngs)
        self.blocks = nnx.List([Block(channels, rngs) for _ in range(blocks)])
        self.head = nnx.Linear(channels, num_classes, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.stem(x))
        for block in self.blocks:
            h = block(h)
        return self.head(h.mean(axis=(1, 2)))


def resnet(input_shape, num_classes: int, channels: int = 16, blocks: int = 2) -> Task:
    """The task factory (``--task adamw_short_horizon:resnet``)."""
    return nnx_classifier(lambda rngs: ResNet(input_shape[-1], num_classes, channels, blocks, rngs), name="resnet")


def adamw() -> Optimizer:
    return Optimizer("adamw", optax.inject_hyperparams(optax.adamw)(learning_rate=0.0, weight_decay=0.0, eps_root=1e-30))


@partial(jax.jit, static_argnames=("task", "steps", "interval", "meta_steps", "horizon", "batch_size"))
def online(task: Task, data: Data, key: jax.Array, lr: float, weight_decay: float, steps: int, interval: int,
           meta_steps: int, horizon: int, batch_size: int, meta_lr: float = 0.03) -> dict:
    """``steps`` AdamW steps from fresh weights; before every ``interval`` of them, ``meta_steps``
    SMD steps on a ``horizon``-step stochastic lookahead (``meta_steps=0``: fixed values).
    Returns per-step curves: ``loss`` (the batch's, before the step), ``learning_rate``,
    ``weight_decay``; and the final params and model state."""
    init_key, run_key = jax.random.split(key)
    params, model_state = task.init(init_key), task.init_state(init_key)
    opt = adamw()
    opt_state = opt.init(params, {"learning_rate": lr, "weight_decay": weight_decay})
    unroll = Unroll(task, opt, horizon, batch_size, "stochastic")
    raw = {k: jnp.log(opt_state.hyper[k]) for k in ADAPTED}
    smd = SMD(meta_lr=meta_lr, bounds={"learning_rate": (math.log(1e-5), 0.0), "weight_decay": (math.log(1e-6), 0.0)})

    def interval_body(carry, k):
        params, opt_state, model_state, smd_state = carry
        meta_key, train_key = jax.random.split(k)
        if meta_steps:
            objective = lambda r, key: unroll.objective(jax.tree.map(jnp.exp, r), params, opt_state, data, key,
                                                        model_state=model_state)
            smd_state, _ = smd._replace(objective=objective).run(smd_state, jax.random.split(meta_key, meta_steps))
            opt_state = opt_state.with_hyper(jax.tree.map(jnp.exp, smd_state.raw))
        params, opt_state, model_state, losses = train(
            task, opt, params, opt_state, stochastic_batches(data, train_key, interval, batch_size), interval,
            model_state=model_state, key=model_key(train_key))
        curves = {"loss": losses, **{k: jnp.full(interval, opt_state.hyper[k]) for k in ADAPTED}}
        return (params, opt_state, model_state, smd_state), curves

    (params, _, model_state, _), curves = jax.lax.scan(
        interval_body, (params, opt_state, model_state, smd.init(raw)), jax.random.split(run_key, steps // interval))
    return {**jax.tree.map(lambda a: a.reshape(-1), curves), "params": params, "model_state": model_state}


def compare(task: Task, train_set: Data, test_set: Data, key: jax.Array, lr: float, weight_decay: float, **run) -> dict:
    """The hand-tuned run and the adapted one from the same key: final training loss (mean of
    the last tenth of the steps' batch losses), test error, and the adapted values at the end."""
    out = {}
    for name, meta_steps in (("hand_tuned", 0), ("adapted", run.pop("meta_steps"))):
        r = online(task, train_set, key, lr, weight_decay, meta_steps=meta_steps, **run)
        tail = max(1, len(r["loss"]) // 10)
        out[name] = {"final_train_loss": float(jnp.mean(r["loss"][-tail:])),
                     "test_error": float(evaluate(task, r["params"], test_set, 500, r["model_state"])["error"]),
                     **{k: float(r[k][-1]) for k in ADAPTED}}
    out["lr_below_hand_tuned"] = out["adapted"]["learning_rate"] < lr
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--meta-steps", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3, help="the hand-tuned learning rate")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from shorthorizon.experiments import datasets
    _, train_set, test_set = datasets.load("fashion-mnist")
    result = compare(resnet(train_set.x.shape[1:], 10, args.channels, args.blocks), train_set, test_set, jax.random.PRNGKey(args.seed), args.lr,
                     args.weight_decay, steps=args.steps, interval=args.interval, meta_steps=args.meta_steps,
                     horizon=args.horizon, batch_size=args.batch_size)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
