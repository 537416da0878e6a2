"""Beating the short-horizon bias on the paper's offline task with windowed estimators.

The question a user with a small budget has: *I can only afford K-step windows of training
per meta-gradient; can I still fit the schedule that is best for the whole run?* The problem
is the offline experiment's (MLP, momentum, warm start, the paper's inverse-time schedule of lr0
and decay exponent or any ``schedule`` and ``adapt``, laid over the run;
:class:`shorthorizon.offline_problem.OfflineFit`) at one whole-run horizon T.

- **Windowed estimators** (:meth:`shorthorizon.meta.offline.Offline.windowed`): inner runs of
  T steps from the warm start, seen K steps at a time, one meta-step per window; particles at
  staggered phases, each restarted when its run reaches T. Truncated forward mode (the paper's
  short-horizon SMD, windowed), truncated reverse mode (TBPTT), ES, PES and NRES. Their whole-run
  objective is the **mean training loss over the run** (each window contributes the minibatch
  losses of its steps): with the loss at T alone, every window but the last would carry no
  signal.
- **The reference** (``smd_full``): full-horizon forward-mode SMD of the **loss at T**
  on the fixed evaluation batches, unrolling all T steps per meta-step.

Every fit gets the same budget of inner steps (``fit_inner_steps``, counting every particle's
trajectories and the staggering), starts from the same point and takes the same SMD update
(hypergradients clipped as the paper's, Adam cosine-decayed over the fit, values kept in the
box). Every fitted schedule is judged by one yardstick, the paper's: the training loss after T
steps from the warm start on the fixed evaluation batches (and the test error), measured by
training it once more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import numpy as np

from shorthorizon.config import POSITIVE, items, key, one_of
from shorthorizon.hypergrad import ESTIMATORS, WINDOWED, make_estimator
from shorthorizon.experiments import pipeline
from shorthorizon.experiments.pipeline import (announce, begin, box_ranges, configured, edge_rounds, judged,
                                               meta_steps_bar, named, outside, problem, refine_cost, refine_unit, say)
from shorthorizon.offline_problem import OfflineConfig, lr0_named, refuse_fd, space, surface_points, validate_problem
from shorthorizon.offline_problem import ready  # noqa: F401 (the experiment's ready: a dataset present?)
from shorthorizon.report.truncated import REFERENCE, plot, report  # noqa: F401 (the experiment's figures and section)
from shorthorizon.results import RunDir
from shorthorizon.runners import Unit, seed_name
from shorthorizon.stats import FACTORS, UNBOUNDED, over_seeds

NAME = "truncated"
FLAGS = ("dataset",)
# The headline numbers (dotted paths into a seed's summary; {fit}: each fit's name, :func:`names`),
# each summarised over seeds as its kind says (stats.summarised: FACTORS, by its logs, or its natural bounds). The ratios
# are to the reference of the same seed; {name}: each fitted value's (lr0, the decay exponent, ...).
HEADLINES = {"estimators.{fit}.{name}": FACTORS, "estimators.{fit}.final_train_loss": UNBOUNDED,
             "estimators.{fit}.{name}_ratio": FACTORS, "estimators.{fit}.train_loss_ratio": FACTORS}


@dataclass(frozen=True)
class Config(OfflineConfig):
    """Defaults: the paper's offline problem at its longest horizon (MNIST where present)."""

    horizon: int = key(20000, POSITIVE)  # T: one whole run
    truncation: int = key(100, POSITIVE)  # K: steps per window
    estimators: tuple[str, ...] = key(WINDOWED, items(one_of(ESTIMATORS), distinct=True))  # compared with the reference
    fit_particles: int = key(4, POSITIVE)  # inner runs in flight per windowed estimator (ES: antithetic pairs)
    sigma: float = key(0.1, POSITIVE)  # ES/PES/NRES perturbation std in log space
    fit_inner_steps: int = key(2_000_000, POSITIVE)  # every fit's budget; the reference's meta-steps: this / T
    meta_lr: float = 0.15  # Adam's peak step in log space, cosine-decayed to 1% over each fit
    meta_chunk: int = 10  # meta-steps per compiled scan (progress granularity)
    init_lr0: float = key(0.03, POSITIVE)  # every fit starts here, moved onto the box (any other fitted value:
    init_decay_exponent: float = key(1.0, POSITIVE)  # at the middle of its box)
    surface_samples: int = 200  # Figure-5 surface of the loss at T
    surface_chunk: int = 25
    surface_batch: int = 4

    def smd_settings(self) -> dict:
        """The reference's Adam step cosine-decays over its meta-steps."""
        return {"meta_lr": (self.meta_lr, _reference_steps(self))}


PRESETS = {
    "paper": Config(),
    # Quick: T = 3,000 on Fashion-MNIST, K = 100 (30 windows per run). Budget 90k inner steps
    # per fit: 30 meta-steps of the reference, a few minutes of forward mode on a CPU; 50
    # evaluation batches as the offline quick preset. TBPTT is left out: it is truncated forward
    # mode's estimator in reverse mode (the same hypergradient), and their quick fits agreed
    # within 2% (lr0 0.0363 / 0.0360, decay exponent 56.6 / 55.6) at a sixth of the command's time.
    "quick": Config(
        dataset="fashion-mnist",
        estimators=tuple(e for e in WINDOWED if e != "reverse"),
        horizon=3000,
        fit_inner_steps=90_000,
        eval_batches=50,
        surface_samples=24,
        surface_chunk=12,
        curve_points=20,
    ),
}


def validate(config: Config) -> None:
    validate_problem(config, config.horizon)
    if config.horizon % config.truncation:
        raise ValueError(f"config key 'truncation' ({config.truncation}) must divide the horizon ({config.horizon})")
    refuse_fd("estimators", config.estimators, "among " + ", ".join(e for e in ESTIMATORS if e != "fd"))
    if config.fit_inner_steps < config.horizon:
        raise ValueError(f"config key 'fit_inner_steps' ({config.fit_inner_steps}) must be at least the horizon "
                         f"({config.horizon}): the reference needs one whole unroll per meta-step")


def windowed(config: Config, name: str):
    """The windowed estimator ``name`` of a fit: K-step windows, ``fit_particles`` staggered runs."""
    return make_estimator(name, truncation=config.truncation, particles=config.fit_particles, sigma=config.sigma)


def _reference_steps(config: Config) -> int:
    return config.fit_inner_steps // config.horizon


# --- units ------------------------------------------------------------------------------------
def fit_unit(config: Config, estimator: str, start: dict) -> dict:
    """Fit the schedule from ``start`` with ``estimator``: ``reference`` (full-horizon forward-mode
    SMD of the loss at T, :func:`~shorthorizon.experiments.pipeline.refine_unit`) or a windowed
    one (with its window losses and the fraction of hypergradient coordinates the clip bound);
    its trajectory, wall time, meta-steps and inner steps spent."""
    if estimator == "reference":
        steps = _reference_steps(config)
        return {**refine_unit(config, config.horizon, start, steps, config.horizon), "meta_steps": steps,
                "inner_steps": steps * config.horizon}
    fit = problem(config, config.horizon)
    est = windowed(config, estimator)
    steps, spent = fit.windowed_budget(est, config.horizon, config.fit_inner_steps)
    key = jax.random.fold_in(fit.keys["smd"], config.horizon)  # shared by all fits
    with meta_steps_bar(steps, est.label(config.horizon)) as progress:
        result = fit.windowed_fit(est, config.horizon, start, steps, key, progress)
    return {**result, "meta_steps": steps, "inner_steps": spent}


# --- the experiment ---------------------------------------------------------------------------
def names(config: Config) -> list[str]:
    """Report names of the fits, the reference first: ``smd_full``, ``forward_K100``, ``tbptt_K100``, ..."""
    return [REFERENCE, *(windowed(config, e).label(config.horizon) for e in config.estimators)]


def fit_cost(config: Config, estimator: str) -> float:
    """A fit's work in plain training steps: its budget as spent (whole meta-steps), each inner
    step the estimator's ``step_work`` plain ones (``estimator="reference"``: ``smd_full``, an SMD
    run of the loss at T: :func:`~shorthorizon.experiments.pipeline.refine_cost`)."""
    if estimator == "reference":
        return refine_cost(config, config.horizon, _reference_steps(config))
    est = windowed(config, estimator)
    spent = problem(config, config.horizon).windowed_budget(est, config.horizon, config.fit_inner_steps)[1]
    return spent * est.step_work(len(space(config).names))


def headlines(config: Config) -> dict:
    """:data:`HEADLINES` of the config's fits and fitted values (each fit's numbers together; the
    reference's ratios, to itself, are 1 and left out)."""
    return {path: kind for path, kind in pipeline.headlines(HEADLINES, config, "fit", names(config)).items()
            if not (path.startswith(f"estimators.{REFERENCE}.") and "ratio" in path)}


def run(config: Config, run_dir: RunDir, executor: str = "local", ray_address: str | None = None) -> dict:
    config, seeds, sweep = begin(validate, config, run_dir, executor, ray_address)
    label, start = dict(zip(("reference", *config.estimators), names(config))), configured(config)[0]  # fit -> name
    if not run_dir.has_unit(seed_name(f"long_{names(config)[-1]}", config.seeds - 1)):  # seeds share programs
        announce(problem(config, config.horizon), NAME, {_unit(e): config.seeds * fit_cost(config, e) for e in label},
                 config.horizon, start)
    say(NAME, outside(config))
    surface = sweep.surface(seeds, (config.horizon,), config.horizon)

    def unit(name: str, estimator: str, box: Config) -> Unit:  # a fit from the start in ``box``
        return Unit(name, dict(config=box, estimator=estimator, start=start), cost=fit_cost(config, estimator))

    fits = sweep.run(fit_unit, [{e: unit(f"fit_{_unit(e)}", e, s) for e in label} for s in seeds], desc="fits")
    boxes = [dict.fromkeys(label, s) for s in seeds]  # each fit's box: widened where it ended at an edge
    # SMD keeps a fit inside its box: one that ends at an edge fits again in a wider one
    for round_, wider in edge_rounds(NAME, config.widen, "fitting again", label, boxes,
                                     lambda: [{e: _fitted(s, f) for e, f in fit.items()} for s, fit in zip(seeds, fits)]):
        again = sweep.run(fit_unit, [{e: unit(f"widen{round_}_fit_{_unit(e)}", e, moved) for e, (moved, _) in by.items()}
                                     for by in wider], desc=f"widened fits {round_}")
        for fit, out in zip(fits, again):
            fit.update(out)
    long = sweep.long_runs(seeds, [{e: _fitted(s, f) for e, f in fit.items()} for s, fit in zip(seeds, fits)], label,
                           config.horizon)
    per_seed = []
    for k, s in enumerate(seeds):
        run_dir.save_curves(seed_name("surface", k), **lr0_named(surface_points(s)), **box_ranges(s), loss=surface[k][0])
        for e, f in fits[k].items():
            run_dir.save_curves(seed_name(f"fit_{label[e]}", k), **long[k].get(e, {}), inner_steps=f["inner_steps"],
                                **lr0_named({v: f[v] for v in space(s).names}))
        per_seed.append(_summary(s, k, label, fits[k], long[k], boxes[k]))
        say(NAME, [line for e in per_seed[-1]["estimators"].values() for line in e["at_edge"]])
    summary = run_dir.write_summary(over_seeds(per_seed, headlines(config)))
    plot(run_dir)
    return summary


def _unit(estimator: str) -> str:
    """The name a fit's units store it under: the reference's ``smd_full``, the estimator's own."""
    return REFERENCE if estimator == "reference" else estimator


def _fitted(config: Config, fit: dict) -> dict | None:
    """Where a fit ended (name -> value), None where it diverged (not finite)."""
    end = {k: float(fit[k][-1]) for k in space(config).names}
    return end if np.isfinite(list(end.values())).all() else None


def _summary(config: Config, seed: int, label: dict, fits: dict, long: dict, boxes: dict) -> dict:
    """``estimators``: one entry per fit (what it fitted and how it did, meta-steps, the ratios to
    the reference, its box where it was widened, and where it still ended at an edge of it: SMD
    keeps every fit inside it, so a fit there may be held back by it); numbers that are not
    finite are written as null (a diverged long run's: :func:`~shorthorizon.experiments.pipeline.judged`)."""
    entries = {}
    for e, f in fits.items():
        run = long.get(e)
        entries[label[e]] = {
            "truncation": None if e == "reference" else config.truncation,
            "objective": "loss at T" if e == "reference" else "mean training loss over the run",
            **lr0_named({v: float(f[v][-1]) for v in space(config).names}),
            **judged(config, boxes[e], label[e], seed, _fitted(config, f), run),
            # the windowed estimators' objective, read off the long run's curve points: tells a
            # fit that missed its own optimum from one that found an optimum of another objective
            "mean_train_loss": float(np.mean(run["train_loss"][1:])) if run else math.nan,
            "inner_steps": int(f["inner_steps"]), "meta_steps": int(f["meta_steps"]),
            "wall_time_s": float(f["wall_time_s"]),
            **({"clipped_fraction": float(f["clipped_fraction"])} if "clipped_fraction" in f else {}),
        }
    ref = entries[REFERENCE]
    for e in entries.values():
        e.update({f"{v}_ratio": e[v] / ref[v] for v in named(config)})
        e["train_loss_ratio"] = e["final_train_loss"] / ref["final_train_loss"]
        e["wall_time_ratio"] = e["wall_time_s"] / ref["wall_time_s"]
    return {"dataset": config.dataset, "horizon": config.horizon, "truncation": config.truncation,
            "estimators": entries}
