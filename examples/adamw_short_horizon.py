"""Does the short-horizon bias show for Adam too? A small residual CNN with BatchNorm (Flax
NNX) trained by optax AdamW on Fashion-MNIST, whose learning rate and weight decay are adapted
online by SMD on a short stochastic lookahead, beside the same run at the hand-tuned values.

During the first half of training, every ``interval`` training steps, ``meta_steps`` SMD steps
(Adam on log lr and log weight decay, hypergradients clipped) each differentiate the training
loss after a ``horizon``-step lookahead from the current weights, BatchNorm statistics and AdamW
moments, on fresh batches (the paper's stochastic lookahead); in the second half lr decays
exponentially to 1e-4 (:class:`~shorthorizon.meta.online.Online`). The question is the paper's:
is the adapted learning rate driven below the hand-tuned one, and does the run end worse for it?

    PYTHONPATH=examples python examples/adamw_short_horizon.py --steps 2000
    # the same model and question as an experiment (figures, report, resumable runs):
    PYTHONPATH=examples shorthorizon online --preset quick --task adamw_short_horizon:resnet --set optimizer=adamw \
        --set adapt=lr,weight_decay --set hyper=weight_decay=1e-4 --set mlp_init_lrs=1e-3 --set mlp_baseline_lr=1e-3
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
from flax import nnx

from shorthorizon.hypergrad import Data, evaluate
from shorthorizon.meta.online import Online
from shorthorizon.optim import LogSpace, adamw
from shorthorizon.tasks import Task
from shorthorizon.tasks.adapters import nnx_classifier


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


SPACE = LogSpace((("lr", 1e-5, 1.0), ("weight_decay", 1e-6, 1.0)))  # SMD's log space, bounded
ADAMW = adamw()  # one object: the runs of a comparison share their compiled programs


def compare(task: Task, train_set: Data, test_set: Data, key: jax.Array, lrs: tuple[float, ...], weight_decay: float,
            steps: int, **online) -> dict:
    """Hand-tuned runs at each lr of ``lrs``, then the adapted run from the best of them (the
    lowest final training loss), all from the same key, each ``steps`` AdamW steps: adaptation
    in the first half (``online``: :class:`Online`'s settings), then lr decays exponentially
    to ``final_lr_eff`` with everything else frozen. Returns, per run, the final training loss
    (mean of the last tenth of the steps' batch losses), test error and the values when
    adaptation stopped; ``tuned_lr``, and whether the adapted lr ended below it."""
    meta_steps = online.pop("meta_steps")

    def run(lr: float, meta_steps: int) -> dict:
        out = Online(task, meta_steps=meta_steps, optimizer=ADAMW, space=SPACE, **online).run(
            train_set, key, {"lr": lr, "momentum": 0.9, "weight_decay": weight_decay}, steps // 2, steps - steps // 2)
        tail = max(1, len(out.curves["loss"]) // 10)
        return {"final_train_loss": float(jnp.mean(out.curves["loss"][-tail:])),
                "test_error": float(evaluate(task, out.params, test_set, 500, out.model_state)["error"]),
                "diverged": out.diverged, **{f"{k}_at_stop": v for k, v in out.at_stop.items()}}

    hand_tuned = {f"{lr:g}": run(lr, 0) for lr in lrs}
    tuned = min(lrs, key=lambda lr: hand_tuned[f"{lr:g}"]["final_train_loss"])
    adapted = run(tuned, meta_steps)
    return {"hand_tuned": hand_tuned, "tuned_lr": tuned, "adapted": adapted,
            "lr_below_tuned": adapted["lr_at_stop"] < tuned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--meta-steps", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--meta-lr", type=float, default=0.03)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lrs", default="3e-4,1e-3,3e-3",
                        help="hand-tuned learning rates; the adapted run starts from the best")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from shorthorizon.data import splits
    _, train_set, test_set = splits.load("fashion-mnist")
    result = compare(resnet(train_set.x.shape[1:], 10, args.channels, args.blocks), train_set, test_set,
                     jax.random.PRNGKey(args.seed), tuple(map(float, args.lrs.split(","))), args.weight_decay, args.steps, interval=args.interval,
                     meta_steps=args.meta_steps, horizon=args.horizon, batch_size=args.batch_size,
                     meta_lr=args.meta_lr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
