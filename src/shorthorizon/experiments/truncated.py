"""Beating the short-horizon bias on the paper's offline task with windowed estimators.

The question a user with a small budget has: *I can only afford K-step windows of training
per meta-gradient; can I still fit the schedule that is best for the whole run?* The problem
is the offline experiment's (MLP, inverse-time schedule of lr0 and decay exponent, momentum,
warm start; :mod:`shorthorizon.experiments.offline`) at one whole-run horizon T.

- **Windowed estimators** (:func:`shorthorizon.meta.offline.windowed_estimator`): inner runs of
  T steps from the warm start, seen K steps at a time, one meta-step per window; particles at
  staggered phases, each restarted when its run reaches T. Truncated forward mode (the paper's
  short-horizon SMD, windowed), truncated reverse mode (TBPTT), ES and PES. Their whole-run
  objective is the **mean training loss over the run** (each window contributes the minibatch
  losses of its steps): with the loss at T alone, every window but the last would carry no
  signal.
- **The reference** (``smd_full``): today's full-horizon forward-mode SMD of the **loss at T**
  on the fixed evaluation batches, unrolling all T steps per meta-step.

Every fit gets the same budget of inner steps (``fit_inner_steps``, counting every particle's
trajectories and the staggering), starts from the same point and takes the same SMD update
(hypergradients clipped as the paper's, Adam cosine-decayed over the fit, values kept in the
box). Every fitted schedule is judged by one yardstick, the paper's: the training loss after T
steps from the warm start on the fixed evaluation batches (and the test error), measured by
training it once more.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from shorthorizon.config import NONNEGATIVE, POSITIVE, FRACTION, require
from shorthorizon.experiments import datasets
from shorthorizon.experiments import offline as offline_experiment
from shorthorizon.hypergrad import label
from shorthorizon.meta import offline
from shorthorizon.results import RunDir, fmt
from shorthorizon.runners import Unit, run_units
from shorthorizon.tasks import TASKS

NAME = "truncated"
PREFERRED = offline_experiment.PREFERRED
FLAGS = ("dataset",)
WINDOWED = ("forward", "reverse", "es", "pes")
REFERENCE = "smd_full"


@dataclass(frozen=True)
class Config:
    """Defaults: the paper's offline problem at its longest horizon (MNIST where present)."""

    dataset: str = "auto"  # "auto": MNIST where present, else Fashion-MNIST
    data_dir: str = ""
    verify: bool = True
    seed: int = 0
    task: str = "mlp"
    batch_size: int = 100
    warm_start_steps: int = 50
    warm_start_lr: float = 0.1
    momentum: float = 0.9
    decay_steps: float = 5000.0  # lr_t = lr0 (1 + t / decay_steps)^(-decay_exponent)
    horizon: int = 20000  # T: one whole run
    truncation: int = 100  # K: steps per window
    estimators: tuple[str, ...] = WINDOWED  # windowed estimators compared with the reference
    fit_particles: int = 4  # inner runs in flight per windowed estimator (ES: antithetic pairs)
    sigma: float = 0.1  # ES/PES perturbation std in log space
    fit_inner_steps: int = 2_000_000  # every fit's budget; the reference's meta-steps: this / T
    meta_lr: float = 0.15  # Adam's peak step in log space, cosine-decayed to 1% over each fit
    meta_chunk: int = 10  # meta-steps per compiled scan (progress granularity)
    init_lr0: float = 0.03  # every fit starts here
    init_decay_exponent: float = 1.0
    eval_batches: int = 600  # the fixed evaluation batches of the loss at T
    lr0_range: tuple[float, ...] = (1e-3, 10**-0.3)  # the surface box and SMD's bounds
    decay_exponent_range: tuple[float, ...] = (1e-2, 10**2.3)
    surface_samples: int = 200  # Figure-5 surface of the loss at T
    surface_chunk: int = 25
    surface_batch: int = 4
    curve_points: int = 100


PRESETS = {
    "paper": Config(),
    # Quick: the issue's problem, T = 3,000 on Fashion-MNIST, K = 100 (30 windows per run).
    # Budget 90k inner steps per fit: 30 meta-steps of the reference, about 4 minutes of
    # forward mode on a 2-core CPU; 50 evaluation batches as the offline quick preset.
    "quick": Config(
        dataset="fashion-mnist",
        horizon=3000,
        fit_inner_steps=90_000,
        eval_batches=50,
        surface_samples=24,
        surface_chunk=12,
        curve_points=20,
    ),
}


ready = offline_experiment.ready  # the offline experiment's datasets


def validate(config: Config) -> None:
    datasets.check_name(config.dataset)
    if config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r}; choose one of: {', '.join(TASKS)}")
    unknown = [e for e in config.estimators if e not in WINDOWED]
    if unknown or not config.estimators:
        raise ValueError(f"config key 'estimators' must name some of {', '.join(WINDOWED)}, got {config.estimators!r}")
    require(config, "batch_size warm_start_lr decay_steps horizon truncation fit_particles sigma fit_inner_steps "
            "meta_lr meta_chunk init_lr0 init_decay_exponent eval_batches lr0_range decay_exponent_range "
            "surface_samples surface_chunk surface_batch curve_points", POSITIVE)
    require(config, "warm_start_steps", NONNEGATIVE)
    require(config, "momentum", FRACTION)
    if config.horizon % config.truncation:
        raise ValueError(f"config key 'truncation' ({config.truncation}) must divide the horizon ({config.horizon})")
    if config.fit_inner_steps < config.horizon:
        raise ValueError(f"config key 'fit_inner_steps' ({config.fit_inner_steps}) must be at least the horizon "
                         f"({config.horizon}): the reference needs one whole unroll per meta-step")
    offline_experiment.validate(problem(config))


def problem(config: Config) -> offline_experiment.Config:
    """The offline experiment's config of this problem at the one horizon T: its units compute
    the surface, the reference fit and the long runs; its data, warm start and keys are shared."""
    own = dict(horizons=(config.horizon,), init_lr0=(config.init_lr0,),
               init_decay_exponent=(config.init_decay_exponent,), meta_steps=config.fit_inner_steps // config.horizon,
               anneal=True)
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(offline_experiment.Config)
              if hasattr(config, f.name) and f.name not in own}
    return offline_experiment.Config(**shared, **own)


def _spec(config: Config, name: str) -> tuple[str, int, int, float]:
    return name, config.truncation, config.fit_particles, config.sigma


def _budget(config: Config, name: str) -> tuple[int, int]:
    """(meta-steps, inner steps) of a windowed fit: as many whole meta-steps as the budget
    holds after the particles' staggering."""
    setup, unroll = offline_experiment.prepare(problem(config)), _unroll(config)
    est = offline.windowed_estimator(unroll, setup.problem, _spec(config, name))
    steps = max(1, (config.fit_inner_steps - est.init_cost) // est.cost)
    return steps, est.init_cost + steps * est.cost


def _unroll(config: Config):
    return offline_experiment.horizon_unroll(problem(config), config.horizon)


# --- units ------------------------------------------------------------------------------------
def windowed_unit(config: Config, estimator: str) -> dict:
    """Fit the schedule with a windowed estimator; its trajectory, window losses, the fraction
    of hypergradient coordinates the clip bound, and the cost."""
    pconfig = problem(config)
    setup, unroll, bounds = offline_experiment.prepare(pconfig), _unroll(config), offline_experiment.bounds(pconfig)
    spec = _spec(config, estimator)
    steps, inner_steps = _budget(config, estimator)
    meta_lr = (config.meta_lr, steps)
    init_key, key = jax.random.split(jax.random.fold_in(setup.keys["smd"], config.horizon))  # shared by all fits
    start = time.perf_counter()
    state, est_state = offline.windowed_init(unroll, setup.problem, offline.to_raw(config.init_lr0,
                                             config.init_decay_exponent), init_key, meta_lr, bounds, spec)
    keys = jax.random.split(key, steps)
    history = []
    with tqdm(total=steps, desc=label(estimator, config.truncation, config.horizon), unit="meta-step",
              leave=False, dynamic_ncols=True) as bar:
        for first in range(0, steps, config.meta_chunk):
            chunk = keys[first:first + config.meta_chunk]
            (state, est_state), out = offline.windowed_chunk(unroll, setup.problem, state, est_state, chunk,
                                                             meta_lr, bounds, spec)
            history.append(jax.block_until_ready(out))
            bar.update(len(chunk))
    wall = time.perf_counter() - start
    loss, grads, raws = (jax.tree.map(lambda *a: jnp.concatenate(a), *parts) for parts in zip(*history))
    raw = {k: jnp.concatenate([raws[k], state.raw[k][None]]) for k in raws}
    hyper = offline.from_raw(raw)
    clip = offline.smd(unroll, setup.problem, meta_lr, bounds).clip
    clipped = np.mean([np.mean(np.abs(np.asarray(g)) > clip) for g in grads.values()])
    return {"lr0": hyper["lr"], "decay_exponent": hyper["decay_exponent"], "window_loss": loss,
            "clipped_fraction": clipped, "meta_steps": steps, "inner_steps": inner_steps, "wall_time_s": wall}


def reference_unit(config: Config) -> dict:
    """Today's full-horizon forward-mode SMD of the loss at T (the offline experiment's unit)."""
    pconfig = problem(config)
    start = time.perf_counter()
    fit = offline_experiment.smd_unit(pconfig, config.horizon, 0)
    wall = time.perf_counter() - start
    return {**fit, "meta_steps": pconfig.meta_steps, "inner_steps": pconfig.meta_steps * config.horizon,
            "wall_time_s": wall}


def surface_unit(config: Config, chunk: int) -> dict:
    return offline_experiment.surface_unit(problem(config), chunk)


def long_run_unit(config: Config, lr0: float, decay_exponent: float) -> dict:
    return offline_experiment.long_run_unit(problem(config), lr0, decay_exponent)


# --- the experiment ---------------------------------------------------------------------------
def names(config: Config) -> list[str]:
    """Report names of the fits, the reference first: ``smd_full``, ``forward_K100``, ``tbptt_K100``, ..."""
    return [REFERENCE, *(label(e, config.truncation, config.horizon) for e in config.estimators)]


DERIVATIVE_STEP = 3.0  # a forward- or reverse-mode inner step against a plain one (ES, PES), timed


def fit_cost(config: Config, estimator: str) -> float:
    """A fit's work in plain training steps (``estimator="reference"``: ``smd_full``): its inner
    steps, each ``DERIVATIVE_STEP`` plain ones where it is differentiated (forward mode,
    TBPTT), one for ES and PES."""
    steps = config.fit_inner_steps if estimator == "reference" else _budget(config, estimator)[1]
    return steps * (1.0 if estimator in ("es", "pes") else DERIVATIVE_STEP)


def _announce_cost(config: Config, run_dir: RunDir) -> None:
    """Print what the pending fits cost before they start: inner steps, and seconds at the
    plain-training rate measured here (:func:`fit_cost`)."""
    pending = [e for e in ("reference", *config.estimators)
               if not run_dir.has_unit(f"fit_{REFERENCE if e == 'reference' else e}")]
    if not pending:
        return
    steps = {e: config.fit_inner_steps if e == "reference" else _budget(config, e)[1] for e in pending}
    derivative = sum(s for e, s in steps.items() if e not in ("es", "pes"))
    rate = offline_experiment.steps_per_second(problem(config))
    minutes = sum(fit_cost(config, e) for e in pending) / rate / 60
    print(f"[{NAME}] {len(pending)} fits, {sum(steps.values()):,} inner steps, {derivative:,} of them "
          f"differentiated (forward or reverse mode, ~{DERIVATIVE_STEP:g}x a plain step each). Plain training here: "
          f"{rate:.0f} steps/s -> about {minutes:.0f} min on one process", file=sys.stderr)


def run(config: Config, run_dir: RunDir, executor: str = "local", ray_address: str | None = None) -> dict:
    validate(config)
    config = dataclasses.replace(config, dataset=datasets.resolve(config.dataset, PREFERRED,
                                                                  config.data_dir or None))
    run_dir.write_config(config)
    stage = dict(run_dir=run_dir, executor=executor, ray_address=ray_address)
    _announce_cost(config, run_dir)

    chunks = range(config.surface_samples // config.surface_chunk)
    surface = run_units(surface_unit, [Unit(f"surface_c{c}", dict(config=config, chunk=c)) for c in chunks],
                        desc="surface", **stage)
    units = [Unit(f"fit_{REFERENCE}", dict(config=config)), *(
        Unit(f"fit_{e}", dict(config=config, estimator=e), cost=fit_cost(config, e)) for e in config.estimators)]
    fits = {**run_units(reference_unit, units[:1], desc="reference fit", **stage),
            **run_units(windowed_unit, units[1:], desc="windowed fits", **stage)}
    fits = dict(zip(names(config), (fits[u.name] for u in units)))
    finite = {n: f for n, f in fits.items() if np.isfinite(f["lr0"][-1]) and np.isfinite(f["decay_exponent"][-1])}
    long = run_units(long_run_unit, [Unit(f"long_{n}", dict(config=config, lr0=float(f["lr0"][-1]),
                                                            decay_exponent=float(f["decay_exponent"][-1])))
                                     for n, f in finite.items()], desc="long runs", **stage)

    pconfig = problem(config)
    lr0, decay_exponent = offline_experiment.surface_points(pconfig)
    run_dir.save_curves("surface", lr0=lr0, decay_exponent=decay_exponent, lr0_range=config.lr0_range,
                        decay_exponent_range=config.decay_exponent_range,
                        loss=np.concatenate([surface[f"surface_c{c}"]["loss"][0] for c in chunks]))
    for n, f in fits.items():
        run_dir.save_curves(f"fit_{n}", **{k: f[k] for k in ("lr0", "decay_exponent", "inner_steps")},
                            **long.get(f"long_{n}", {}))
    summary = run_dir.write_summary(_summary(config, fits, long))
    plot(run_dir)
    return summary


def _summary(config: Config, fits: dict, long: dict) -> dict:
    """``estimators``: one entry per fit (the issue's schema, plus meta-steps and the ratios to
    the reference); numbers that are not finite are written as null."""
    entries = {}
    for n, f in fits.items():
        run = long.get(f"long_{n}")
        entries[n] = {
            "truncation": None if n == REFERENCE else config.truncation,
            "objective": "loss at T" if n == REFERENCE else "mean training loss over the run",
            "lr0": float(f["lr0"][-1]), "decay_exponent": float(f["decay_exponent"][-1]),
            "final_train_loss": float(run["train_loss"][-1]) if run else math.nan,
            # the windowed estimators' objective, read off the long run's curve points: tells a
            # fit that missed its own optimum from one that found an optimum of another objective
            "mean_train_loss": float(np.mean(run["train_loss"][1:])) if run else math.nan,
            "final_test_error": float(run["test_error"][-1]) if run else math.nan,
            "inner_steps": int(f["inner_steps"]), "meta_steps": int(f["meta_steps"]),
            "wall_time_s": float(f["wall_time_s"]),
            **({"clipped_fraction": float(f["clipped_fraction"])} if "clipped_fraction" in f else {}),
        }
    ref = entries[REFERENCE]
    for e in entries.values():
        e["decay_exponent_ratio"] = e["decay_exponent"] / ref["decay_exponent"]
        e["train_loss_ratio"] = e["final_train_loss"] / ref["final_train_loss"]
        e["wall_time_ratio"] = e["wall_time_s"] / ref["wall_time_s"]
    return {"dataset": config.dataset, "horizon": config.horizon, "truncation": config.truncation,
            "estimators": entries}


# --- figures and report: saved results only ---------------------------------------------------
def _fits(run_dir: RunDir) -> dict:
    return {n: run_dir.load_curves(f"fit_{n}") for n in run_dir.read_summary()["estimators"]}


def plot(run_dir: RunDir) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    surface, fits = run_dir.load_curves("surface"), _fits(run_dir)
    colors = dict(zip(fits, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    widths = {n: 2.6 - 1.8 * i / max(1, len(fits) - 1) for i, n in enumerate(fits)}  # coinciding fits stay visible
    horizon = run_dir.read_summary()["horizon"]

    fig, (ax_surface, ax_path) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    loss = surface["loss"]
    finite = np.isfinite(loss)
    z = np.log10(np.where(finite, loss, loss[finite].max() if finite.any() else 1.0))
    box = [np.log10(surface[k]) for k in ("lr0_range", "decay_exponent_range")]
    gx, gy, gz = offline_experiment.smooth(np.log10(surface["lr0"]), np.log10(surface["decay_exponent"]), z, *box)
    fig.colorbar(ax_surface.contourf(gx, gy, gz, levels=20, cmap="viridis"), ax=ax_surface,
                 label=f"log10 training loss at T = {horizon}")
    for n, f in fits.items():
        x, y = np.log10(f["lr0"]), np.log10(f["decay_exponent"])
        ax_surface.plot(x, y, color=colors[n], lw=widths[n] / 2)
        ax_surface.plot(x[-1], y[-1], "*", color=colors[n], ms=12, mec="white", label=n)
        ax_path.plot(np.linspace(0, f["inner_steps"], len(y)), f["decay_exponent"], color=colors[n], lw=widths[n],
                     label=n)
    ax_surface.set(xlabel="log10 lr0", ylabel="log10 decay exponent", title="fitted schedules on the surface")
    ax_surface.legend(fontsize=8)
    ax_path.set(yscale="log", xlabel="inner steps spent", ylabel="decay exponent", title="fits under one budget")
    run_dir.save_figure(fig, "fits")

    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for n, f in fits.items():
        if "train_loss" in f:
            ax_loss.plot(f["step"], f["train_loss"], color=colors[n], lw=widths[n], label=n)
            ax_err.plot(f["step"], f["test_error"], color=colors[n], lw=widths[n], label=n)
    ax_loss.set(yscale="log", xlabel="step", ylabel="training loss")
    ax_err.set(xlabel="step", ylabel="test error")
    ax_loss.legend(fontsize=8)
    fig.suptitle(f"Training {horizon} steps with each fitted schedule")
    run_dir.save_figure(fig, "long_runs")


def report(run_dir: RunDir, prefix: str = "") -> str:
    s, config = run_dir.read_summary(), run_dir.read_config()
    rows = "\n".join(
        f"| {n} | {v['objective']} | {fmt(v['lr0'])} | {fmt(v['decay_exponent'])} ({fmt(v['decay_exponent_ratio'])}x) | "
        f"{fmt(v['final_train_loss'], '.4f')} ({fmt(v['train_loss_ratio'])}x) | {fmt(v['mean_train_loss'], '.4f')} | "
        f"{fmt(v['final_test_error'], '.4f')} | "
        f"{v['inner_steps']:,} / {v['meta_steps']} | {fmt(v['wall_time_s'], '.0f')} ({fmt(v['wall_time_ratio'])}x) |"
        for n, v in s["estimators"].items())
    return f"""## Beating the short-horizon bias: windowed estimators on the offline task

Dataset: **{s['dataset']}**. The offline problem (lr_t = lr0 (1 + t/{config['decay_steps']:g})^(-decay exponent),
momentum {config['momentum']:g}, {config['warm_start_steps']}-step warm start) at one whole-run horizon
T = {s['horizon']}. Windowed estimators see K = {s['truncation']} steps per meta-step
({config['fit_particles']} staggered inner runs each, ES/PES: antithetic pairs, sigma {config['sigma']:g}) and fit the
mean training loss over the run; `{REFERENCE}` is full-horizon forward-mode SMD of the loss at T. Same budget of
inner steps, same start ({config['init_lr0']:g}, {config['init_decay_exponent']:g}) and update for all. Every
schedule is then trained for T steps and judged by its training loss at T on the fixed evaluation batches.
"Mean train loss" is the mean of the long run's {config['curve_points']} curve points, the windowed
estimators' objective. Ratios in brackets are to `{REFERENCE}`; wall time is each fit's, compilation included, the fits one after
another in one process.

| fit | objective | lr0 | decay exponent | train loss at T | mean train loss | test error | inner steps / meta-steps | wall s |
|---|---|---|---|---|---|---|---|---|
{rows}

![fitted schedules on the surface of horizon T, and their paths]({prefix}fits.png)

![training with each fitted schedule]({prefix}long_runs.png)
"""
