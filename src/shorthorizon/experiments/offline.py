"""Offline meta-optimization of a learning-rate schedule (paper Section 3.2, Figures 5-6).

For each horizon T, the meta-objective is the mean training loss after T steps from a shared
warm start, on a fixed set of evaluation batches. A surface of random samples of the box (the
paper's: lr0 and the inverse-time decay exponent; any ``schedule`` and ``adapt``) shows its
landscape; SMD fits the schedule from several initial points; the best fit of every horizon is
then trained for the longest horizon. A schedule laid over a run's length (cosine, ...) is laid
over each horizon while fitting (a surface each) and over the longest in the long runs. On the
paper's problem short horizons choose far too fast a decay, and their schedules end the long
run far behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shorthorizon import config as configlib, optim
from shorthorizon.config import ANY, NONNEGATIVE, POSITIVE, items, key, one_of
from shorthorizon.hypergrad import ESTIMATORS
from shorthorizon.experiments.pipeline import (Candidates, SearchConfig, announce, begin, box_ranges, configured,
                                               headlines, judged, long_run_cost, named, outside, problem, refine_cost,
                                               refine_unit, say, search_cost, trained_cost)
from shorthorizon.offline_problem import best, lr0_named, refuse_fd, space, surface_points, validate_problem
from shorthorizon.offline_problem import ready  # noqa: F401 (the experiment's ready: a dataset present?)
from shorthorizon.report.offline import plot, report  # noqa: F401 (the experiment's section)
from shorthorizon.results import RunDir
from shorthorizon.runners import Unit, seed_name
from shorthorizon.stats import FACTORS, PROPORTION, UNBOUNDED, over_seeds

NAME = "offline"
FLAGS = ("task", "dataset")

# The headline numbers (dotted paths into a seed's summary; {horizon}: each horizon's), each
# summarised over seeds as its kind says (stats.summarised: FACTORS, by its logs, or its natural bounds).
# {name}: each fitted value's (lr0, the decay exponent, ...).
HEADLINES = {"{name}_ratio": FACTORS, "final_train_loss_ratio": FACTORS, "horizons.{horizon}.{name}": FACTORS,
             "horizons.{horizon}.final_train_loss": UNBOUNDED, "horizons.{horizon}.final_test_error": PROPORTION}


@dataclass(frozen=True)
class Config(SearchConfig):
    """Defaults are the paper's setup (:class:`~shorthorizon.offline_problem.OfflineConfig`:
    MLP 784-100-100-10, batch 100) at its horizons."""

    horizons: tuple[int, ...] = key((100, 1000, 5000, 20000), items(POSITIVE, distinct=True))
    init_lr0: tuple[float, ...] = key((0.003, 0.03, 0.1, 0.01), items(POSITIVE))  # SMD restarts:
    init_decay_exponent: tuple[float, ...] = key((0.1, 1.0, 10.0, 100.0), items(POSITIVE))  # (init_lr0[i], this[i])
    # > 0: SMD restarts at each horizon's that many best surface samples instead
    smd_from_surface: int = key(0, NONNEGATIVE)
    # > 0: longer horizons take no meta-steps (their fit: the best surface sample)
    smd_max_horizon: int = key(0, NONNEGATIVE)
    zoom_samples: int = key(0, NONNEGATIVE)  # the zoom and the search: at the horizons without meta-steps
    meta_steps: int = key(5000, POSITIVE)
    anneal: bool = key(False, ANY)  # cosine-decay Adam's step from meta_lr to 1% of it over the meta-steps
    estimator: str = key("forward", one_of(ESTIMATORS))  # SMD's hypergradients (es: antithetic pairs)
    particles: int = key(1, POSITIVE)  # es: antithetic pairs per meta-step
    sigma: float = key(0.01, POSITIVE)  # es: perturbation std in log space

    def smd_settings(self) -> dict:
        """SMD's estimator (``estimator``) and Adam step (cosine-decayed over the meta-steps with ``anneal``)."""
        return {"estimator": configlib.estimator(self),
                "meta_lr": (self.meta_lr, self.meta_steps) if self.anneal else self.meta_lr}


PRESETS = {
    "paper": Config(),
    # Quick: the same problem within the quick reproduction's budget, over 3 seeds (no claim
    # rests on one draw). Horizons 100 -> 3000 (30x). The shortest is the paper's: below ~100
    # steps the decay barely changes the objective. The longest is also the long run: on
    # Fashion-MNIST a good schedule needs ~3000 steps (5 epochs) to pull 1.5x ahead of one that
    # stalled early (at 2000 steps we measured 1.43x). 50 evaluation batches (a twelfth of an
    # epoch). Each horizon is fitted by the adaptive search (4 generations of 6 points) from 24
    # surface samples, not by SMD: two SMD restarts of 20 forward-mode meta-steps cost 0.56M
    # plain steps a seed, the search 0.08M, so three seeds cost less than one did.
    "quick": Config(
        horizons=(100, 300, 3000),
        eval_batches=50,
        surface_samples=24,
        surface_chunk=12,
        smd_from_surface=1,
        smd_max_horizon=1,
        generations=4,
        curve_points=20,
        seeds=3,
    ),
    # The paper's problem, horizons, box, evaluation set and long runs at a fraction of the
    # paper's algorithm's cost (each run prints its estimate; `--preset paper`'s is weeks on a
    # CPU). A fit of two hyperparameters is what the surface shows: 128 log-uniform samples
    # of the paper's box, each trained 20,000 steps once, give all four horizons' objectives
    # (prefixes of one unroll, vmapped, on the batches every fit is judged by). SMD then refines
    # each horizon's two best samples where a meta-step is affordable (T <= 1000: 50 meta-steps;
    # one at T = 20,000 costs ~ 80,000 plain steps), at a 5x larger meta-lr than the paper's
    # since it starts near the optimum. T = 5000 and 20,000 take the best of their best sample
    # and 32 more within +-0.3 decades of it (the surface's samples lie ~0.3 decades apart: on
    # Fashion-MNIST both horizons' best was one sample). Estimated ~ 4.3M plain-step
    # equivalents (surface 2.7M, zoom 0.8M, SMD 0.66M, long runs 0.19M): `estimated_cost`.
    "paper-horizons": Config(
        surface_samples=128,
        surface_chunk=32,
        smd_from_surface=2,
        smd_max_horizon=1000,
        zoom_samples=32,
        meta_steps=50,
        meta_lr=0.05,
        meta_chunk=10,
    ),
}


# --- what each horizon takes ----------------------------------------------------------
def meta_steps(config: Config, horizon: int) -> int:
    """SMD's meta-steps at ``horizon`` (none above ``smd_max_horizon``)."""
    return 0 if 0 < config.smd_max_horizon < horizon else config.meta_steps


def zoomed(config: Config) -> list[int]:
    """The horizons that take a zoom or the adaptive search (no meta-steps, ``zoom_samples`` > 1
    or ``generations`` > 0)."""
    return [h for h in sorted(config.horizons) if config.searches and not meta_steps(config, h)]


def restarts(config: Config, horizon: int) -> range:
    """The SMD restarts of ``horizon``: one where it takes no meta-steps (the fit is where it
    starts)."""
    if not meta_steps(config, horizon):
        return range(1)
    return range(config.smd_from_surface or len(config.init_lr0))


def length(config: Config, horizon: int) -> dict:
    """The schedule's length while fitting ``horizon`` (as a unit's keyword): the horizon where
    the schedule is laid over a run's length, none where it is length-free (every horizon then
    shares one surface)."""
    return {"length": horizon} if optim.SCHEDULES[config.schedule].depends_on_length else {}


def smd_cost(config: Config, horizon: int) -> float:
    """An SMD restart at ``horizon`` (:func:`~shorthorizon.experiments.pipeline.refine_cost`, its estimator's)."""
    return refine_cost(config, horizon, meta_steps(config, horizon), configlib.estimator(config))


def estimated_cost(config: Config) -> dict:
    """The run's work in plain training steps, per stage, over all its seeds: the surface (each
    sample trains the longest horizon and is evaluated at every horizon, or, a schedule laid
    over each horizon, trains each), the SMD fits and the long runs (with a test-set evaluation
    at each curve point). Seeds share compiled programs."""
    longest = max(config.horizons)
    trained = sum(config.horizons) if length(config, longest) else longest
    cost = {"surface": config.surface_samples * trained_cost(config, trained, len(config.horizons)),
            **search_cost(config, zoomed(config)),
            "SMD": sum(smd_cost(config, h) * len(restarts(config, h)) for h in config.horizons),
            "long runs": len(config.horizons) * long_run_cost(config, longest)}
    return {k: v * config.seeds for k, v in cost.items()}


# --- the experiment ------------------------------------------------------------------
def validate(config: Config) -> None:
    validate_problem(config, max(config.horizons))
    refuse_fd("estimator", [config.estimator], "forward, reverse or es")
    if (config.zoom_samples or config.generations) and not (config.smd_from_surface and config.smd_max_horizon):
        raise ValueError("config keys 'zoom_samples' and 'generations' need smd_from_surface and smd_max_horizon: "
                         "they refine the best surface sample of the horizons above smd_max_horizon")
    if config.smd_from_surface > config.surface_samples:
        raise ValueError(f"config key 'smd_from_surface' must be at most surface_samples={config.surface_samples}, "
                         f"got {config.smd_from_surface}")
    decays = "decay_exponent" in space(config).names  # else init_decay_exponent is not read
    if decays and len(config.init_lr0) != len(config.init_decay_exponent):
        raise ValueError(f"config key 'init_lr0' must have as many values as init_decay_exponent (one per restart), "
                         f"got {len(config.init_lr0)} and {len(config.init_decay_exponent)}")


def run(config: Config, run_dir: RunDir, executor: str = "local", ray_address: str | None = None) -> dict:
    config, seeds, sweep = begin(validate, config, run_dir, executor, ray_address)
    horizons, names, given = sorted(config.horizons), space(config).names, configured(config)
    if not run_dir.has_unit(seed_name(f"long_T{horizons[-1]}", config.seeds - 1)):
        announce(problem(config, horizons[-1]), NAME, estimated_cost(config), min(horizons), given[0])
    say(NAME, [] if config.smd_from_surface else outside(config))

    if length(config, horizons[-1]):  # a schedule laid over each horizon: a surface each
        rows = [sweep.surface(seeds, (h,), h, name=f"surface_T{h}") for h in horizons]
        surface_loss = [np.concatenate([r[k] for r in rows]) for k in range(config.seeds)]
    else:
        surface_loss = sweep.surface(seeds, tuple(horizons))
    starts = [problem(s, horizons[-1]).start_loss() for s in seeds]
    seen = [{h: Candidates(surface_points(s), row) for h, row in zip(horizons, loss)}
            for s, loss in zip(seeds, surface_loss)]
    smd_starts = [{h: c[h].top(len(restarts(config, h))) if config.smd_from_surface else given[:len(restarts(config, h))]
                   for h in horizons} for c in seen]
    fits = sweep.run(refine_unit, [{(h, r): Unit(f"smd_T{h}_r{r}", dict(config=s, horizon=h, start=point,
                                                                        steps=meta_steps(config, h), restart=r,
                                                                        **length(config, h)),
                                                 cost=smd_cost(config, h))
                                    for h in horizons for r, point in enumerate(start[h])}
                                   for s, start in zip(seeds, smd_starts)], desc="SMD")
    labels = {h: (f"T{h}", h, length(config, h).get("length")) for h in horizons}  # the pipeline's (label, horizon, length)
    sweep.zoom(seeds, {h: labels[h] for h in zoomed(config)}, seen, starts)
    ends = [{h: Candidates.ended([fit[h, r] for r in restarts(config, h)], names, start) for h in horizons}
            for fit, start in zip(fits, starts)]
    pool = [{h: _pool(config, h, c[h], e[h]) for h in horizons} for c, e in zip(seen, ends)]
    boxes = sweep.widen(NAME, seeds, labels, pool, starts)
    picks = [{h: c[h].best() for h in horizons} for c in pool]

    long = sweep.long_runs(seeds, picks, {h: label for h, (label, *_) in labels.items()}, horizons[-1])
    per_seed = []
    for k, s in enumerate(seeds):
        _save_curves(run_dir, k, s, surface_loss[k], fits[k], seen[k], ends[k], long[k])
        spans = {h: (pool[k][h] if config.smd_from_surface else pool[k][h] + seen[k][h]).identified(
            space(s), s.tolerance) for h in horizons}
        per_seed.append(_summary(s, k, horizons, pool[k], ends[k], long[k], boxes[k], spans))
        say(NAME, [line for row in per_seed[-1]["horizons"].values() for line in row["at_edge"]])
    summary = run_dir.write_summary(over_seeds(per_seed, headlines(HEADLINES, config, "horizon", horizons)))
    plot(run_dir)
    return summary


def _pool(config: Config, horizon: int, seen: Candidates, ends: Candidates) -> Candidates:
    """What a horizon's fit is the best of: its SMD restarts' ends, and (``smd_from_surface``)
    its samples too (the samples alone where it takes no meta-steps). Both are judged on the same
    batches (the surface key's): SMD descends the objective's expectation over batches and can
    end above the sample that these particular batches favour. A tie goes to SMD (first)."""
    if not config.smd_from_surface:
        return ends
    return ends + seen if meta_steps(config, horizon) else seen


def _save_curves(run_dir: RunDir, seed: int, config: Config, surface_loss: np.ndarray, fits: dict, seen: dict,
                 ends: dict, long: dict) -> None:
    """Seed ``seed``'s curves, each file named by :func:`seed_name`."""
    horizons = sorted(config.horizons)
    step = np.arange(config.curve_points + 1) * (horizons[-1] // config.curve_points)
    missing = dict.fromkeys(("train_loss", "test_error"), np.full(len(step), np.nan))
    run_dir.save_curves(seed_name("surface", seed), horizon=horizons, **lr0_named(surface_points(config)),
                        **box_ranges(config), loss=surface_loss)
    # horizons differ in restarts and meta-steps: NaN pads the missing ones
    run_dir.save_curves(seed_name("smd", seed), horizon=horizons,
                        best_restart=[int(best(ends[h].loss)[0]) if np.isfinite(ends[h].loss).any() else -1
                                      for h in horizons],
                        **lr0_named({k: _padded([[fits[h, r][k] for r in restarts(config, h)] for h in horizons])
                                     for k in (*space(config).names, "objective", "meta_objective")}))
    if zoomed(config):
        own = slice(config.surface_samples, None)  # the zoom's (or search's) samples, after the surface's
        run_dir.save_curves(seed_name("zoom", seed), horizon=zoomed(config), width=config.zoom_width,
                            **{n: [lr0_named(seen[h].points)[n][own] for h in zoomed(config)] for n in named(config)},
                            loss=[seen[h].loss[own] for h in zoomed(config)])
    run_dir.save_curves(seed_name("long_runs", seed), horizon=horizons, step=step,
                        **{k: [long.get(h, missing)[k] for h in horizons] for k in missing})


def _padded(rows: list[list]) -> np.ndarray:
    """Nested lists (horizon, restart) of scalars or of arrays of any length as one array,
    NaN-padded."""
    flat = [np.atleast_1d(a) for row in rows for a in row]
    out = np.full((len(rows), max(map(len, rows)), max(a.size for a in flat)), np.nan)
    for i, row in enumerate(rows):
        for j, a in enumerate(row):
            out[i, j, :np.size(a)] = np.ravel(a)
    return out[..., 0] if all(np.ndim(a) == 0 for row in rows for a in row) else out


def _summary(config: Config, seed: int, horizons, pool: dict, ends: dict, long: dict, boxes: dict,
             spans: dict) -> dict:
    """Headline numbers. ``diverged`` marks a horizon with no fit (every SMD restart diverged:
    :meth:`~shorthorizon.experiments.pipeline.Candidates.ended`; no long run then) or whose long
    run diverged: its numbers at the end are null (:func:`~shorthorizon.experiments.pipeline.judged`).
    ``from_surface``: the fit is a sample, not an SMD end. ``identified``: per fitted value, the
    range the horizon's candidates cannot tell apart from their best
    (:meth:`~shorthorizon.experiments.pipeline.Candidates.identified`), and the share of the box
    it spans. ``{value}_ratio``: the shortest horizon's fitted value over the longest's."""
    per_horizon = {}
    for h in horizons:
        pick, end = pool[h].best(), judged(config, boxes[h], f"T={h}", seed, pool[h].best(), long.get(h))
        smd = (meta_steps(config, h) or not config.smd_from_surface) and pool[h].best_loss() == ends[h].best_loss()
        per_horizon[str(h)] = {
            **(lr0_named(pick) if pick else dict.fromkeys(named(config), math.nan)), "meta_objective": pool[h].best_loss(),
            **end, "from_surface": bool(pick) and not smd, "diverged": math.isnan(end["final_train_loss"]),
            "identified": lr0_named({n: span and {"low": span.low, "high": span.high, "fraction_of_box": span.fraction}
                                     for n, span in spans[h].items()}),
            "diverged_restarts": np.flatnonzero(~np.isfinite(ends[h].loss)).tolist()}
    short, longest = per_horizon[str(horizons[0])], per_horizon[str(horizons[-1])]
    return {"dataset": config.dataset, "long_horizon": horizons[-1], "horizons": per_horizon,
            **{f"{n}_ratio": short[n] / longest[n] for n in named(config)},
            "final_train_loss_ratio": short["final_train_loss"] / longest["final_train_loss"]}
