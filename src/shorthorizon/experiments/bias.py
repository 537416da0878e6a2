"""Would tuning on a short horizon mis-tune my learning rate, and what would it cost me at the end?

For a task (built-in or ``package.module:factory``), a base optimizer and a schedule family
(``optim.SCHEDULES``: the paper's inverse-time decay, constant, cosine, warmup-cosine, linear,
warmup-stable-decay), each seed fits the hyperparameters that minimise the training loss after T
steps from a warm start (the *reference*, the schedule laid over T), and those a practitioner
would pick from K-step trials under three protocols:

- ``meta`` (the paper's): the schedule laid over T, fitted for the loss after K. For a family
  whose shape depends on the run's length (cosine, ...) this is ``rung``, so it applies to the
  length-free ones (inverse-time, constant);
- ``rerun``: short trial runs with the schedule laid over K (annealed to the trial's end), fitted
  for the loss after K, the winner then laid over T. For a length-free family it is ``meta``,
  so it applies to the others;
- ``rung`` (early stopping: successive halving, Hyperband, ASHA, Optuna's pruners): every trial
  runs the schedule laid over T and is judged at checkpoint K. Its scores are the reference
  surface's own prefix values (no training of its own), and it takes the best sample, no zoom.

Every fit is found the pipeline's way (:mod:`shorthorizon.experiments.pipeline`): log-uniform
samples of the box scored at every horizon, a zoom around the best, an SMD refinement where a
meta-step is affordable; it is then trained for T steps and judged there (training loss on the
fixed evaluation batches, test error). Each fit also says what its horizon *can* identify: the
span of the values within ``tolerance`` of its best, sampled or by a quadratic model's profile
(:meth:`~shorthorizon.experiments.pipeline.Candidates.identified`; a value whose span covers
most of the box is "not identified at K", never a ratio), and how far the loss at K ranks the box's samples
as the loss at T does (Spearman and Kendall). Seeds differ in initialization, batches and
samples; every ratio short/reference is taken within a seed, then summarised with its 95%
interval (:mod:`shorthorizon.stats`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from shorthorizon import optim
from shorthorizon.config import NONNEGATIVE, POSITIVE, items, key, one_of, optional
from shorthorizon.experiments.pipeline import (DIVERGENCE, Candidates, SearchConfig, announce, begin, judged,
                                               long_run_cost, problem, refine_cost, refine_unit, say, search_cost,
                                               start_point, trained_cost, unless_diverged)
from shorthorizon.offline_problem import space, surface_points, validate_problem
from shorthorizon.offline_problem import ready  # noqa: F401 (the experiment's ready: a dataset present?)
from shorthorizon.report.bias import plot, report  # noqa: F401 (the experiment's figures and section)
from shorthorizon.results import RunDir
from shorthorizon.runners import Unit
from shorthorizon.stats import (CORRELATION, PROPORTION, MOST_OF_THE_BOX, UNBOUNDED, finding, finite_or_none, interval,
                                log_interval, rank_agreement, shortest_safe_horizon)

NAME = "bias"
FLAGS = ("task", "dataset", "optimizer", "adapt", "horizon", "short", "seeds", "schedule", "protocol")
PROTOCOLS = ("meta", "rerun", "rung")


@dataclass(frozen=True)
class Config(SearchConfig):
    """The offline problem's keys (:class:`~shorthorizon.offline_problem.OfflineConfig`) and the study's."""

    horizon: int = key(20000, POSITIVE)  # T: the run the hyperparameters are for
    short: tuple[int, ...] = key((100, 1000), items(POSITIVE, distinct=True))  # K: the horizons they might be tuned on
    seeds: int = 3
    protocol: tuple[str, ...] = key((), optional(items(one_of(PROTOCOLS), distinct=True)))  # empty: every one that applies
    budget: float = key(0.01, POSITIVE)  # the shortest K whose pick costs at most this fraction of loss at T
    surface_samples: int = 128
    surface_chunk: int = 32
    meta_steps: int = key(0, NONNEGATIVE)  # > 0: SMD refines each fit up to smd_max_horizon from its best sample
    smd_max_horizon: int = key(1000, NONNEGATIVE)


PRESETS = {
    "paper": Config(),
    # Quick: the offline quick preset's problem (Fashion-MNIST, T = 3,000, K = 100, 50
    # evaluation batches), 3 seeds; 48 surface samples and a zoom of 16 per fit and seed.
    "quick": Config(dataset="fashion-mnist", horizon=3000, short=(100,), eval_batches=50, surface_samples=48,
                    surface_chunk=48, curve_points=10),
}


def protocols(config: Config) -> tuple[str, ...]:
    """The protocols the run compares: those asked for (default: every one that applies to the
    schedule family: ``meta`` to a length-free one, ``rerun`` to the others, ``rung`` to all)."""
    length_free = not optim.SCHEDULES[config.schedule].depends_on_length
    applies = {"meta": length_free, "rerun": not length_free, "rung": True}
    return tuple(p for p in PROTOCOLS if applies[p] and (not config.protocol or p in config.protocol))


class Fit(NamedTuple):
    """One fit of a run: its protocol (or ``reference``), the horizon it is fitted for and the
    steps its schedule is laid over while fitting. Its unit names use :attr:`label`."""

    protocol: str
    horizon: int
    length: int

    @property
    def label(self) -> str:
        return "reference" if self.protocol == "reference" else f"{self.protocol}_K{self.horizon}"

    @property
    def searched(self) -> bool:
        """Zoomed and refined like the reference; ``rung`` takes the best sample as it is."""
        return self.protocol != "rung"


def fits(config: Config) -> list[Fit]:
    """The reference, then every protocol's fit at every K."""
    return [Fit("reference", config.horizon, config.horizon)] + [
        Fit(p, k, k if p == "rerun" else config.horizon) for p in protocols(config) for k in sorted(config.short)]


def horizons(config: Config) -> tuple[int, ...]:
    """The rows of the reference surface: every K and T, from one unroll of T steps."""
    return tuple(sorted({*config.short, config.horizon}))


def validate(config: Config) -> None:
    validate_problem(config, config.horizon)
    if max(config.short) >= config.horizon:
        raise ValueError(f"config key 'short' must hold distinct horizons below horizon={config.horizon}, "
                         f"got {config.short!r}")
    if set(config.protocol) - set(protocols(config)):
        raise ValueError(f"config key 'protocol': {', '.join(sorted(set(config.protocol) - set(protocols(config))))} "
                         f"does not apply to schedule {config.schedule!r} (meta: length-free schedules; rerun: the "
                         "others; rung: all)")


def refined(config: Config, fit: Fit) -> bool:
    """Whether SMD refines ``fit`` (``meta_steps`` > 0, its horizon up to ``smd_max_horizon``)."""
    return fit.searched and config.meta_steps > 0 and fit.horizon <= config.smd_max_horizon


# --- the study ---------------------------------------------------------------------------------
def estimated_cost(config: Config) -> dict:
    """Plain training steps per stage (every seed): the reference surface trains each sample T
    steps and evaluates it at every horizon; a rerun surface trains each sample K steps; the
    zooms, refinements and long runs likewise."""
    every = fits(config)
    cost = {"surface": config.surface_samples * trained_cost(config, config.horizon, len(horizons(config))),
            "rerun surfaces": config.surface_samples * sum(trained_cost(config, f.horizon) for f in every
                                                           if f.protocol == "rerun"),
            **search_cost(config, [f.horizon for f in every if f.searched]),
            "refine": sum(refine_cost(config, f.horizon, config.meta_steps) for f in every if refined(config, f)),
            "long runs": len(every) * long_run_cost(config, config.horizon)}
    return {k: v * config.seeds for k, v in cost.items() if v}


def programs(config: Config) -> int:
    """The programs a run compiles (seeds share them): a surface per schedule length, a zoom and
    an SMD refinement per searched horizon and length, a long run."""
    every = fits(config)
    return (1 + len({f.length for f in every if f.protocol == "rerun"}) + 1
            + len({(f.horizon, f.length) for f in every if f.searched}) * config.searches
            + len({(f.horizon, f.length) for f in every if refined(config, f)}))


def run(config: Config, run_dir: RunDir, executor: str = "local", ray_address: str | None = None) -> dict:
    config, seeds, sweep = begin(validate, config, run_dir, executor, ray_address)
    names, every = space(config).names, fits(config)
    if not all(run_dir.has_unit(f"long_{f.label}") for f in every):
        announce(problem(config, config.horizon), NAME, estimated_cost(config), min(horizons(config)),
                 start_point(config), programs(config))

    # the samples: one surface of the reference (every horizon a prefix), one per rerun length
    rows = sweep.surface(seeds, horizons(config), config.horizon)
    reruns = {f.horizon: sweep.surface(seeds, (f.horizon,), f.horizon, name=f"rerun_K{f.horizon}")
              for f in every if f.protocol == "rerun"}
    starts = [problem(s, config.horizon).start_loss() for s in seeds]
    sampled = [{f: Candidates(points, unless_diverged(reruns[f.horizon][k][0] if f.protocol == "rerun"
                                                      else rows[k][horizons(config).index(f.horizon)], starts[k]))
                for f in every} for k, points in enumerate(map(surface_points, seeds))]

    candidates = [dict(by_fit) for by_fit in sampled]
    searched = {f: (f.label, f.horizon, f.length) for f in every if f.searched}
    sweep.zoom(seeds, searched, candidates, starts)
    refinements = sweep.run(refine_unit, [{f: Unit(f"refine_{f.label}", dict(
        config=s, horizon=f.horizon, length=f.length, start=c[f].best(), steps=config.meta_steps), cost=f.horizon)
        for f in every if refined(config, f) and c[f].best()} for s, c in zip(seeds, candidates)], desc="refine")
    for c, out, start in zip(candidates, refinements, starts):  # a refinement's candidate: where it ends
        for f, result in out.items():
            c[f] = c[f] + Candidates.ended([result], names, start)
    boxes = [{**dict.fromkeys(every, s), **widened} for s, widened in  # each fit's box: widened where it sat at an edge
             zip(seeds, sweep.widen(NAME, seeds, searched, candidates, starts))]

    picks = [{f: c[f].best() for f in every} for c in candidates]
    say(NAME, [f"{f.label}, seed {k}: every sample diverged (not finite, or {DIVERGENCE:g}x the warm start's loss): "
               "no fit" for k, p in enumerate(picks) for f in every if p[f] is None])
    long = sweep.long_runs(seeds, picks, {f: f.label for f in every}, config.horizon)
    ends = [{f: judged(s, boxes[k][f], f.label, k, picks[k][f], long[k].get(f)) for f in every}
            for k, s in enumerate(seeds)]
    summary = _summary(config, sampled, candidates, picks, ends)
    say(NAME, [line for row in summary["fits"].values() for line in row["at_edge"]])
    run_dir.save_curves("fits", fit=[f.label for f in every], seed=list(range(config.seeds)), **{
        name: [[np.nan if p[f] is None else p[f][name] for f in every] for p in picks] for name in names})
    summary = run_dir.write_summary(summary)
    plot(run_dir)
    return summary


def _verdict(ratio: dict, reference: bool, unusable: str | None, *how) -> str:
    """A ratio to the reference read as a finding (:func:`~shorthorizon.stats.finding` of it and
    ``how``), unless something makes it none: ``unusable`` ("not identified", "diverged"), or it
    is the reference's own ratio, to itself ("reference")."""
    return unusable or ("reference" if reference and ratio["mean"] is not None else finding(ratio, *how))


def _summary(config: Config, sampled: list, candidates: list, picks: list, ends: list) -> dict:
    """One entry per fit (the reference first): its fitted values, its objective, its training
    loss and test error at T and its box (per seed: :func:`~shorthorizon.experiments.pipeline.judged`),
    what its horizon identifies, the rank agreement of its samples' objective with the loss at
    T, and its ratios to the reference within each seed; per protocol, the shortest safe K."""
    names, seeds, every = space(config).names, range(config.seeds), fits(config)
    reference = every[0]
    rows = {}
    for f in every:
        spans = [candidates[k][f].identified(space(config), config.tolerance) for k in seeds]
        fraction = {n: [math.nan if s[n] is None else s[n].fraction for s in spans] for n in names}
        rows[f.label] = {
            "protocol": f.protocol, "horizon": f.horizon, "length": f.length,
            "hyper": {n: log_interval([math.nan if picks[k][f] is None else picks[k][f][n] for k in seeds])
                      for n in names},
            "objective": interval([candidates[k][f].best_loss() for k in seeds]),
            **{f"{curve}_at_T": interval([ends[k][f][f"final_{curve}"] for k in seeds], bounds=bounds)
               for curve, bounds in (("train_loss", UNBOUNDED), ("test_error", PROPORTION))},
            "identified": {n: {"low": [s[n] and s[n].low for s in spans], "high": [s[n] and s[n].high for s in spans],
                               "fraction_of_box": [finite_or_none(x) for x in fraction[n]]} for n in names},
            "not_identified": [n for n in names if sum(x >= MOST_OF_THE_BOX for x in fraction[n]) * 2 > len(seeds)],
            "at_edge": [line for k in seeds for line in ends[k][f]["at_edge"]],
            "widened": [f"seed {k}: {ends[k][f]['widened']}" for k in seeds if ends[k][f]["widened"]],
        }
        if f != reference:
            agreement = [rank_agreement(sampled[k][f].loss, sampled[k][reference].loss) for k in seeds]
            rows[f.label]["rank_agreement"] = {name: interval([math.nan if getattr(a, m) is None else getattr(a, m)
                                                               for a in agreement], bounds=CORRELATION)
                                               for name, m in (("spearman", "rho"), ("kendall", "tau"))}
    ref = rows[reference.label]
    for row in rows.values():
        row["ratio_to_reference"] = {
            **{n: log_interval(_ratio(row["hyper"][n], ref["hyper"][n])) for n in names},
            "train_loss_at_T": log_interval(_ratio(row["train_loss_at_T"], ref["train_loss_at_T"]))}
        cost = row["ratio_to_reference"]["train_loss_at_T"]
        row["verdict"] = {**{n: _verdict(row["ratio_to_reference"][n], row is ref,  # a ratio needs both ends identified
                                         "not identified" if n in row["not_identified"] + ref["not_identified"] else None,
                                         1.0, ("larger", "smaller")) for n in names},
                          "train_loss_at_T": _verdict(cost, row is ref, "diverged" if cost["diverged"] else None,
                                                      1 + config.budget, ("costs more", "within budget"), True)}
    shortest = {p: shortest_safe_horizon([f.horizon for f in every if f.protocol == p],
                                         [rows[f.label]["ratio_to_reference"]["train_loss_at_T"]
                                          for f in every if f.protocol == p], config.budget)
                for p in protocols(config)}
    return {"dataset": config.dataset, "task": config.task, "optimizer": config.optimizer, "schedule": config.schedule,
            "horizon": config.horizon, "seeds": config.seeds, "fitted": list(names), "protocols": list(protocols(config)),
            "tolerance": config.tolerance, "budget": config.budget, "shortest_safe_horizon": shortest,
            "interval": ("95% Student t over seeds; fitted values and ratios (taken within each seed): geometric "
                         "mean and the t interval of their logs"),
            "fits": rows}


def _ratio(stat: dict, reference: dict) -> np.ndarray:
    """Per seed, ``stat``'s value over the reference's (NaN where either diverged)."""
    return np.array(stat["values"], float) / np.array(reference["values"], float)
