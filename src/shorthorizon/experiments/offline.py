"""Offline meta-optimization of an inverse-time decay schedule (paper Section 3.2, Figures 5-6).

For each horizon T, the meta-objective is the mean training loss after T steps from a shared
warm start, on a fixed set of evaluation batches. A surface of random (lr0, decay_exponent)
samples shows its landscape; SMD fits the schedule from several initial points; the best fit
of every horizon is then trained for the longest horizon. Short horizons choose far too fast
a decay, and their schedules end the long run far behind.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from shorthorizon import config as configlib
from shorthorizon.config import ANY, NONNEGATIVE, POSITIVE, items, key, one_of, seeded
from shorthorizon.hypergrad import ESTIMATORS
from shorthorizon.experiments.pipeline import (Candidates, Sweep, announce, box_text, diverged, edge_lines,
                                               long_run_unit, problem, refine_unit, zoom_unit)
from shorthorizon.offline_problem import (OfflineConfig, best, lr0_named, resolve_dataset, space, surface_points,
                                           validate_problem, with_family)
from shorthorizon.offline_problem import ready  # noqa: F401 (the experiment's ready: a dataset present?)
from shorthorizon.meta.smd import EVALUATION_COST
from shorthorizon.report.offline import is_paper_horizons, plot, section
from shorthorizon.results import RunDir
from shorthorizon.runners import Unit, seed_name
from shorthorizon.stats import over_seeds

NAME = "offline"
FLAGS = ("task", "dataset")

# The headline numbers (dotted paths into a seed's summary; {horizon}: each horizon's), each
# summarised over seeds (stats.over_seeds: True = varies by factors, by its logs).
HEADLINES = {"decay_exponent_ratio": True, "final_train_loss_ratio": True, "horizons.{horizon}.lr0": True,
             "horizons.{horizon}.decay_exponent": True, "horizons.{horizon}.final_train_loss": False,
             "horizons.{horizon}.final_test_error": False}


@dataclass(frozen=True)
class Config(OfflineConfig):
    """Defaults are the paper's setup (:class:`~shorthorizon.offline_problem.OfflineConfig`:
    MLP 784-100-100-10, batch 100) at its horizons."""

    horizons: tuple[int, ...] = key((100, 1000, 5000, 20000), items(POSITIVE, distinct=True))
    init_lr0: tuple[float, ...] = key((0.003, 0.03, 0.1, 0.01), items(POSITIVE))  # SMD restarts:
    init_decay_exponent: tuple[float, ...] = key((0.1, 1.0, 10.0, 100.0), items(POSITIVE))  # (init_lr0[i], this[i])
    # > 0: SMD restarts at each horizon's that many best surface samples instead
    smd_from_surface: int = key(0, NONNEGATIVE)
    # > 0: longer horizons take no meta-steps (their fit: the best surface sample)
    smd_max_horizon: int = key(0, NONNEGATIVE)
    # > 0: each horizon without meta-steps gets that many more samples near its best one
    zoom_samples: int = key(0, NONNEGATIVE)
    zoom_width: float = key(0.3, POSITIVE)  # their box: the best sample +- this many decades on each axis
    # rounds of moving a bound that a horizon's fit lands at zoom_width decades out and zooming
    # there again (zoom_samples > 1)
    widen: int = key(2, NONNEGATIVE)
    tolerance: float = key(0.01, POSITIVE)  # identified range: objective within this fraction of the horizon's best
    # > 0: each horizon without meta-steps takes that many generations of the adaptive search
    # (meta.search) from the surface instead of the zoom
    generations: int = key(0, NONNEGATIVE)
    population: int = key(6, POSITIVE)  # the adaptive search's points per generation (one vmapped unroll)
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
    # Quick: the same problem within the quick reproduction's budget (SMD's forward-mode unrolls
    # dominate: restarts x meta_steps x sum(horizons)). Horizons 100 -> 3000 (30x). The shortest is the paper's: below ~100 steps the decay
    # barely changes the objective and SMD's noise decides. The longest is also the long
    # run: on Fashion-MNIST a good schedule needs ~3000 steps (5 epochs) to pull 1.5x ahead
    # of one that stalled early (at 2000 steps we measured 1.43x). 24 surface samples
    # (smoothed for the plot); 50 evaluation batches (a twelfth of an epoch); 2 restarts, one
    # slow and one fast decay (each horizon's optimum lies near one of them), with a 15x
    # larger meta learning rate so 20 meta-steps suffice.
    "quick": Config(
        horizons=(100, 300, 3000),
        eval_batches=50,
        surface_samples=24,
        surface_chunk=12,
        init_lr0=(0.03, 0.1),
        init_decay_exponent=(1.0, 100.0),
        meta_steps=20,
        meta_lr=0.15,
        meta_chunk=10,
        curve_points=20,
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
    """The horizons that take :func:`zoom_points` or the adaptive search (no meta-steps,
    ``zoom_samples`` or ``generations`` > 0)."""
    return [h for h in sorted(config.horizons) if (config.zoom_samples or config.generations)
            and not meta_steps(config, h)]


def restarts(config: Config, horizon: int) -> range:
    """The SMD restarts of ``horizon``: one where it takes no meta-steps (the fit is where it
    starts)."""
    if not meta_steps(config, horizon):
        return range(1)
    return range(config.smd_from_surface or len(config.init_lr0))


def smd_cost(config: Config, horizon: int) -> float:
    """One SMD run at ``horizon`` in plain training steps: every meta-step differentiates (the
    estimator's ``work``) a ``horizon``-step unroll and its objective on ``eval_batches``
    batches, and the fit is evaluated once."""
    evaluation = horizon + config.eval_batches * EVALUATION_COST
    return (meta_steps(config, horizon) * configlib.estimator(config).work(2) + 1) * evaluation


TEST_BATCHES = 100  # a test split (10,000 images) in batches of 100, for the cost of a test-error point


def estimated_cost(config: Config) -> dict:
    """The run's work in plain training steps, per stage, over all its seeds: the surface (each
    sample trains the longest horizon and is evaluated at every horizon), the SMD fits and the
    long runs (with a test-set evaluation at each curve point). Seeds share compiled programs."""
    longest = max(config.horizons)
    evaluation = config.eval_batches * EVALUATION_COST
    cost = {"surface": config.surface_samples * (longest + len(config.horizons) * evaluation),
            **({"search" if config.generations else "zoom": (config.generations * config.population or config.zoom_samples)
                * sum(h + evaluation for h in zoomed(config))} if zoomed(config) else {}),
            "SMD": sum(smd_cost(config, h) * len(restarts(config, h)) for h in config.horizons),
            "long runs": len(config.horizons) * (longest + config.curve_points
                                                 * (evaluation + TEST_BATCHES * EVALUATION_COST))}
    return {k: v * config.seeds for k, v in cost.items()}


def headlines(config: Config) -> dict:
    """:data:`HEADLINES` at the config's horizons (each horizon's numbers together)."""
    return {path.format(horizon=h): by_factors for h in sorted(config.horizons)
            for path, by_factors in HEADLINES.items()}


NAMES = ("lr", "decay_exponent")  # the fitted hyperparameters (stored as the paper's lr0 and decay exponent)


def _start(config: Config) -> dict:
    return dict(zip(NAMES, (config.init_lr0[0], config.init_decay_exponent[0])))


# --- the experiment ------------------------------------------------------------------
def validate(config: Config) -> None:
    if config.schedule != "inverse-time" or config.adapt:
        raise ValueError(f"config keys 'schedule' and 'adapt': {NAME} fits the paper's inverse-time schedule (lr0 and "
                         "decay exponent); for another family or more hyperparameters, use `shorthorizon bias "
                         "--schedule NAME --adapt NAME`")
    validate_problem(config, max(config.horizons))
    if config.estimator == "fd":
        raise ValueError("config key 'estimator': fd (central differences) needs float64, and the offline problem "
                         "trains in float32 (`shorthorizon unroll --estimator fd --x64` computes one); choose forward, "
                         "reverse or es")
    if (config.zoom_samples or config.generations) and not (config.smd_from_surface and config.smd_max_horizon):
        raise ValueError("config keys 'zoom_samples' and 'generations' need smd_from_surface and smd_max_horizon: "
                         "they refine the best "
                         "surface sample of the horizons above smd_max_horizon")
    if config.smd_from_surface > config.surface_samples:
        raise ValueError(f"config key 'smd_from_surface' must be at most surface_samples={config.surface_samples}, "
                         f"got {config.smd_from_surface}")
    if len(config.init_lr0) != len(config.init_decay_exponent):
        raise ValueError(f"config key 'init_lr0' must have as many values as init_decay_exponent (one per restart), "
                         f"got {len(config.init_lr0)} and {len(config.init_decay_exponent)}")


def run(config: Config, run_dir: RunDir, executor: str = "local", ray_address: str | None = None) -> dict:
    validate(config)
    config = with_family(resolve_dataset(config))
    run_dir.write_config(config)
    horizons = sorted(config.horizons)
    seeds = [seeded(config, k) for k in range(config.seeds)]  # every stage: all seeds' units in one sweep
    sweep = Sweep(run_dir, executor, ray_address)
    if not run_dir.has_unit(seed_name(f"long_T{horizons[-1]}", config.seeds - 1)):
        announce(problem(config), NAME, estimated_cost(config), min(config.horizons), _start(config))

    surface_loss = sweep.surface(seeds, tuple(horizons))
    sampled = [{h: Candidates(surface_points(s), row) for h, row in zip(horizons, loss)}
               for s, loss in zip(seeds, surface_loss)]
    starts = [_starts(s, horizons, loss) for s, loss in zip(seeds, surface_loss)]
    fits = sweep.run(refine_unit, [{(h, r): Unit(f"smd_T{h}_r{r}", dict(config=s, horizon=h, start=point,
                                                                        steps=meta_steps(config, h), restart=r),
                                                 cost=smd_cost(config, h))
                                    for h in horizons for r, point in enumerate(start[h])}
                                   for s, start in zip(seeds, starts)], desc="SMD")
    if config.generations:
        zooms = _searched(config, sweep, seeds, sampled)
    else:
        zoomed_out = sweep.run(zoom_unit, [{h: Unit(f"zoom_T{h}", dict(config=s, horizon=h, center=start[h][0]), cost=h)
                                            for h in zoomed(config)} for s, start in zip(seeds, starts)], desc="zoom")
        zooms = [{h: Candidates({n: r[n] for n in NAMES}, r["loss"]) for h, r in out.items()} for out in zoomed_out]
    chosen = [_choose(s, horizons, c, fit, zoom) for s, c, fit, zoom in zip(seeds, sampled, fits, zooms)]
    boxes = _widen(config, sweep, seeds, chosen)

    long_units = [{h: Unit(f"long_T{h}", dict(config=s, values=_values(fit), horizon=horizons[-1]))
                   for h, fit in fitted.items()} for s, (_, _, fitted) in zip(seeds, chosen)]
    pending = sum(not run_dir.has_unit(seed_name(u.name, k)) for k, units in enumerate(long_units)
                  for u in units.values())
    if pending:
        announce(problem(config), f"{NAME} long runs", {"training": pending * horizons[-1]}, min(horizons),
                 _start(config))
    long = sweep.run(long_run_unit, long_units, desc="long runs")
    per_seed = []
    for k, (s, (objectives, best_restart, fitted)) in enumerate(zip(seeds, chosen)):
        _save_curves(run_dir, k, s, surface_loss[k], fits[k], zooms[k], best_restart, long[k])
        spans = {h: (sampled[k][h] + zooms[k][h] if h in zooms[k] else sampled[k][h]).identified(space(s), s.tolerance)
                 for h in horizons}
        per_seed.append(_summary(s, k, horizons, objectives, fitted, long[k], boxes[k], spans))
        for row in per_seed[-1]["horizons"].values():
            for line in row["at_edge"]:
                print(f"[{NAME}] {line}", file=sys.stderr)
    summary = run_dir.write_summary(over_seeds(per_seed, headlines(config)))
    plot(run_dir)
    return summary


def _searched(config: Config, sweep: Sweep, seeds: list[Config], sampled: list[dict]) -> list[dict]:
    """Per seed and zoomed horizon, the points the adaptive search scored from the surface (its
    own, after the surface's) and their objective, in a zoom's place."""
    found = sweep.search(seeds, [{f"T{h}": (h, None, c[h]) for h in zoomed(config)} for c in sampled],
                         [problem(s).start_loss() for s in seeds], config.generations, config.population)
    own = slice(config.surface_samples, None)
    return [{h: Candidates({k: v[own] for k, v in by[f"T{h}"].points.items()}, by[f"T{h}"].loss[own])
             for h in zoomed(config)} for by in found]


def _widen(config: Config, sweep: Sweep, seeds: list[Config], chosen: list[tuple]) -> list[dict]:
    """Each seed's box per horizon (a config): moved out where the horizon's fit sits at an edge
    of it and zoomed again there (:meth:`~shorthorizon.experiments.pipeline.Sweep.widen`, up to
    ``widen`` rounds of ``zoom_samples``); a zoomed sample below the fit becomes the fit."""
    boxes = [{h: s for h in config.horizons} for s in seeds]
    for round_ in range(1, config.widen + 1 if config.zoom_samples > 1 else 1):
        wider = sweep.widen(NAME, [{h: (f"T{h}", box[h], h, None, _values(fit)) for h, fit in fitted.items()}
                                   for box, (_, _, fitted) in zip(boxes, chosen)], round_, config.widen)
        for box, (_, _, fitted), moved in zip(boxes, chosen, wider):
            for h, (wider_box, zoom) in moved.items():
                box[h] = wider_box
                if zoom.best() and zoom.best_loss() < float(fitted[h]["meta_objective"]):
                    fitted[h] = _sample(zoom)
        if not any(wider):
            break
    return boxes


def _values(fit: dict) -> dict:
    """A fit's values (its last, for an SMD trajectory)."""
    return {n: float(fit[n][-1]) for n in NAMES}


def _sample(candidates: Candidates) -> dict:
    """The best of ``candidates`` as a fit."""
    return {**{k: [v] for k, v in candidates.best().items()}, "meta_objective": candidates.best_loss(),
            "from_surface": True}


def _choose(config: Config, horizons, sampled: dict, fits: dict, zooms: dict) -> tuple:
    """A seed's restart objectives, its best restart per horizon (None where every restart
    diverged: no long run then) and each horizon's fit: its best SMD end, or (``smd_from_surface``)
    its best surface or zoom sample where that is lower or the horizon takes no meta-steps. Both
    are judged on the same batches (the surface key's), so a sample is a candidate like any
    restart: SMD descends the objective's expectation over batches and can end above the sample
    that these particular batches favour."""
    objectives = {h: np.array([fits[h, r]["meta_objective"] for r in restarts(config, h)])
                  for h in horizons}
    best_restart = {h: int(best(o)[0]) if np.isfinite(o).any() else None for h, o in objectives.items()}
    fitted = {h: fits[h, best_restart[h]] for h in horizons if best_restart[h] is not None}
    for h in horizons if config.smd_from_surface else ():
        samples = sampled[h] + zooms[h] if h in zooms else sampled[h]
        if samples.best() and (h not in fitted or not meta_steps(config, h)
                      or samples.best_loss() < float(fitted[h]["meta_objective"])):
            fitted[h] = _sample(samples)
    return objectives, best_restart, fitted


def _save_curves(run_dir: RunDir, seed: int, config: Config, surface_loss: np.ndarray, fits: dict, zooms: dict,
                 best_restart: dict, long: dict) -> None:
    """Seed ``seed``'s curves, each file named by :func:`seed_name`."""
    horizons = sorted(config.horizons)
    step = np.arange(config.curve_points + 1) * (horizons[-1] // config.curve_points)
    missing = dict.fromkeys(("train_loss", "test_error"), np.full(len(step), np.nan))
    run_dir.save_curves(seed_name("surface", seed), horizon=horizons, **lr0_named(surface_points(config)),
                        lr0_range=config.lr0_range, decay_exponent_range=config.decay_exponent_range, loss=surface_loss)
    # horizons differ in restarts and meta-steps: NaN pads the missing ones
    run_dir.save_curves(seed_name("smd", seed), horizon=horizons,
                        best_restart=[-1 if best_restart[h] is None else best_restart[h] for h in horizons],
                        **lr0_named({k: _padded([[fits[h, r][k] for r in restarts(config, h)] for h in horizons])
                                     for k in (*NAMES, "objective", "meta_objective")}))
    if zooms:
        run_dir.save_curves(seed_name("zoom", seed), horizon=zoomed(config), width=config.zoom_width,
                            **lr0_named({k: [zooms[h].points[k] for h in zoomed(config)] for k in NAMES}),
                            loss=[zooms[h].loss for h in zoomed(config)])
    run_dir.save_curves(seed_name("long_runs", seed), horizon=horizons, step=step,
                        **{k: [long.get(h, missing)[k] for h in horizons] for k in missing})


def _starts(config: Config, horizons, surface_loss: np.ndarray) -> dict:
    """Where each horizon's SMD restarts begin: the configured points, or the horizon's best
    ``smd_from_surface`` surface samples (its single best one where it takes no meta-steps)."""
    if not config.smd_from_surface:
        return {h: [dict(zip(NAMES, point)) for point in zip(config.init_lr0, config.init_decay_exponent)][
            :len(restarts(config, h))] for h in horizons}
    points = surface_points(config)
    return {h: [{k: float(v[i]) for k, v in points.items()} for i in best(loss)[:len(restarts(config, h))]]
            for h, loss in zip(horizons, surface_loss)}


def _padded(rows: list[list]) -> np.ndarray:
    """Nested lists (horizon, restart) of scalars or of arrays of any length as one array,
    NaN-padded."""
    flat = [np.atleast_1d(a) for row in rows for a in row]
    out = np.full((len(rows), max(map(len, rows)), max(a.size for a in flat)), np.nan)
    for i, row in enumerate(rows):
        for j, a in enumerate(row):
            out[i, j, :np.size(a)] = np.ravel(a)
    return out[..., 0] if all(np.ndim(a) == 0 for row in rows for a in row) else out


def _summary(config: Config, seed: int, horizons, objectives, fitted, long, boxes: dict, spans: dict) -> dict:
    """Headline numbers. ``diverged`` marks a horizon whose every SMD restart diverged
    (non-finite objective; no long run then) or whose long run did (:func:`~shorthorizon.experiments.pipeline.diverged`:
    not finite, or 10x its start): its numbers at the end are null, never a loss to take a ratio of.
    ``identified``: per fitted value, the range the horizon's samples (surface and zoom) cannot tell
    apart from their best (:meth:`~shorthorizon.experiments.pipeline.Candidates.identified`), and
    the share of the box it spans."""
    def numbers(h) -> dict:
        if h not in fitted:
            return {**dict.fromkeys(("lr0", "decay_exponent", "meta_objective", "final_train_loss",
                                     "final_test_error"), math.nan), "from_surface": False, "at_edge": []}
        fit, run = fitted[h], long[h]
        end = math.nan if diverged(run["train_loss"]) else 1.0  # a diverged run ends in null numbers
        return {"lr0": float(fit["lr"][-1]), "decay_exponent": float(fit["decay_exponent"][-1]),
                "meta_objective": float(fit["meta_objective"]), "final_train_loss": end * float(run["train_loss"][-1]),
                "final_test_error": end * float(run["test_error"][-1]), "from_surface": bool(fit.get("from_surface")),
                "at_edge": edge_lines(boxes[h], f"T={h}", seed, _values(fit))}

    per_horizon = {}
    for h in horizons:
        row = numbers(h)
        per_horizon[str(h)] = {**row, "diverged": not math.isfinite(row["final_train_loss"]),
                               "widened": box_text(boxes[h]) if boxes[h] != config else None,
                               "identified": lr0_named({n: span and {"low": span.low, "high": span.high,
                                                                     "fraction_of_box": span.fraction}
                                                        for n, span in spans[h].items()}),
                               "diverged_restarts": np.flatnonzero(~np.isfinite(objectives[h])).tolist()}
    short, longest = per_horizon[str(horizons[0])], per_horizon[str(horizons[-1])]
    return {"dataset": config.dataset, "long_horizon": horizons[-1], "horizons": per_horizon,
            "decay_exponent_ratio": short["decay_exponent"] / longest["decay_exponent"],
            "final_train_loss_ratio": short["final_train_loss"] / longest["final_train_loss"]}


# --- report: saved results only (shorthorizon.report.offline) ---------------------------------
def report(run_dir: RunDir, prefix: str = "") -> str:
    """The report's section (:func:`shorthorizon.report.offline.section`), with the paper's ratios
    beside ours where the run's config is the paper's."""
    return section(run_dir, prefix, is_paper_horizons(run_dir.read_config()))
