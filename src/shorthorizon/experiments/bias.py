"""Would a short horizon mis-tune my learning rate, and what would it cost me at the end?

For a task (built-in or ``package.module:factory``) and a base optimizer, each seed fits the
hyperparameters that minimise the training loss after T steps from a warm start (the
reference), and those that minimise it after each short horizon K (the paper's short-horizon
objective). The schedule is the offline command's: an inverse-time decay of the lr (lr0 and the
decay exponent fitted) or a constant lr; any other hyperparameter named in ``adapt`` (weight
decay, momentum) is fitted as a constant. Every fit is found the project's cheap way: log-uniform
samples over the box, all horizons scored from one vmapped unroll on shared batches; a zoom
around each horizon's best sample; an SMD refinement where a meta-step is affordable. Every
fit is then trained for T steps and judged there: its training loss on the fixed evaluation
batches and its test error. Seeds differ in initialization, batches and samples; every number
is reported with its seeds' values, mean and 95% interval, and every ratio short/reference is
taken within a seed (:mod:`shorthorizon.stats`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass

import jax
import numpy as np

from shorthorizon import optim
from shorthorizon.config import ANY, NONNEGATIVE, POSITIVE, items, key, low_high, one_of, optional, seeded
from shorthorizon.meta.offline_fit import (OfflineConfig, OfflineFit, best, optimizer_text, resolve_dataset,
                                           surface_points, validate_problem, zoom_points)
from shorthorizon.meta.offline_fit import ready  # noqa: F401 (the experiment's ready: a dataset present?)
from shorthorizon.meta.smd import EVALUATION_COST
from shorthorizon.report.figures import interval_text, pyplot
from shorthorizon.results import RunDir
from shorthorizon.runners import Unit, run_units
from shorthorizon.stats import interval, log_interval

NAME = "bias"
FLAGS = ("task", "dataset", "optimizer", "adapt", "horizon", "short", "seeds", "schedule")
SCHEDULES = ("inverse-time", "constant")
# The optimizer families' boxes of the schedule's lr and their warm-start lr: the heavy ball's
# (and SGD's) are the paper's; Adam's step is ~lr per coordinate whatever the gradient's scale,
# so its useful lr lies two decades lower.
FAMILIES = {"momentum": ((1e-3, 10**-0.3), 0.1), "sgd": ((1e-3, 10**-0.3), 0.1),
            "adam": ((1e-5, 1e-2), 1e-3), "adamw": ((1e-5, 1e-2), 1e-3)}
ADAPT_RANGES = {"weight_decay": (1e-6, 1.0), "momentum": (0.0, 0.999)}  # bounds of adapt entries without them
EDGE = 0.05  # decades: a fit this close to a bound of the box is flagged


@dataclass(frozen=True)
class Config(OfflineConfig):
    """The offline problem's keys (:class:`~shorthorizon.meta.offline_fit.OfflineConfig`) and the study's."""

    horizon: int = key(20000, POSITIVE)  # T: the run the hyperparameters are for
    short: tuple[int, ...] = key((100, 1000), items(POSITIVE, distinct=True))  # K: the horizons they might be tuned on
    seeds: int = 3
    schedule: str = key("inverse-time", one_of(SCHEDULES))  # inverse-time: lr0 and decay exponent; constant: lr
    adapt: tuple[str, ...] = key((), ANY)  # more hyperparameters fitted as constants: NAME or NAME:LOW:HIGH
    lr0_range: tuple[float, ...] = key((), optional(low_high(POSITIVE)))  # the lr's box; empty: the family's
    warm_start_lr: float = key(0.0, NONNEGATIVE)  # 0: the optimizer family's
    surface_samples: int = 128
    surface_chunk: int = 32
    zoom_samples: int = key(16, NONNEGATIVE)  # more samples around each horizon's best one (0: none)
    zoom_width: float = key(0.3, POSITIVE)  # their box: the best sample +- this many decades on each axis
    meta_steps: int = key(0, NONNEGATIVE)  # > 0: SMD refines each horizon up to smd_max_horizon from its best sample
    smd_max_horizon: int = key(1000, NONNEGATIVE)


PRESETS = {
    "paper": Config(),
    # Quick: the offline quick preset's problem (Fashion-MNIST, T = 3,000, K = 100, 50
    # evaluation batches), 3 seeds; 48 surface samples and a zoom of 16 per horizon and seed.
    "quick": Config(dataset="fashion-mnist", horizon=3000, short=(100,), eval_batches=50, surface_samples=48,
                    surface_chunk=48, curve_points=10),
}


def resolved(config: Config) -> Config:
    """``config`` with the optimizer family's lr box and warm-start lr where it leaves them open."""
    box, warm = FAMILIES.get(config.optimizer, FAMILIES["momentum"])
    return dataclasses.replace(config, lr0_range=config.lr0_range or box, warm_start_lr=config.warm_start_lr or warm)


def space(config: Config) -> optim.LogSpace:
    """The fitted hyperparameters and their box: the lr, the decay exponent (inverse-time
    schedule) and the ``adapt`` entries."""
    schedule = (("lr", *config.lr0_range),) + (
        (("decay_exponent", *config.decay_exponent_range),) if config.schedule == "inverse-time" else ())
    return optim.LogSpace(schedule + optim.log_space(config.adapt, ADAPT_RANGES).ranges)


def horizons(config: Config) -> tuple[int, ...]:
    return tuple(sorted({*config.short, config.horizon}))


def _refined(config: Config) -> list[int]:
    """The horizons SMD refines (``meta_steps`` > 0, up to ``smd_max_horizon``)."""
    return [h for h in horizons(config) if config.meta_steps and h <= config.smd_max_horizon]


def validate(config: Config) -> None:
    config = resolved(config)
    validate_problem(config, config.horizon)
    if max(config.short) >= config.horizon:
        raise ValueError(f"config key 'short' must hold distinct horizons below horizon={config.horizon}, "
                         f"got {config.short!r}")
    try:
        names = space(config).names
    except ValueError as err:
        raise ValueError(f"config key 'adapt': {err}") from None
    own = set(optim.make_optimizer(config.optimizer).hyperparameters())
    unknown = sorted(set(names) - own - {"decay_exponent"})
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"config key 'adapt' must name distinct hyperparameters of optimizer {config.optimizer!r} "
                         f"({', '.join(sorted(own - {'lr'}))}), got {config.adapt!r}")


# --- units: one seed each ------------------------------------------------------------------------
def problem(config: Config, seed: int) -> OfflineFit:
    """Seed ``seed``'s problem (initialization, batches, samples): built once per process."""
    return OfflineFit.from_config(seeded(config, seed), space=space(config))


def surface_unit(config: Config, seed: int, chunk: int) -> dict:
    """The training loss at every horizon of one chunk of the seed's samples."""
    points = surface_points(seeded(config, seed), space(config), chunk)
    return {"loss": problem(config, seed).surface(points, horizons(config))}


def zoom_unit(config: Config, seed: int, horizon: int, center: dict) -> dict:
    """The loss at ``horizon`` of :func:`zoom_points` around ``center`` (the first: itself)."""
    points = zoom_points(seeded(config, seed), horizon, center, config.zoom_width, config.zoom_samples,
                         space(config))
    return {**points, "loss": problem(config, seed).surface(points, (horizon,))[0]}


def refine_unit(config: Config, seed: int, horizon: int, start: dict) -> dict:
    """SMD of the loss at ``horizon`` from ``start``: its last point and meta-objective."""
    fit = problem(config, seed)
    key = jax.random.fold_in(fit.keys["smd"], horizon)
    out = fit.fit(horizon, start, jax.random.split(key, config.meta_steps), f"SMD T={horizon} seed {seed}")
    return {k: v[-1] for k, v in out.items() if k in start} | {"loss": out["meta_objective"]}


def long_run_unit(config: Config, seed: int, values: dict) -> dict:
    """Train T steps with the fitted ``values``: training loss and test error along the run."""
    return problem(config, seed).long_run(values, config.horizon)


# --- the study ---------------------------------------------------------------------------------
def estimated_cost(config: Config) -> dict:
    """Plain training steps per stage (every seed): the surface trains each sample T steps and
    evaluates it at every horizon; the zooms, refinements and long runs likewise."""
    evaluation = config.eval_batches * EVALUATION_COST
    work = 2.0 * len(space(config).names)  # a forward-mode meta-step, in plain passes
    cost = {"surface": config.surface_samples * (config.horizon + len(horizons(config)) * evaluation),
            "zoom": config.zoom_samples * sum(h + evaluation for h in horizons(config)),
            "refine": config.meta_steps * work * sum(h + evaluation for h in _refined(config)),
            "long runs": len(horizons(config)) * (config.horizon + config.curve_points * evaluation)}
    return {k: v * config.seeds for k, v in cost.items() if v}


def programs(config: Config) -> int:
    """The programs a run compiles (seeds share them): a surface, a zoom and an SMD refinement
    per horizon, a long run."""
    return 2 + (len(horizons(config)) if config.zoom_samples > 1 else 0) + len(_refined(config))


def run(config: Config, run_dir: RunDir, executor: str = "local", ray_address: str | None = None) -> dict:
    validate(config)
    config = resolved(resolve_dataset(config))
    run_dir.write_config(config)
    stage = dict(run_dir=run_dir, executor=executor, ray_address=ray_address)
    names, seeds, hs = space(config).names, range(config.seeds), horizons(config)
    start = {name: float(np.sqrt(low * high)) for name, low, high in space(config).ranges}
    if not run_dir.has_unit(f"long_s{config.seeds - 1}_T{hs[-1]}"):
        problem(config, 0).announce(NAME, estimated_cost(config), min(hs), start, programs(config))

    chunks = range(config.surface_samples // config.surface_chunk)
    surface = run_units(surface_unit, [Unit(f"surface_s{s}_c{c}", dict(config=config, seed=s, chunk=c))
                                       for s in seeds for c in chunks], desc="surfaces", **stage)
    candidates = {}  # (seed, horizon) -> points and their loss at the horizon
    for s in seeds:
        points = surface_points(seeded(config, s), space(config))
        loss = np.concatenate([surface[f"surface_s{s}_c{c}"]["loss"] for c in chunks], axis=1)
        for i, h in enumerate(hs):
            candidates[s, h] = {**points, "loss": loss[i]}
    for stage_name, fn, wanted in (("zoom", zoom_unit, config.zoom_samples > 1),
                                   ("refine", refine_unit, config.meta_steps > 0)):
        keys = [(s, h) for s in seeds for h in (hs if fn is zoom_unit else _refined(config)) if wanted]
        units = [Unit(f"{stage_name}_s{s}_T{h}", dict(config=config, seed=s, horizon=h,
                                                      **{"center" if fn is zoom_unit else "start":
                                                         _best(candidates[s, h], names)}), cost=h)
                 for s, h in keys]
        done = run_units(fn, units, desc=stage_name, **stage)
        for (s, h), unit in zip(keys, units):
            candidates[s, h] = {k: np.concatenate([candidates[s, h][k], np.atleast_1d(done[unit.name][k])])
                                for k in (*names, "loss")}
    fits = {(s, h): _best(candidates[s, h], names) for s in seeds for h in hs}
    long = run_units(long_run_unit, [Unit(f"long_s{s}_T{h}", dict(config=config, seed=s, values=fits[s, h]))
                                     for s in seeds for h in hs if fits[s, h] is not None], desc="long runs", **stage)
    summary = _summary(config, fits, candidates, long)
    for row in summary["rows"].values():
        for flag in row["at_edge"]:
            print(f"[{NAME}] {flag}", file=sys.stderr)
    run_dir.save_curves("fits", horizon=hs, seed=list(seeds), **{
        name: [[np.nan if fits[s, h] is None else fits[s, h][name] for h in hs] for s in seeds] for name in names})
    summary = run_dir.write_summary(summary)
    plot(run_dir)
    return summary


def _best(candidates: dict, names) -> dict | None:
    """The candidate with the lowest finite loss (name -> value), None if every one diverged."""
    i = best(candidates["loss"])[0]
    return None if not np.isfinite(candidates["loss"][i]) else {k: float(candidates[k][i]) for k in names}


def _edge(config: Config, row: str, seed: int, values: dict) -> list[str]:
    """Lines naming each value of a fit within ``EDGE`` decades of its box's bound, and the key
    that widens the box."""
    keys = {"lr": "lr0_range", "decay_exponent": "decay_exponent_range"}
    out = []
    for name, low, high in space(config).ranges:
        for bound, side in ((low, "lower"), (high, "upper")):
            if bound > 0 and abs(math.log10(values[name] / bound)) < EDGE:
                out.append(f"{row}, seed {seed}: {name} {values[name]:.3g} is at the {side} bound of its box "
                           f"({bound:g}); widen it with --set {keys.get(name, 'adapt')}="
                           + ("LOW,HIGH" if name in keys else f"{name}:LOW:HIGH"))
    return out


def _summary(config: Config, fits: dict, candidates: dict, long: dict) -> dict:
    """One row per horizon (the reference is T): per fitted hyperparameter, its loss at its own
    horizon, its training loss and test error at T, the seeds' values with mean and interval;
    the ratios to the reference within each seed, with their geometric mean and interval."""
    names, seeds = space(config).names, range(config.seeds)

    def at_t(s, h, key):
        run = long.get(f"long_s{s}_T{h}")
        return math.nan if run is None else float(run[key][-1])

    rows = {}
    for h in horizons(config):
        row = "reference" if h == config.horizon else f"K={h}"
        value = {n: [math.nan if fits[s, h] is None else fits[s, h][n] for s in seeds] for n in names}
        rows[row] = {
            "horizon": h, "hyper": {n: log_interval(v) for n, v in value.items()},
            "objective": interval([np.nanmin(np.where(np.isfinite(candidates[s, h]["loss"]), candidates[s, h]["loss"],
                                                      np.nan)) if fits[s, h] else math.nan for s in seeds]),
            "train_loss_at_T": interval([at_t(s, h, "train_loss") for s in seeds]),
            "test_error_at_T": interval([at_t(s, h, "test_error") for s in seeds]),
            "at_edge": [line for s in seeds if fits[s, h] for line in _edge(config, row, s, fits[s, h])],
        }
    reference = rows["reference"]
    for row in rows.values():
        row["ratio_to_reference"] = {
            **{n: log_interval(_ratio(row["hyper"][n], reference["hyper"][n])) for n in names},
            "train_loss_at_T": log_interval(_ratio(row["train_loss_at_T"], reference["train_loss_at_T"]))}
    return {"dataset": config.dataset, "task": config.task, "optimizer": config.optimizer, "schedule": config.schedule,
            "horizon": config.horizon, "seeds": config.seeds, "fitted": list(names),
            "interval": ("95% Student t over seeds; fitted values and ratios (taken within each seed): geometric "
                         "mean and the t interval of their logs"),
            "rows": rows}


def _ratio(stat: dict, reference: dict) -> np.ndarray:
    """Per seed, ``stat``'s value over the reference's (NaN where either diverged)."""
    return np.array(stat["values"], float) / np.array(reference["values"], float)


# --- figure and report: saved results only ------------------------------------------------------
def plot(run_dir: RunDir) -> None:
    plt = pyplot()

    s = run_dir.read_summary()
    short = {r: v for r, v in s["rows"].items() if r != "reference"}
    panels = [("train_loss_at_T", f"training loss at T = {s['horizon']}")] + [(n, n) for n in s["fitted"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), layout="constrained", squeeze=False)
    ks = [v["horizon"] for v in short.values()]
    for ax, (quantity, label) in zip(axes[0], panels):
        def of(row):
            return row[quantity] if quantity == "train_loss_at_T" else row["hyper"][quantity]

        ref = of(s["rows"]["reference"])
        # a t interval of few seeds can reach below zero, which a log axis cannot show: such a
        # bound is drawn at a tenth of the panel's smallest value, marked with a "v"
        seen = [v for row in s["rows"].values() for v in of(row)["values"] if v is not None and v > 0]
        floor = min(seen, default=1.0) / 10
        if ref["mean"] is not None:
            ax.axhline(ref["mean"], color="black", label=f"tuned at T = {s['horizon']}")
            if ref["low"] is not None:
                ax.axhspan(max(ref["low"], floor), ref["high"], color="0.8", alpha=0.6, label="its 95% interval")
        for k, row in zip(ks, short.values()):
            values = [v for v in of(row)["values"] if v is not None]
            ax.plot([k] * len(values), values, ".", color="tab:blue", alpha=0.5)
            if of(row)["mean"] is not None:
                low, high = of(row)["low"], of(row)["high"]
                err = None if low is None else [[of(row)["mean"] - max(low, floor)], [high - of(row)["mean"]]]
                ax.errorbar([k], [of(row)["mean"]], yerr=err, fmt="o", color="tab:blue", capsize=4)
                if low is not None and low < floor:
                    ax.plot([k], [floor], "v", color="tab:blue")
        ax.set(xscale="log", yscale="log", xlabel="tuning horizon K", ylabel=label)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Tuned on a short horizon K, judged at T = {s['horizon']} ({s['seeds']} seeds: points, mean, "
                 f"95% interval)")
    run_dir.save_figure(fig, "bias")


def report(run_dir: RunDir, prefix: str = "") -> str:
    s, config = run_dir.read_summary(), run_dir.read_config()
    names = s["fitted"]
    head = " | ".join(["fit", *names, "loss at its horizon", "train loss at T", "x reference", "test error at T"])
    rows = "\n".join(
        f"| {r} | " + " | ".join([*(interval_text(v["hyper"][n]) for n in names),
                                  *(interval_text(v[k], ".4f") for k in ("objective", "train_loss_at_T")),
                                  interval_text(v["ratio_to_reference"]["train_loss_at_T"]),
                                  interval_text(v["test_error_at_T"], ".4f")]) + " |" for r, v in s["rows"].items())
    ratios = "\n".join(f"- {r}: " + ", ".join(f"{n} {interval_text(v['ratio_to_reference'][n])}x" for n in names)
                       for r, v in s["rows"].items() if r != "reference")
    edges = [line for v in s["rows"].values() for line in v["at_edge"]]
    warning = ("\n**At the edge of the box** (the true optimum may lie outside it):\n\n"
               + "\n".join(f"- {line}" for line in edges) + "\n") if edges else ""
    return f"""## Would a short horizon mis-tune it? (`shorthorizon bias`)

Task **{s['task']}** on **{s['dataset']}**, {optimizer_text(config)}; schedule: {s['schedule']}
({'lr_t = lr0 (1 + t/' + format(config['decay_steps'], 'g') + ')^(-decay_exponent)'
  if s['schedule'] == 'inverse-time' else 'a constant lr'}), fitted: {', '.join(names)}. Each of {s['seeds']} seeds
fits them for the loss after each horizon (the reference: T = {s['horizon']}) from a shared
{config['warm_start_steps']}-step warm start, then trains every fit for T steps. Cells: mean over seeds and
{s['interval']}.

| {head} |
|{'---|' * (len(names) + 5)}
{rows}

Ratios to the reference (short / reference, within each seed):

{ratios}
{warning}
![loss at T and fitted values against the tuning horizon]({prefix}bias.png)
"""
