"""``shorthorizon unroll``: one unrolled training run, its meta-objective and hypergradient."""

from __future__ import annotations

import argparse
import math
import sys

import jax
import jax.numpy as jnp

from shorthorizon.config import FRACTION, NONNEGATIVE, POSITIVE, SEED
from shorthorizon.data import splits
from shorthorizon.hypergrad import ESTIMATORS, Unroll, make_estimator
from shorthorizon.optim import OPTIMIZERS, inverse_time, make_optimizer
from shorthorizon.results import to_json
from shorthorizon.tasks import FACTORY, TASKS, initialize, make_task, task_factory

DIVERGED = 3  # exit status when the loss or a hypergradient is not finite


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "unroll", help="one unroll: meta-objective and its hypergradient, as JSON",
        description="Train --steps steps from a fresh initialization (the same --seed gives the "
                    "same weights and batches), then print the mean training loss on "
                    "--eval-batches further batches and its derivative w.r.t. each hyperparameter.")
    p.add_argument("--task", default="mlp", help=f"{', '.join(TASKS)}, or package.module:factory naming your "
                   f"own: {FACTORY}")
    p.add_argument("--dataset", default="auto", help="dataset name (default: MNIST, else Fashion-MNIST; "
                   "CIFAR-10 first for the CNN)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the published-checksum check (for your own files)")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default="momentum")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--momentum", type=float, default=None,
                   help="μ (β1 for Adam); required for --optimizer momentum, adam and adamw")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="AdamW's decoupled weight decay (scaled by lr, as in optax); required for --optimizer adamw")
    p.add_argument("--decay-exponent", type=float, default=None,
                   help="β of lr_t = lr (1 + t/decay_steps)^-β (default: constant lr)")
    p.add_argument("--decay-steps", type=float, default=5000.0)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=10)
    p.add_argument("--lookahead", choices=("stochastic", "deterministic"), default="stochastic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--x64", action="store_true", help="compute in float64 (the same weights and batches, "
                   "in another precision)")
    p.add_argument("--estimator", choices=list(ESTIMATORS), default="forward",
                   help="forward, reverse: exact derivative; fd: central differences, a check (needs --x64); "
                        "es (= pes over one unroll): antithetic evolution strategies")
    p.add_argument("--particles", type=int, default=16, help="ES: antithetic pairs")
    p.add_argument("--sigma", type=float, default=0.01, help="ES: perturbation std, in each hyperparameter's units")
    p.set_defaults(handler=_unroll)


# the optimizers' hyperparameters that have a flag of their own beside --lr
HYPER_FLAGS = ("momentum", "weight_decay")


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _check(args: argparse.Namespace) -> None:
    """ValueError naming the flag for any value the unroll cannot use."""
    for name, rule in (("steps", POSITIVE), ("batch_size", POSITIVE), ("eval_batches", POSITIVE),
                       ("lr", POSITIVE), ("decay_steps", POSITIVE), ("momentum", FRACTION),
                       ("weight_decay", NONNEGATIVE), ("decay_exponent", NONNEGATIVE), ("particles", POSITIVE),
                       ("sigma", POSITIVE), ("seed", SEED)):
        value = getattr(args, name)
        if value is not None and not rule.test(value):
            raise ValueError(f"{_flag(name)} must be {rule.wanted}, got {value}")
    task_factory(args.task)
    _hyper(args)
    if args.estimator == "fd" and not args.x64:
        raise ValueError("--estimator fd needs --x64: central differences take steps small enough to stay on one "
                         "smooth piece of the unroll (ReLU switches make it piecewise smooth), below float32's "
                         "resolution")


def _hyper(args: argparse.Namespace) -> dict:
    """The initial hyperparameters from the flags: ``lr`` and those of :data:`HYPER_FLAGS` the
    optimizer has (a ValueError naming the flag it needs and was not given, or was given and lacks)."""
    optimizer = make_optimizer(args.optimizer)
    own = optimizer.hyperparameters()
    hyper = {"lr": args.lr}
    for name in HYPER_FLAGS:
        value = getattr(args, name)
        if value is None and name in optimizer.required:
            raise ValueError(f"--optimizer {args.optimizer} needs {_flag(name)}")
        if value is not None and name not in own:
            raise ValueError(f"--optimizer {args.optimizer} has no {name}; leave out {_flag(name)}")
        if value is not None:
            hyper[name] = value
    return hyper


def _unroll(args: argparse.Namespace) -> int:
    if sys.stdout is None:  # started with stdout closed (`>&-`): Python drops what is printed without a word
        raise ValueError("standard output is closed, and the result is printed there: redirect it to a file "
                         "(> result.json) instead of closing it")
    _check(args)
    with jax.enable_x64(args.x64):  # for this command only, not process-wide
        result = _compute(args)
    numbers = [result["loss"], *result["hypergrad"].values()]
    result["diverged"] = not all(math.isfinite(x) for x in numbers)
    print(to_json(result))  # strict JSON: a non-finite number is null
    if result["diverged"]:
        print("shorthorizon unroll: the unroll diverged (loss or hypergradient not finite); "
              "try a smaller --lr", file=sys.stderr)
        return DIVERGED
    return 0


def _compute(args: argparse.Namespace) -> dict:
    estimator = make_estimator(args.estimator, particles=args.particles, sigma=args.sigma)
    hyper = _hyper(args)
    schedule = None
    if args.decay_exponent is not None:
        hyper["decay_exponent"] = args.decay_exponent
        schedule = inverse_time(args.decay_steps)

    dtype = jnp.float64 if args.x64 else jnp.float32
    name = splits.resolve(args.dataset, splits.preferred(args.task), args.data_dir)
    ds, train, _ = splits.load(name, args.data_dir, verify=args.verify, dtype=dtype)
    # the evaluation set is drawn with replacement: beyond one epoch it only repeats examples
    splits.check_fits(name, len(train.y), {"--batch-size": args.batch_size,
                                           "--eval-batches x --batch-size": args.eval_batches * args.batch_size})
    task = make_task(args.task, ds.train_x.shape[1:], ds.num_classes)
    optimizer = make_optimizer(args.optimizer, schedule)
    init_key, data_key = jax.random.split(jax.random.PRNGKey(args.seed))
    params, model_state = initialize(task, init_key, dtype)
    state = optimizer.init(params, hyper)
    unroll = Unroll(task, optimizer, args.steps, args.batch_size, args.lookahead, args.eval_batches)

    @jax.jit
    def run(h):
        return estimator.objective_gradient(
            lambda h, key: unroll.objective(h, params, state, train, key, None, model_state), h, data_key)

    loss, grad = run({k: jnp.asarray(v, dtype) for k, v in hyper.items()})
    return {"loss": float(loss), "hypergrad": {k: float(v) for k, v in grad.items()},
            "dataset": name, "estimator": args.estimator,
            **({"particles": args.particles, "sigma": args.sigma} if hasattr(estimator, "sigma") else {})}
