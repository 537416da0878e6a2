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
A user's task (``--task package.module:factory``) runs with the settings given for it, the
``user_*`` keys (:func:`settings`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

import jax
import jax.numpy as jnp

from shorthorizon import config as configlib
from shorthorizon.config import (ANY, DATA_DIR, FRACTION, NONNEGATIVE, POSITIVE, SEED, items, key, one_of,
                                 optimizer_hyper, optional)
from shorthorizon.data import splits
from shorthorizon.hypergrad import ESTIMATORS, LOOKAHEADS, Data, evaluate, scalar_loss
from shorthorizon import optim
from shorthorizon.meta.online import Online, adaptable, check
from shorthorizon.offline_problem import DATASET, TASK
from shorthorizon.report.online import HEADLINES, at_stop, file_name
from shorthorizon.report.online import plot as figures
from shorthorizon.report.online import report  # noqa: F401 (the experiment's section)
from shorthorizon.results import RunDir
from shorthorizon.runners import Unit, run_units, seed_name
from shorthorizon.stats import finite_or_none, over_seeds
from shorthorizon.tasks import Task, make_task

NAME = "online"
FLAGS = ("task", "dataset")
TASKS = ("mlp", "cnn")


@dataclass(frozen=True)
class Config:
    """Shared settings, then per-task ones (``<task>_<key>``: :class:`Settings`); a user's task
    (``package.module:factory``) takes the ``user_*`` ones, unset by default."""

    task: tuple[str, ...] = key(TASKS, items(TASK, distinct=True))  # --task mlp narrows it; module:factory adds yours
    dataset: str = key("auto", DATASET)  # "auto": MLP on MNIST, CNN on CIFAR-10, each else Fashion-MNIST
    data_dir: str = key("", DATA_DIR)  # extra folder searched first for the datasets ("" = the usual places)
    verify: bool = key(True, ANY)  # check the data against the published checksums
    lookaheads: tuple[str, ...] = key(LOOKAHEADS, items(one_of(LOOKAHEADS), distinct=True))
    momentum: float = key(0.9, FRACTION)  # initial momentum of the SMD runs, and the baseline's (β1 of adam, adamw)
    optimizer: str = key("momentum", one_of(optim.OPTIMIZERS))  # the base optimizer (momentum: the paper's)
    # adapted hyperparameters: the heavy ball's lr and momentum move in the paper's effective space;
    # any other choice moves each in log space, within NAME:LOW:HIGH (lr and weight_decay have defaults)
    adapt: tuple[str, ...] = key(("lr", "momentum"), items(ANY, distinct=True))
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
    user_steps: int = key(0, NONNEGATIVE)
    user_init_lrs: tuple[float, ...] = key((), optional(items(POSITIVE, distinct=True)))
    user_baseline_lr: float = key(0.0, NONNEGATIVE)
    user_batch_size: int = key(0, NONNEGATIVE)


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


class Settings(NamedTuple):
    """One task's own settings (:func:`settings`); ``steps`` is the whole run: adaptation stops
    at ``steps // 2``."""

    keys: str  # the prefix of its config keys (mlp_steps, ...), for messages
    steps: int
    init_lrs: tuple[float, ...]
    baseline_lr: float
    batch_size: int

    @property
    def halves(self) -> tuple[int, int]:
        """Steps of the adaptation half and of the decay half."""
        return self.steps // 2, self.steps - self.steps // 2


def settings(config: Config, task: str) -> Settings:
    """``task``'s settings. A user's task (``package.module:factory``) takes the ``user_*`` keys,
    never a built-in task's (the MLP's lrs and steps are no guess for another model); where they
    are unset it is a ValueError naming the keys to set."""
    if task == "mlp":
        return Settings("mlp", config.mlp_steps, config.mlp_init_lrs, config.mlp_baseline_lr, config.mlp_batch_size)
    if task == "cnn":
        return Settings("cnn", config.cnn_steps, config.cnn_init_lrs, config.cnn_baseline_lr, config.cnn_batch_size)
    own = Settings("user", config.user_steps, config.user_init_lrs, config.user_baseline_lr, config.user_batch_size)
    unset = [f"user_{name}" for name, value in zip(own._fields[1:], own[1:]) if not value]
    if unset:
        raise ValueError(f"task {task!r} has no settings of its own: set config keys {', '.join(unset)} "
                         "(e.g. --set user_steps=2000 --set user_init_lrs=0.01,0.1 --set user_baseline_lr=0.1 "
                         "--set user_batch_size=100)")
    return own


def ready(config: Config, fetch: bool = False) -> str | None:
    """Why the first of ``config``'s tasks whose dataset (``auto``: the task's preferred ones) is
    missing from its ``data_dir`` and the usual places cannot run here, or None."""
    wanted = [splits.preferred(task) if config.dataset == splits.AUTO else (config.dataset,) for task in config.task]
    return next(filter(None, (splits.ready(w, fetch, config.data_dir or None) for w in wanted)), None)


# log-space bounds of hyperparameters adapted without NAME:LOW:HIGH (the lr's: the paper's
# effective-lr bounds, one decade lower, as Adam's steps are ~ lr where the heavy ball's are ~ 10 lr)
LOG_RANGES = {"lr": (1e-5, 10.0), "weight_decay": (1e-6, 1.0)}


def space(config: Config, optimizer: optim.Optimizer) -> optim.EffectiveSpace | optim.LogSpace:
    """Where SMD moves the ``adapt`` hyperparameters of ``optimizer`` (the config's); what may be
    adapted is :func:`~shorthorizon.meta.online.adaptable`'s to say, here named as the config key."""
    if sorted(config.adapt) == ["lr", "momentum"]:
        if config.optimizer == "momentum":
            return optim.EffectiveSpace()
        if config.adapt == Config.adapt:
            raise ValueError(f"config key 'adapt' defaults to lr,momentum, the heavy ball's (the paper's effective "
                             f"space); with optimizer {config.optimizer} name what to adapt, e.g. --set adapt=lr "
                             "(or lr,weight_decay for adamw)")
    try:
        adaptable(optimizer, [entry.split(":")[0] for entry in config.adapt])  # a misspelt name has no bounds
        return optim.log_space(config.adapt, LOG_RANGES)
    except ValueError as err:
        raise ValueError(f"config key 'adapt': {err}") from None


@lru_cache(maxsize=4)
def _built(task: str, dataset: str, data_dir: str | None, verify: bool,
           optimizer: str) -> tuple[Task, optim.Optimizer, Data, Data]:
    """The task, optimizer and data of a problem, once per process: runs and seeds share them and
    so their compiled programs (a new Task or optimizer object would compile every program anew)."""
    ds, train, test = splits.load(dataset, data_dir, verify=verify)
    model = make_task(task, tuple(ds.train_x.shape[1:]), ds.num_classes)
    return model, optim.make_optimizer(optimizer), train, test


class Run(NamedTuple):
    """One training run: the tuned baseline (no estimator), or SMD from ``init_lr`` with its
    ``estimator`` on a ``lookahead`` (none where the estimator is persistent)."""

    init_lr: float
    lookahead: str | None = None
    estimator: str | None = None

    @property
    def mode(self) -> str | None:
        """Its name in stored results (the summary's ``lookahead`` column, unit names; None: the baseline)."""
        return self.lookahead or self.estimator


def task_runs(config: Config, own: Settings) -> list[Run]:
    """Every run of a task with settings ``own``, the baseline first; a persistent estimator's
    (PES, NRES) have no lookahead and take the place of the lookaheads'."""
    lookaheads = (None,) if configlib.estimator(config).persistent else config.lookaheads
    return [Run(own.baseline_lr)] + [Run(lr, lookahead, config.estimator) for lookahead in lookaheads
                                     for lr in own.init_lrs]


def unit_name(task: str, init_lr: float, mode: str | None, seed: int = 0) -> str:
    """The unit of one run (:attr:`Run.mode`; seed ``seed``'s: :func:`~shorthorizon.runners.seed_name`)."""
    task = file_name(task)
    return seed_name(f"{task}_baseline" if mode is None else f"{task}_{mode}_lr{init_lr:g}", seed)


class Problem(NamedTuple):
    """One task's online problem, built once from a config (:meth:`from_config`): its settings, its
    data, and :class:`Online` with the config's task, optimizer, space, estimator and meta-steps."""

    task: str
    dataset: str
    settings: Settings
    online: Online
    train: Data
    test: Data

    @classmethod
    def from_config(cls, config: Config, task: str, dataset: str) -> "Problem":
        own = settings(config, task)
        model, optimizer, train, test = _built(task, dataset, config.data_dir or None, config.verify, config.optimizer)
        online = Online(model, None, config.horizon, config.meta_steps, config.interval, config.meta_lr,
                        config.clip, own.batch_size, final_lr_eff=config.final_lr_eff, chunks=config.chunks,
                        estimator=configlib.estimator(config), optimizer=optimizer, space=space(config, optimizer))
        return cls(task, dataset, own, online, train, test)

    def of(self, run: Run) -> Online:
        """The :class:`Online` of ``run``."""
        return self.online._replace(lookahead=run.lookahead, meta_steps=self.online.meta_steps if run.estimator else 0)

    def cost(self, run: Run) -> float:
        """A run's cost in FLOPs: plain training steps' worth of work (:meth:`Online.cost`) times
        XLA's FLOP count of one step of the task at its batch size (traced and lowered, not
        compiled), so MLP and CNN runs share one bar."""
        model, size = self.online.task, self.online.batch_size
        batch = (jax.ShapeDtypeStruct((size, *self.train.x.shape[1:]), jnp.float32),
                 jax.ShapeDtypeStruct((size,), jnp.int32))
        params = jax.eval_shape(model.init, jax.random.key(0))
        model_state = jax.eval_shape(model.init_state, jax.random.key(0))
        step = jax.jit(jax.grad(partial(scalar_loss, model), has_aux=True))
        flops = step.lower(params, model_state, batch, jax.random.key(0)).cost_analysis()["flops"]
        return self.of(run).cost(*self.settings.halves) * flops


def run_unit(config: Config, task: str, dataset: str, init_lr: float, lookahead: str | None,
             estimator: str | None) -> dict:
    """One training run (:class:`Run`)."""
    problem, run = Problem.from_config(config, task, dataset), Run(init_lr, lookahead, estimator)
    online, train, model = problem.of(run), problem.train, problem.online.task
    chance = math.log(int(train.y.max()) + 1)
    label = f"{task} {run.mode or 'baseline'} lr0={init_lr:g}"
    # the bar counts plain training steps' worth of work: an adaptation step costs many
    with tqdm(total=online.cost(*problem.settings.halves), desc=label, leave=False, dynamic_ncols=True,
              bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]") as bar:
        result = online.run(train, jax.random.key(config.seed), optimizer_hyper(config, init_lr),
                            *problem.settings.halves, chance_loss=chance, progress=bar.update)
    subset = Data(train.x[: config.eval_examples], train.y[: config.eval_examples])
    final_loss = float(_evaluate(model, result.params, subset, result.model_state)["loss"])
    accuracy = 1.0 - float(_evaluate(model, result.params, problem.test, result.model_state)["error"])
    diverged = result.diverged or not math.isfinite(final_loss) or final_loss > chance
    return {**result.curves, **{f"{k}_at_stop": v for k, v in result.at_stop.items()},
            "final_train_loss": final_loss, "final_test_accuracy": accuracy, "diverged": diverged}


_evaluate_jit = jax.jit(evaluate, static_argnums=(0, 3))


def _evaluate(task: Task, params, data: Data, model_state) -> dict:
    return _evaluate_jit(task, params, data, min(1000, len(data.y)), model_state)


def validate(config: Config) -> None:
    configlib.check(config)
    optimizer = optim.make_optimizer(config.optimizer)
    adapted = space(config, optimizer)
    for own in (settings(config, task) for task in config.task):
        if own.steps < 2 or (own.steps // 2) % config.interval:
            raise ValueError(f"config key '{own.keys}_steps' // 2 must be a positive multiple of "
                             f"interval={config.interval}, got {own.keys}_steps={own.steps}")
        for lr in own.init_lrs:
            hyper = optimizer_hyper(config, lr)
            try:
                check(optimizer, adapted, hyper)
            except ValueError as err:
                raise ValueError(f"{err}: set config keys 'adapt' and 'hyper' (e.g. --set hyper=NAME=VALUE)") from None


def run(config: Config, run_dir: RunDir, executor: str = "local", ray_address: str | None = None) -> dict:
    validate(config)
    problems = {task: Problem.from_config(config, task, splits.resolve(config.dataset, splits.preferred(task),
                                                                       config.data_dir or None))
                for task in config.task}
    for problem in problems.values():  # sizes the data bounds, before the folder is claimed
        splits.check_fits(problem.dataset, len(problem.train.y), {
            "config key 'eval_examples'": config.eval_examples,
            f"config key '{problem.settings.keys}_batch_size'": problem.settings.batch_size})
    run_dir.write_config(config, datasets={task: problem.dataset for task, problem in problems.items()})
    planned = [(problem, run, problem.cost(run)) for problem in problems.values()
               for run in task_runs(config, problem.settings)]
    units = [Unit(unit_name(problem.task, run.init_lr, run.mode, seed),
                  dict(config=configlib.seeded(config, seed), task=problem.task, dataset=problem.dataset,
                       init_lr=run.init_lr, lookahead=run.lookahead, estimator=run.estimator), cost=cost)
             for seed in range(config.seeds) for problem, run, cost in planned]
    results = run_units(run_unit, units, run_dir, executor, ray_address, desc="online runs")
    summary = run_dir.write_summary(_over_seeds([{task: _task_summary(config, problem, results, seed)
                                                  for task, problem in problems.items()}
                                                 for seed in range(config.seeds)]))
    plot(run_dir)
    return summary


def plot(run_dir: RunDir) -> None:
    """Figures 7-8 (:func:`shorthorizon.report.online.plot`), the baselines' curves by their unit names."""
    figures(run_dir, lambda task, seed: unit_name(task, None, None, seed))


def _task_summary(config: Config, problem: Problem, results: dict, seed: int) -> dict:
    """Seed ``seed``'s summary of ``problem``'s task."""
    base_run, *adapted = task_runs(config, problem.settings)
    base = results[unit_name(problem.task, base_run.init_lr, None, seed)]
    baseline = {**optimizer_hyper(config, base_run.init_lr),
                "final_train_loss": finite_or_none(base["final_train_loss"]),
                "final_test_accuracy": finite_or_none(base["final_test_accuracy"]),
                "diverged": bool(base["diverged"]), "steps_done": int(len(base["loss"]))}
    rows = []
    for run in adapted:
        unit = unit_name(problem.task, run.init_lr, run.mode, seed)
        r = results[unit]
        rows.append({"init_lr": run.init_lr, "lookahead": run.mode, "unit": unit,
                     **{k: finite_or_none(r[k]) for k in at_stop(r) + ("final_train_loss", "final_test_accuracy")},
                     "diverged": bool(r["diverged"]), "steps_done": int(len(r["loss"]))})
    return {"task": problem.task, "dataset": problem.dataset, "steps": problem.settings.steps,
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
