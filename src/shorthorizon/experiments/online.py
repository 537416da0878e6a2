"""Online meta-optimization: SMD adapts lr and momentum while training (Figures 7-8).

For each task (``mlp`` -> Figure 7, ``cnn`` -> Figure 8) and each initial learning rate,
SMD adapts the learning rate and momentum during the first half of training with a
5-step stochastic or deterministic lookahead, then the effective learning rate decays
exponentially to 1e-4. A hand-tuned baseline (fixed lr, momentum 0.9, same second half)
is trained beside them. Each (task, initial lr, lookahead) run is one unit of work.
Short-horizon bias shows as stochastic-lookahead learning rates far below the baseline's,
and deterministic-lookahead ones far above.

``optimizer`` and ``adapt`` put another optimizer and any of its hyperparameters in place of the
heavy ball's lr and momentum: ``--set optimizer=adamw --set adapt=lr,weight_decay --set
hyper=weight_decay=1e-4`` asks the same question of AdamW (:mod:`shorthorizon.meta.online`).
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache, partial

import numpy as np
from tqdm.auto import tqdm

import jax
import jax.numpy as jnp

from shorthorizon import config as configlib
from shorthorizon.config import ANY, DATA_DIR, FRACTION, POSITIVE, SEED, items, key, one_of, optimizer_hyper
from shorthorizon.data.registry import get_spec
from shorthorizon.data import splits
from shorthorizon.hypergrad import ESTIMATORS, LOOKAHEADS, Data, evaluate, scalar_loss
from shorthorizon import optim
from shorthorizon.offline_problem import DATASET, TASK
from shorthorizon.meta.online import Online, check
from shorthorizon.report.online import HEADLINES, at_stop, file_name, unit_name
from shorthorizon.report.online import plot, report  # noqa: F401 (report: the experiment's section)
from shorthorizon.results import RunDir
from shorthorizon.runners import Unit, run_units
from shorthorizon.stats import finite_or_none, over_seeds
from shorthorizon.tasks import Task, make_task

NAME = "online"
FLAGS = ("task", "dataset")
TASKS = ("mlp", "cnn")


@dataclasses.dataclass(frozen=True)
class Config:
    """Shared settings, then per-task ones (``<task>_<key>``). ``steps`` is the whole run:
    adaptation stops at ``steps // 2``."""

    task: tuple[str, ...] = key(TASKS, items(TASK, distinct=True))  # --task mlp narrows it; module:factory adds yours
    dataset: str = key("auto", DATASET)  # "auto": MLP on MNIST, CNN on CIFAR-10, each else Fashion-MNIST
    data_dir: str = key("", DATA_DIR)  # extra folder searched first for the datasets ("" = the usual places)
    verify: bool = key(True, ANY)  # check the data against the published checksums
    lookaheads: tuple[str, ...] = key(LOOKAHEADS, items(one_of(LOOKAHEADS), distinct=True))
    momentum: float = key(0.9, FRACTION)  # initial momentum of the SMD runs, and the baseline's (β1 of adam, adamw)
    optimizer: str = key("momentum", one_of(optim.OPTIMIZERS))  # the base optimizer (momentum: the paper's)
    # adapted hyperparameters: the heavy ball's lr and momentum move in the paper's effective space;
    # any other choice moves each in log space, within NAME:LOW:HIGH (lr and weight_decay have defaults)
    adapt: tuple[str, ...] = key(("lr", "momentum"), ANY)
    hyper: tuple[str, ...] = key((), ANY)  # other initial hyperparameters as NAME=VALUE, e.g. weight_decay=1e-4
    horizon: int = key(5, POSITIVE)  # lookahead steps per meta-step
    meta_steps: int = key(100, POSITIVE)  # SMD meta-steps every `interval` training steps
    interval: int = key(10, POSITIVE)
    meta_lr: float = key(0.01, POSITIVE)  # Adam, on log(lr_eff) and log(1 - momentum) (log values in another space)
    clip: float = key(10.0, POSITIVE)  # hypergradients clipped to [-clip, clip]
    # SMD's hypergradients: forward, reverse, fd, es (antithetic pairs), or a persistent one, pes or
    # nres (particles train beside the run, one meta-step per interval: no lookahead)
    estimator: str = key("forward", one_of(ESTIMATORS))
    particles: int = key(1, POSITIVE)  # es, pes, nres: antithetic pairs per meta-step
    sigma: float = key(0.01, POSITIVE)  # es: perturbation std in log space
    final_lr_eff: float = key(1e-4, POSITIVE)  # effective lr at the last step
    eval_examples: int = key(10_000, POSITIVE)  # training examples the final training loss is measured on
    chunks: int = key(10, POSITIVE)  # jitted pieces per half: progress and divergence checks in between
    seed: int = key(0, SEED)
    seeds: int = key(1, POSITIVE)  # independent repetitions: seed k (0 <= k < seeds) runs with seed + k
    mlp_steps: int = key(50_000, POSITIVE)
    mlp_init_lrs: tuple[float, ...] = key((1e-3, 5e-3, 1e-2, 5e-2, 1e-1), items(POSITIVE, distinct=True))
    mlp_baseline_lr: float = key(0.1, POSITIVE)
    mlp_batch_size: int = key(100, POSITIVE)
    cnn_steps: int = key(50_000, POSITIVE)
    cnn_init_lrs: tuple[float, ...] = key((5e-4, 1e-3, 5e-3, 1e-2), items(POSITIVE, distinct=True))
    cnn_baseline_lr: float = key(5e-3, POSITIVE)
    cnn_batch_size: int = key(100, POSITIVE)


PRESETS = {
    "paper": Config(),
    # quick, sized for ~7 minutes on 2 CPU cores: 10 meta-steps every 20 training steps (the
    # paper: 100 every 10) at a 5x larger meta-lr, and one initial lr per task. MLP: 8000 steps
    # from the baseline's lr 0.1 (the hardest to bring below 1/10 of it; at 6000 steps it
    # stopped at 0.0105). CNN: a meta-step costs ~25 MLP ones, so batch 25 and 2000 steps from
    # lr 1e-3, about 2 minutes per run. The greedy lr falls as training goes on: stopping
    # adaptation after 200 or 300 steps left the CNN's stochastic lr at 9e-4 or 5.3e-4, above
    # 1/10 of the baseline's (5e-4); after 1000 steps it is 4.1e-4.
    "quick": Config(meta_steps=10, interval=20, meta_lr=0.05, mlp_steps=8000, mlp_init_lrs=(1e-1,),
                    cnn_steps=2000, cnn_init_lrs=(1e-3,), cnn_batch_size=25),
}

def task_key(task: str, key: str) -> str:
    """The config key of the per-task setting ``key`` (``steps``, ``init_lrs``, ``baseline_lr``,
    ``batch_size``): ``<task>_<key>``; a user's task (``package.module:factory``) takes the MLP's."""
    return f"{task if task in TASKS else 'mlp'}_{key}"


def per_task(config: Config, task: str, key: str):
    """The value of :func:`task_key`."""
    return getattr(config, task_key(task, key))


def ready(fetch: bool = False) -> str | None:
    """Why the first task whose dataset is missing cannot run here, or None."""
    return next(filter(None, (splits.ready(splits.preferred(task), fetch) for task in TASKS)), None)


@lru_cache(maxsize=2)
def _data(name: str, data_dir: str | None, verify: bool) -> tuple[Data, Data]:
    _, train, test = splits.load(name, data_dir, verify=verify)
    return train, test


@lru_cache(maxsize=4)
def _task(name: str, dataset: str) -> Task:
    """One Task object per (name, dataset) and process, so that runs share compiled code."""
    spec = get_spec(dataset)
    return make_task(name, spec.image_shape, spec.num_classes)


# log-space bounds of hyperparameters adapted without NAME:LOW:HIGH (the lr's: the paper's
# effective-lr bounds, one decade lower, as Adam's steps are ~ lr where the heavy ball's are ~ 10 lr)
LOG_RANGES = {"lr": (1e-5, 10.0), "weight_decay": (1e-6, 1.0)}


@lru_cache(maxsize=8)
def _optimizer(name: str) -> optim.Optimizer:
    """One optimizer object per name and process, so that runs share compiled code."""
    return optim.make_optimizer(name)


def _space(config: Config) -> optim.EffectiveSpace | optim.LogSpace:
    """Where SMD moves the ``adapt`` hyperparameters."""
    if sorted(config.adapt) == ["lr", "momentum"]:
        if config.optimizer == "momentum":
            return optim.EffectiveSpace()
        if config.adapt == Config.adapt:
            raise ValueError(f"config key 'adapt' defaults to lr,momentum, the heavy ball's (the paper's effective "
                             f"space); with optimizer {config.optimizer} name what to adapt, e.g. --set adapt=lr "
                             "(or lr,weight_decay for adamw)")
    own = _optimizer(config.optimizer).hyperparameters()
    unknown = [entry.split(":")[0] for entry in config.adapt if entry.split(":")[0] not in own]
    if unknown:  # before any bounds are asked for: a misspelt name has none
        raise ValueError(f"config key 'adapt': optimizer {config.optimizer!r} has no hyperparameter {unknown}; "
                         f"it has {', '.join(sorted(own))}")
    try:
        return optim.log_space(config.adapt, LOG_RANGES)
    except ValueError as err:
        raise ValueError(f"config key 'adapt': {err}") from None


def _online(config: Config, task: str, model: Task, lookahead: str | None) -> Online:
    """The run of ``task``; ``lookahead=None`` is the hand-tuned baseline (no meta-steps)."""
    return Online(model, lookahead if lookahead in LOOKAHEADS else "stochastic", config.horizon,
                  config.meta_steps if lookahead else 0, config.interval, config.meta_lr, config.clip,
                  per_task(config, task, "batch_size"), final_lr_eff=config.final_lr_eff,
                  chunks=config.chunks, estimator=configlib.estimator(config),
                  optimizer=_optimizer(config.optimizer), space=_space(config))


def _halves(config: Config, task: str) -> tuple[int, int]:
    """Steps of the adaptation half and of the decay half."""
    steps = per_task(config, task, "steps")
    return steps // 2, steps - steps // 2


def run_unit(config: Config, task: str, dataset: str, init_lr: float, lookahead: str | None) -> dict:
    """One training run; ``lookahead=None`` is the hand-tuned baseline (no adaptation)."""
    train, test = _data(dataset, config.data_dir or None, config.verify)
    model = _task(task, dataset)
    online = _online(config, task, model, lookahead)
    chance = math.log(int(train.y.max()) + 1)
    label = f"{task} {lookahead or 'baseline'} lr0={init_lr:g}"
    # the bar counts plain training steps' worth of work: an adaptation step costs many
    with tqdm(total=online.cost(*_halves(config, task)), desc=label, leave=False, dynamic_ncols=True,
              bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]") as bar:
        result = online.run(train, jax.random.key(config.seed), optimizer_hyper(config, init_lr),
                            *_halves(config, task), chance_loss=chance, progress=bar.update)
    subset = Data(train.x[: config.eval_examples], train.y[: config.eval_examples])
    final_loss = float(_evaluate(model, result.params, subset, result.model_state)["loss"])
    accuracy = 1.0 - float(_evaluate(model, result.params, test, result.model_state)["error"])
    diverged = result.diverged or not math.isfinite(final_loss) or final_loss > chance
    return {**result.curves, **{f"{k}_at_stop": v for k, v in result.at_stop.items()},
            "final_train_loss": final_loss, "final_test_accuracy": accuracy, "diverged": diverged}


_evaluate_jit = jax.jit(evaluate, static_argnums=(0, 3))


def _evaluate(task: Task, params, data: Data, model_state) -> dict:
    return _evaluate_jit(task, params, data, min(1000, len(data.y)), model_state)


def _cost(config: Config, task: str, dataset: str, lookahead: str | None) -> float:
    """A run's cost in FLOPs: plain training steps' worth of work (:meth:`Online.cost`) times
    XLA's FLOP count of one step of the task at its batch size (traced and lowered, not
    compiled), so MLP and CNN runs share one bar."""
    shape = get_spec(dataset).image_shape
    model = _task(task, dataset)
    batch = (jax.ShapeDtypeStruct((per_task(config, task, "batch_size"), *shape), jnp.float32),
             jax.ShapeDtypeStruct((per_task(config, task, "batch_size"),), jnp.int32))
    params = jax.eval_shape(model.init, jax.random.key(0))
    model_state = jax.eval_shape(model.init_state, jax.random.key(0))
    step = jax.jit(jax.grad(partial(scalar_loss, model), has_aux=True))
    flops = step.lower(params, model_state, batch, jax.random.key(0)).cost_analysis()["flops"]
    return _online(config, task, model, lookahead).cost(*_halves(config, task)) * flops


def _runs(config: Config, task: str) -> list[tuple[float, str | None]]:
    """(initial lr, lookahead) of every run of ``task``, the baseline first; runs of a persistent
    estimator (PES, NRES) have no lookahead and take the place of one, by the estimator's name."""
    persistent = configlib.estimator(config).persistent
    lookaheads = (config.estimator,) if persistent else config.lookaheads
    return [(per_task(config, task, "baseline_lr"), None)] + [
        (lr, lookahead) for lookahead in lookaheads for lr in per_task(config, task, "init_lrs")]


def validate(config: Config) -> None:
    configlib.check(config)
    for task in config.task:
        steps = task_key(task, "steps")
        if getattr(config, steps) < 2 or (getattr(config, steps) // 2) % config.interval:
            raise ValueError(f"config key {steps!r} // 2 must be a positive multiple of interval={config.interval}, "
                             f"got {steps}={getattr(config, steps)}")
    space = _space(config)
    for task in config.task:
        for lr in per_task(config, task, "init_lrs"):
            check(_optimizer(config.optimizer), space, optimizer_hyper(config, lr))


def run(config: Config, run_dir: RunDir, executor: str = "local", ray_address: str | None = None) -> dict:
    validate(config)
    data = {task: splits.resolve(config.dataset, splits.preferred(task), config.data_dir or None)
            for task in config.task}
    for task, name in data.items():  # sizes the data bounds, before the folder is claimed
        sizes = ("eval_examples", task_key(task, "batch_size"))
        splits.check_fits(name, len(_data(name, config.data_dir or None, config.verify)[0].y),
                          {f"config key {k!r}": getattr(config, k) for k in sizes})
    run_dir.write_config(config, datasets=data)
    runs = [(task, lr, la, _cost(config, task, data[task], la))
            for task in config.task for lr, la in _runs(config, task)]
    units = [Unit(unit_name(task, lr, la, seed), dict(config=configlib.seeded(config, seed), task=task, dataset=data[task],
                                                       init_lr=lr, lookahead=la), cost=cost)
             for seed in range(config.seeds) for task, lr, la, cost in runs]
    results = run_units(run_unit, units, run_dir, executor, ray_address, desc="online runs")
    summary = run_dir.write_summary(_over_seeds([{task: _task_summary(config, task, data[task], results, seed)
                                                  for task in config.task} for seed in range(config.seeds)]))
    plot(run_dir)
    return summary


def _task_summary(config: Config, task: str, dataset: str, results: dict, seed: int) -> dict:
    """Seed ``seed``'s summary of ``task``."""
    (base_lr, _), *runs = _runs(config, task)
    base = results[unit_name(task, base_lr, None, seed)]
    baseline = {**optimizer_hyper(config, base_lr),
                "final_train_loss": finite_or_none(base["final_train_loss"]),
                "final_test_accuracy": finite_or_none(base["final_test_accuracy"]),
                "diverged": bool(base["diverged"]), "steps_done": int(len(base["loss"]))}
    rows = []
    for lr, lookahead in runs:
        unit = unit_name(task, lr, lookahead, seed)
        r = results[unit]
        rows.append({"init_lr": lr, "lookahead": lookahead, "unit": unit,
                     **{k: finite_or_none(r[k]) for k in at_stop(r) + ("final_train_loss", "final_test_accuracy")},
                     "diverged": bool(r["diverged"]), "steps_done": int(len(r["loss"]))})
    return {"task": task, "dataset": dataset, "steps": per_task(config, task, "steps"),
            "baseline": baseline, "runs": rows, "checks": _checks(baseline, rows)}


def _headlines(s: dict) -> dict:
    """One seed's :data:`HEADLINES` of one task's summary ``s``, by mode. The paper's claims are
    about every run of a mode, so where a mode has several initial lrs its ``lr_at_stop`` is the
    largest (every stochastic lr is below a tenth of the tuned one when the largest is) and its
    ``final_train_loss`` the lowest (the best it reached); ``diverged`` is the fraction of its runs
    that diverged, and a diverged run's loss is null (stats counts it as diverged). Ratios to the
    baseline are taken within the seed."""
    base = s["baseline"]
    base_loss = None if base["diverged"] else base["final_train_loss"]
    out = {"baseline": {"final_train_loss": base_loss, "diverged": float(base["diverged"])}}
    for mode in dict.fromkeys(r["lookahead"] for r in s["runs"]):
        runs = [r for r in s["runs"] if r["lookahead"] == mode]
        lrs = [r["lr_at_stop"] for r in runs]
        lr = None if None in lrs else max(lrs)
        loss = min((r["final_train_loss"] for r in runs if not r["diverged"] and r["final_train_loss"] is not None),
                   default=None)
        out[mode] = {"final_train_loss": loss, "diverged": float(np.mean([r["diverged"] for r in runs])),
                     "lr_at_stop": lr, "lr_ratio": None if lr is None else lr / base["lr"],
                     "loss_ratio": None if loss is None or base_loss is None else loss / base_loss}
    return out


def _over_seeds(per_seed: list[dict]) -> dict:
    """The run's summary from each seed's (``{task: task summary}``, seed 0 first):
    :func:`shorthorizon.stats.over_seeds`, its intervals those of each seed's :func:`_headlines`."""
    views = [{file_name(task): _headlines(s[task]) for task in s} for s in per_seed]
    paths = {f"{task}.{mode}.{name}": HEADLINES[name]
             for task, modes in views[0].items() for mode, numbers in modes.items() for name in numbers}
    return {**over_seeds(per_seed, {}), "intervals": over_seeds(views, paths)["intervals"]}


def _checks(baseline: dict, rows: list[dict]) -> dict:
    """The paper's claims, as booleans over this run's numbers (None where not applicable)."""
    base_loss = baseline["final_train_loss"]
    checks: dict = {}
    persistent = sorted({r["lookahead"] for r in rows} - set(LOOKAHEADS))  # pes, nres: particles beside the run
    for kind in ("stochastic", *persistent):
        runs = [r for r in rows if r["lookahead"] == kind]
        # undecided (null) where a run diverged before it had an lr at the stop
        checks[f"{kind}_lr_at_most_tenth_of_baseline"] = all(
            r["lr_at_stop"] <= baseline["lr"] / 10 for r in runs
        ) if runs and all(r["lr_at_stop"] is not None for r in runs) else None
        checks[f"{kind}_loss_above_baseline"] = all(
            r["diverged"] or (r["final_train_loss"] or math.inf) > base_loss for r in runs
        ) if runs and base_loss is not None else None
    lrs = {kind: [r["lr_at_stop"] for r in rows if r["lookahead"] == kind and r["lr_at_stop"] is not None]
           for kind in LOOKAHEADS}
    checks["deterministic_lr_above_stochastic"] = (min(lrs["deterministic"]) > max(lrs["stochastic"])
                                                   if lrs["deterministic"] and lrs["stochastic"] else None)
    return checks
