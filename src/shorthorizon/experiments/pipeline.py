"""The offline pipeline that ``offline``, ``truncated`` and ``bias`` compose (not a command).

Every fit of a schedule on the offline problem (:class:`~shorthorizon.offline_problem.OfflineFit`)
is found the same way, seed by seed: log-uniform samples of the box scored at every horizon
(prefixes of one vmapped unroll, on the batches every fit is judged by; a schedule laid over a
run's length needs a surface per length), a zoom of samples (or the adaptive search) around a
horizon's best one, optionally SMD from the best candidate, a box moved out and searched again
where a fit sits at its edge, and long runs of the picks.
This module holds those stages once: their units of work (module-level functions of plain
arguments, so that Ray can ship them and a stored unit records what it was computed from), the
sweep that runs one stage's units of every seed together (:class:`Sweep`), and the typed
result a stage hands to the next (:class:`Candidates`). The commands keep what differs: their
horizons, which stages they run in which order, their summaries, claims and figures.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Hashable, Mapping, NamedTuple, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from shorthorizon import optim
from shorthorizon.meta import search
from shorthorizon.config import NONNEGATIVE, POSITIVE, key, seeded
from shorthorizon.meta.smd import EVALUATION_COST
from shorthorizon.hypergrad import Estimator
from shorthorizon.offline_problem import (SMD_ESTIMATOR, OfflineConfig, OfflineFit, best, limits, lr0_named,
                                           resolve_dataset, space, surface_points, with_family, zoom_points)
from shorthorizon.results import RunDir
from shorthorizon.runners import Unit, run_seeded
from shorthorizon.stats import IdentifiedRange, identified_fraction, identified_range, profile_halfwidths

# A run whose training loss is not finite, or exceeds this multiple of its initial loss at any
# curve point, diverged: on the paper's MLP the loss after the warm start is ~0.5 and chance
# ~2.3, so a run that merely learns nothing is not flagged, while one that blows up is.
DIVERGENCE = 10.0
EDGE = 0.05  # decades: a fit this close to a bound of its box is at its edge


def diverged(train_loss) -> bool:
    """Whether a long run's training-loss curve (its first point: the start) diverged."""
    loss = np.asarray(train_loss, float)
    return bool(not np.isfinite(loss).all() or np.any(loss > DIVERGENCE * loss[0]))


def unless_diverged(loss: np.ndarray, start: float) -> np.ndarray:
    """Objectives with those of diverged samples (not finite, or above :data:`DIVERGENCE` times
    the ``start`` loss) set to inf, so that no fit, span or ranking counts them."""
    loss = np.asarray(loss, float)
    return np.where(np.isfinite(loss) & (loss <= DIVERGENCE * start), loss, np.inf)


@dataclass(frozen=True)
class Candidates:
    """Points of the box (hyperparameter name -> values) and their objective at one horizon."""

    points: Mapping[str, np.ndarray]
    loss: np.ndarray

    def __add__(self, other: "Candidates") -> "Candidates":
        return Candidates({k: np.concatenate([v, np.atleast_1d(other.points[k])]) for k, v in self.points.items()},
                          np.concatenate([self.loss, np.atleast_1d(other.loss)]))

    @classmethod
    def ended(cls, runs: Sequence[dict], names: Sequence[str], start: float) -> "Candidates":
        """Where SMD ``runs`` (:func:`refine_unit`'s) ended, each at its objective there (inf where
        it diverged: :func:`unless_diverged` of the ``start`` loss)."""
        return cls({n: np.array([run[n][-1] for run in runs]) for n in names},
                   unless_diverged([run["meta_objective"] for run in runs], start))

    def top(self, n: int) -> list[dict]:
        """The ``n`` points of lowest finite objective (name -> value), best first."""
        return [{k: float(v[i]) for k, v in self.points.items()} for i in best(self.loss)[:n]
                if np.isfinite(self.loss[i])]

    def best(self) -> dict | None:
        """The point of lowest finite objective, None where every one diverged."""
        return next(iter(self.top(1)), None)

    def best_loss(self) -> float:
        finite = self.loss[np.isfinite(self.loss)]
        return float(finite.min()) if finite.size else float("nan")

    def identified(self, fitted: optim.LogSpace, tolerance: float) -> dict:
        """Per hyperparameter of ``fitted``, the range its objective cannot tell apart from the
        best and the share of its box it covers, in the space's coordinate (log10 of the value,
        of 1 − μ for a momentum): the span of the points within ``tolerance`` (relative) of the
        best (:func:`~shorthorizon.stats.identified_range`), extended, inside the box, to the
        quadratic model's profile band around the best (:func:`~shorthorizon.stats.profile_halfwidths`);
        None where every point diverged."""
        names, low, high = search.log_box(fitted)
        coords = low + search.to_unit(fitted, self.points) * (high - low)
        widths = profile_halfwidths(coords, self.loss, tolerance)
        out = {}
        for i, name in enumerate(names):
            box = (low[i], high[i])
            span = identified_range(coords[:, i], self.loss, tolerance, box=box, log=False)
            if span and widths is not None:
                center = coords[best(self.loss)[0], i]
                wider = (min(span.low, max(box[0], center - widths[i])), max(span.high, min(box[1], center + widths[i])))
                span = IdentifiedRange(*wider, identified_fraction(wider, box, log=False))
            out[name] = span and (span._replace(low=1 - 10 ** span.high, high=1 - 10 ** span.low)
                                  if name in optim.COMPLEMENTED else span._replace(low=10 ** span.low, high=10 ** span.high))
        return out


def announce(fit: OfflineFit, name: str, cost: dict, horizon: int, start: dict, programs: int = 0) -> None:
    """Print a run's estimated ``cost`` (plain training steps per stage, over all its seeds; the
    share of one seed too) before it starts: its time at the speed ``fit`` measures now at
    ``horizon`` from ``start``, and ``programs`` compilations at the time the simplest took
    (:meth:`~shorthorizon.offline_problem.OfflineFit.speed`; a lower bound: on a CPU a small run is
    mostly compiling; seeds share compiled programs)."""
    rate, compile_seconds = fit.speed(horizon, start)
    total, seeds = sum(cost.values()), fit.config.seeds
    compiling = (f" + at least {_duration(programs * compile_seconds)} compiling {programs} programs "
                 f"({compile_seconds:.1f} s measured for the simplest)" if programs else "")
    print(f"[{name}] estimated cost: {total:.3g} plain training steps ("
          + ", ".join(f"{k} {v:.3g}" for k, v in cost.items())
          + (f"; {seeds} seeds, {total / seeds:.3g} each" if seeds > 1 else "")
          + f") at {rate:.0f} steps/s measured -> about {_duration(total / rate)} on one process{compiling}",
          file=sys.stderr)


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


@contextmanager
def meta_steps_bar(total: int, desc: str):
    """A progress bar of finished meta-steps; yields the ``progress(n)`` callback a fit calls."""
    with tqdm(total=total, desc=desc, unit="meta-step", leave=False, dynamic_ncols=True) as bar:
        yield bar.update


def start_point(config: OfflineConfig, **values: float) -> dict:
    """A start of the fitted values: ``values`` where given (``lr``, ``decay_exponent``: one the
    schedule lacks is left out), moved onto the box where they lie outside it (:func:`outside`
    says so), every other at the middle of its box (log10 of the value, of 1 − μ for a momentum)."""
    fitted = space(config)
    middle = search.from_unit(fitted, np.full((1, len(fitted.names)), 0.5))
    return {n: float(np.clip(values[n], low, high)) if n in values else float(middle[n][0])
            for n, low, high in fitted.ranges}


STARTS = {"init_lr0": "lr", "init_decay_exponent": "decay_exponent"}  # config keys of a start -> the values


def configured(config: OfflineConfig) -> list[dict]:
    """The configured starts of a fit (:data:`STARTS`; the i-th value of each key, one key's
    single value: one start), each moved onto the box (:func:`start_point`)."""
    values = {n: np.atleast_1d(getattr(config, key)) for key, n in STARTS.items()}
    return [start_point(config, **{n: v[i] for n, v in values.items() if i < len(v)}) for i in range(len(values["lr"]))]


def outside(config: OfflineConfig) -> list[str]:
    """A line per start value (:data:`STARTS`) outside its box: a fit starts at the nearest bound
    (an optimizer family's box, AdamW's say, need not hold the heavy ball's starts)."""
    box = {n: (low, high) for n, low, high in space(config).ranges}
    return [f"{key} {v:g} lies outside the box of {n} [{box[n][0]:g}, {box[n][1]:g}]: the fit starts at its nearest "
            f"bound; set {key} within it" for key, n in STARTS.items() if n in box
            for v in np.atleast_1d(getattr(config, key)) if not box[n][0] <= v <= box[n][1]]


def box_ranges(config: OfflineConfig) -> dict:
    """The box of ``config`` as curves store it: ``lr0_range``, ``decay_exponent_range``, ... (low, high)."""
    return {f"{n}_range": r for n, r in lr0_named({n: (low, high) for n, low, high in space(config).ranges}).items()}


def problem(config: OfflineConfig, length: int | None = None) -> OfflineFit:
    """The offline problem of ``config`` with its SMD settings (:meth:`~shorthorizon.offline_problem.OfflineConfig.smd_settings`),
    its schedule laid over ``length`` steps (a length-free schedule's problem needs none)."""
    return OfflineFit.from_config(config, length=length, **config.smd_settings())


# --- units: one seed's config each ----------------------------------------------------------
def surface_unit(config: OfflineConfig, chunk: int, horizons: tuple[int, ...], length: int | None = None) -> dict:
    """The objective at every one of the increasing ``horizons`` (rows) of one chunk of the
    surface's samples (columns), the schedule laid over ``length``."""
    return {"loss": problem(config, length).surface(surface_points(config, chunk), tuple(horizons))}


def zoom_unit(config: OfflineConfig, horizon: int, center: dict, length: int | None = None) -> dict:
    """The objective at ``horizon`` of :func:`~shorthorizon.offline_problem.zoom_points`
    around ``center`` (the first: itself), the schedule laid over ``length``."""
    points = zoom_points(config, horizon, center, config.zoom_width, config.zoom_samples)
    return {**points, **points_unit(config, horizon, points, length)}


def points_unit(config: OfflineConfig, horizon: int, points: dict, length: int | None = None) -> dict:
    """The objective at ``horizon`` of the given ``points`` (name -> values; one vmapped unroll),
    the schedule laid over ``length``: a generation of the adaptive search."""
    return {"loss": problem(config, length).surface(points, (horizon,))[0]}


def refine_unit(config: OfflineConfig, horizon: int, start: dict, steps: int, length: int | None = None,
                restart: int = 0) -> dict:
    """``steps`` meta-steps of SMD of the objective at ``horizon`` from ``start``, the schedule
    laid over ``length`` (``restart``: which of the horizon's SMD runs, each its own batches):
    :meth:`~shorthorizon.offline_problem.OfflineFit.fit`'s trajectories, objectives and wall time."""
    fit = problem(config, length)
    key = jax.random.fold_in(jax.random.fold_in(fit.keys["smd"], horizon), restart)
    with meta_steps_bar(steps, f"SMD T={horizon} restart {restart} seed {config.seed}") as progress:
        return fit.fit(horizon, start, jax.random.split(key, steps), progress)


def long_run_unit(config: OfflineConfig, values: dict, horizon: int) -> dict:
    """Train ``horizon`` steps with the hyperparameter ``values``: training-loss and test-error
    curves (:meth:`~shorthorizon.offline_problem.OfflineFit.long_run`)."""
    return problem(config, horizon).long_run(values, horizon)


def at_bounds(name: str, value: float, low: float, high: float) -> tuple[bool, bool]:
    """Whether ``value`` lies within ``EDGE`` decades of its box's lower and upper bound, in the
    space's coordinate (log(1 − μ) for a momentum, where μ's upper bound is the near one)."""
    if name in optim.COMPLEMENTED:
        upper, lower = at_bounds("", 1 - value, 1 - high, 1 - low)
        return lower, upper
    return bool(low > 0 and abs(math.log10(value / low)) < EDGE), bool(abs(math.log10(value / high)) < EDGE)


def widened(config: OfflineConfig, values: dict) -> OfflineConfig | None:
    """``config`` with every bound of its box that a fitted value sits at (:func:`at_bounds`)
    moved ``zoom_width`` decades outwards (a momentum's upper bound: 1 − μ divided), no further
    than the values it may take (:func:`~shorthorizon.offline_problem.limits`: a final fraction
    stops at 1); None where no bound moves (a momentum's 0 cannot)."""
    step, moved, most = 10 ** config.zoom_width, {}, limits(config)
    for name, low, high in space(config).ranges:
        at_low, at_high = at_bounds(name, values[name], low, high)
        complemented, limit = name in optim.COMPLEMENTED, most.get(name, optim.Limits())
        up = 1 - (1 - high) / step if complemented else high * step
        up = up if limit.holds(up) else limit.high if limit.holds(limit.high) else high  # b2 stops short of 1
        wider = (low / step if at_low and not complemented else low, up if at_high else high)
        if wider != (low, high):
            moved[name] = wider
    if not moved:
        return None
    adapt = tuple(f"{name}:{moved[name][0]!r}:{moved[name][1]!r}" if name in moved else entry
                  for entry in config.adapt for name in [entry.split(":")[0]])
    return dataclasses.replace(config, lr0_range=moved.get("lr", config.lr0_range), adapt=adapt,
                               decay_exponent_range=moved.get("decay_exponent", config.decay_exponent_range))


def judged(config: OfflineConfig, box: OfflineConfig, label: str, seed: int, values: dict | None,
           run: dict | None) -> dict:
    """A fit's numbers at the end of its long ``run`` (None: it had none): the training loss and
    test error (NaN, written null, where it diverged: :func:`diverged`; never a loss to take a
    ratio of), the lines naming each of its ``values`` at an edge of its ``box``
    (:func:`edge_lines`) and that box where it was widened from ``config``'s."""
    end = run is not None and not diverged(run["train_loss"])
    return {**{f"final_{curve}": float(run[curve][-1]) if end else math.nan for curve in ("train_loss", "test_error")},
            "at_edge": edge_lines(box, label, seed, values) if values else [],
            "widened": box_text(box) if box != config else None}


def box_text(config: OfflineConfig) -> str:
    return ", ".join(f"{name} [{low:.3g}, {high:.3g}]" for name, low, high in space(config).ranges)


def edge_lines(config: OfflineConfig, label: str, seed: int, values: dict) -> list[str]:
    """Lines naming each value of a fit within ``EDGE`` decades of its box's bound, and the key
    that widens the box."""
    keys = {"lr": "lr0_range", "decay_exponent": "decay_exponent_range"}
    out = []
    for name, low, high in space(config).ranges:
        for bound, side, at in zip((low, high), ("lower", "upper"), at_bounds(name, values[name], low, high)):
            if at:
                out.append(f"{label}, seed {seed}: {name} {values[name]:.3g} is at the {side} bound of its box "
                           f"({bound:g}); widen it with --set {keys.get(name, 'adapt')}="
                           + ("LOW,HIGH" if name in keys else f"{name}:LOW:HIGH"))
    return out


@dataclass(frozen=True)
class SearchConfig(OfflineConfig):
    """The offline problem's keys and those of the pipeline's search (``offline`` and ``bias``):
    the zoom or the adaptive search around a fit's best sample, and the identified range."""

    zoom_samples: int = key(16, NONNEGATIVE)  # > 1: a fit's zoom, that many samples around its best one
    generations: int = key(0, NONNEGATIVE)  # > 0: the adaptive search (meta.search) from the surface, not the zoom
    population: int = key(6, POSITIVE)  # the adaptive search's points per generation (one vmapped unroll)
    tolerance: float = key(0.01, POSITIVE)  # identified range: objective within this fraction of the fit's best

    @property
    def searches(self) -> bool:
        """Whether a fit's best sample is zoomed around (``zoom_samples`` > 1) or searched from."""
        return self.zoom_samples > 1 or self.generations > 0


def named(config: OfflineConfig) -> list[str]:
    """The fitted values' names as summaries and curves store them (``lr0``, ``decay_exponent``, ...)."""
    return list(lr0_named(dict.fromkeys(space(config).names)))


def headlines(table: Mapping[str, str | tuple[float, float]], config: OfflineConfig, axis: str, values: Sequence) -> dict:
    """``table``'s headline paths (dotted into a seed's summary, each summarised over seeds:
    :func:`~shorthorizon.stats.over_seeds`) at each of ``values`` of ``{axis}`` (a horizon, a
    fit) and each fitted value (``{name}``: :func:`named`), each of ``values``' paths together."""
    return {path.format(**{axis: v}, name=n): kind for v in values for path, kind in table.items()
            for n in (named(config) if "{name}" in path else [None])}


TEST_BATCHES = 100  # a test split (10,000 images) in batches of 100, for the cost of a test-error point


def trained_cost(config: OfflineConfig, steps: int, evaluations: int = 1) -> float:
    """Training ``steps`` steps and evaluating the objective on the ``eval_batches`` batches
    ``evaluations`` times (each batch :data:`~shorthorizon.meta.smd.EVALUATION_COST` plain steps),
    in plain training steps."""
    return steps + evaluations * config.eval_batches * EVALUATION_COST


def long_run_cost(config: OfflineConfig, horizon: int) -> float:
    """A long run in plain training steps: ``horizon`` steps, and the training loss on the
    evaluation batches and the test error at each of its ``curve_points``."""
    return horizon + config.curve_points * (config.eval_batches + TEST_BATCHES) * EVALUATION_COST


def refine_cost(config: OfflineConfig, horizon: int, steps: int, estimator: Estimator = SMD_ESTIMATOR) -> float:
    """An SMD run of ``steps`` meta-steps at ``horizon`` in plain training steps: each meta-step
    differentiates (the ``estimator``'s ``work``) a ``horizon``-step unroll and its objective on
    ``eval_batches`` batches, and the fit is evaluated once."""
    return (steps * estimator.work(len(space(config).names)) + 1) * trained_cost(config, horizon)


def search_cost(config: SearchConfig, horizons: Sequence[int]) -> dict:
    """The plain training steps of the zoom (``zoom_samples`` > 1) or the adaptive search of fits
    at ``horizons`` (each point trained to its horizon and evaluated there), per seed."""
    points = config.generations * config.population or config.zoom_samples * (config.zoom_samples > 1)
    steps = points * sum(trained_cost(config, h) for h in horizons)
    return {"search" if config.generations else "zoom": steps} if steps else {}


def begin(validate: Callable[[OfflineConfig], None], config: OfflineConfig, run_dir: RunDir, executor: str = "local",
          ray_address: str | None = None) -> tuple[OfflineConfig, list[OfflineConfig], "Sweep"]:
    """A command's start: its config checked (the command's ``validate``, before anything is
    read or written), resolved (its dataset, its optimizer family's box) and written to the run
    folder, each seed's config (seed k: the run with seed + k) and the sweep its stages run in
    (every stage: all seeds' units in one sweep)."""
    validate(config)
    config = with_family(resolve_dataset(config))
    run_dir.write_config(config)
    return config, [seeded(config, k) for k in range(config.seeds)], Sweep(run_dir, executor, ray_address)


class Sweep(NamedTuple):
    """Where a run's stages go: its folder (finished units are kept and skipped) and executor.
    Each stage takes one list per seed and runs every seed's units in one sweep."""

    run_dir: RunDir
    executor: str = "local"
    ray_address: str | None = None

    def run(self, fn, units: Sequence[Mapping[Hashable, Unit]], desc: str) -> list[dict]:
        """``fn`` over every seed's ``units`` (per seed: key -> unit) in one sweep; per seed, the
        results under the same keys (a unit's name is where it is stored, never read back)."""
        done = run_seeded(fn, [list(us.values()) for us in units], self.run_dir, self.executor, self.ray_address, desc)
        return [{k: out[u.name] for k, u in us.items()} for us, out in zip(units, done)]

    def long_runs(self, seeds: Sequence[OfflineConfig], picks: Sequence[Mapping[Hashable, dict | None]],
                  labels: Mapping[Hashable, str], horizon: int) -> list[dict]:
        """Every seed's picks (key -> values; None: no fit, no run) trained ``horizon`` steps
        (:func:`long_run_unit`, units ``long_{label}``)."""
        return self.run(long_run_unit, [{k: Unit(f"long_{labels[k]}", dict(config=s, values=v, horizon=horizon))
                                         for k, v in pick.items() if v} for s, pick in zip(seeds, picks)],
                        desc="long runs")

    def search(self, seeds: Sequence[OfflineConfig], fits: Sequence[Mapping[str, tuple]], starts: Sequence[float],
               generations: int, population: int) -> list[dict]:
        """The adaptive search (:mod:`shorthorizon.meta.search`) of each seed's ``fits`` (label ->
        (horizon, length, the Candidates it starts from: a coarse surface's)), ``generations``
        of ``population`` points, each generation of every seed and fit one sweep (units
        ``gen{g}_{label}``: a stored generation is not scored again, and :func:`~shorthorizon.meta.search.ask`
        being a pure function of the states, a resumed search goes on as it would have). Each
        generation of a fit also tries the best point found so far by the fit of the next shorter
        horizon (``ask``'s hint). Per seed, label -> every point seen and its objective (diverged
        ones inf: :func:`unless_diverged`)."""
        states = [{label: search.init(space(s), (s.seed, horizon, length or 0), dict(c.points), c.loss, population)
                   for label, (horizon, length, c) in by_label.items()} for s, by_label in zip(seeds, fits)]
        shorter = {label: max((other for other, (h, *_) in fits[0].items() if h < horizon),
                              key=lambda other: fits[0][other][0], default=None)
                   for label, (horizon, *_) in fits[0].items()}
        for g in range(generations):
            asked = [{label: search.ask(state, shorter[label] and search.result(by_label[shorter[label]])["best"])
                      for label, state in by_label.items()} for by_label in states]
            done = self.run(points_unit, [{label: Unit(f"gen{g}_{label}", dict(config=s, horizon=horizon, length=length,
                                                                             points=points[label]),
                                                       cost=horizon * population)
                                           for label, (horizon, length, _) in by_label.items()}
                                          for s, by_label, points in zip(seeds, fits, asked)],
                            desc=f"search {g + 1}/{generations}")
            for by_label, points, out, start in zip(states, asked, done, starts):
                for label in by_label:
                    by_label[label] = search.tell(by_label[label], points[label],
                                                  unless_diverged(out[label]["loss"], start))
        results = [{label: search.result(state) for label, state in by_label.items()} for by_label in states]
        return [{label: Candidates(r["points"], r["losses"]) for label, r in by_label.items()} for by_label in results]

    def surface(self, seeds: Sequence[OfflineConfig], horizons: tuple[int, ...], length: int | None = None,
                name: str = "surface") -> list[np.ndarray]:
        """Every seed's surface: its samples' objective at each horizon (rows), in chunks of
        ``surface_chunk`` samples (units ``{name}_c{chunk}``)."""
        chunks = range(seeds[0].surface_samples // seeds[0].surface_chunk)
        extra = {} if length is None else {"length": length}
        done = self.run(surface_unit, [{c: Unit(f"{name}_c{c}", dict(config=s, chunk=c, horizons=tuple(horizons), **extra))
                                        for c in chunks} for s in seeds], desc=name)
        return [np.concatenate([units[c]["loss"] for c in chunks], axis=1) for units in done]

    def zoom(self, seeds: Sequence[OfflineConfig], fits: Mapping[Hashable, tuple], candidates: Sequence[dict],
             starts: Sequence[float]) -> None:
        """Add to each seed's ``candidates`` (key -> :class:`Candidates`) of the ``fits`` (key ->
        (label, horizon, schedule length), every seed's) the points of the adaptive search from them
        (``generations`` > 0: :meth:`search`) or of a zoom around their best (``zoom_samples`` > 1:
        :func:`zoom_unit`, units ``zoom_{label}``), diverged ones inf (:func:`unless_diverged`)."""
        config = seeds[0]
        if config.generations:
            found = self.search(seeds, [{label: (h, n, c[k]) for k, (label, h, n) in fits.items()} for c in candidates],
                                starts, config.generations, config.population)
            for c, by_label in zip(candidates, found):
                for k, (label, *_) in fits.items():
                    all_seen, own = by_label[label], slice(len(c[k].loss), None)  # own: after those it started from
                    c[k] = c[k] + Candidates({n: v[own] for n, v in all_seen.points.items()}, all_seen.loss[own])
        elif config.zoom_samples > 1:
            done = self.run(zoom_unit, [{k: Unit(f"zoom_{label}", dict(config=s, horizon=h, center=c[k].best(), length=n),
                                                 cost=h) for k, (label, h, n) in fits.items() if c[k].best()}
                                        for s, c in zip(seeds, candidates)], desc="zoom")
            for s, c, out, start in zip(seeds, candidates, done, starts):
                for k, result in out.items():
                    c[k] = c[k] + Candidates({n: result[n] for n in space(s).names}, unless_diverged(result["loss"], start))

    def widen(self, name: str, seeds: Sequence[OfflineConfig], fits: Mapping[Hashable, tuple],
              candidates: Sequence[dict], starts: Sequence[float]) -> list[dict]:
        """Up to ``widen`` rounds (where ``zoom_samples`` > 1, :func:`edge_rounds`) of zooming
        again, in a box moved out, around each seed's ``fits`` (key -> (label, horizon, schedule
        length)) whose best candidate sits at an edge of its box (units ``widen{round}_{label}``);
        the zoom's points join the ``candidates`` (key -> :class:`Candidates`, diverged ones inf).
        Per seed, key -> the fit's final box (a config)."""
        boxes = [dict.fromkeys(fits, s) for s in seeds]
        for round_, wider in edge_rounds(name, seeds[0].widen if seeds[0].zoom_samples > 1 else 0, "zooming again",
                                         {k: label for k, (label, *_) in fits.items()}, boxes,
                                         lambda: [{k: c[k].best() for k in fits} for c in candidates]):
            done = self.run(zoom_unit, [{k: Unit(f"widen{round_}_{fits[k][0]}", dict(
                config=moved, horizon=fits[k][1], center=point, length=fits[k][2]), cost=fits[k][1])
                for k, (moved, point) in by_key.items()} for by_key in wider], desc=f"widened zoom {round_}")
            for by_key, out, c, start in zip(wider, done, candidates, starts):
                for k, result in out.items():
                    c[k] = c[k] + Candidates({n: result[n] for n in space(by_key[k][0]).names},
                                             unless_diverged(result["loss"], start))
        return boxes


def edge_rounds(name: str, rounds: int, verb: str, labels: Mapping[Hashable, str], boxes: Sequence[dict],
                ends: Callable[[], Sequence[Mapping[Hashable, dict | None]]]):
    """The rounds of fitting again in a wider box: up to ``rounds`` times, while some fit's
    values (``ends()``, read each round: per seed, key -> values, None where it has none) sit at
    an edge of its box (``boxes``: per seed, key -> config), say so on stderr (after the command's
    ``name``: "``verb`` in" the wider box), yield the round and, per seed, key -> (the box moved
    out there: :func:`widened`, the values), and then take the moved boxes into ``boxes``."""
    for round_ in range(1, rounds + 1):
        wider = [{k: (moved, v) for k, v in end.items() if v and (moved := widened(box[k], v))}
                 for end, box in zip(ends(), boxes)]
        if not any(wider):
            return
        say(name, [f"{labels[k]}, seed {seed}: the fit is at the edge of its box; {verb} in {box_text(moved)} "
                   f"(round {round_} of at most {rounds})" for seed, by_key in enumerate(wider)
                   for k, (moved, _) in by_key.items()])
        yield round_, wider
        for box, by_key in zip(boxes, wider):
            box.update({k: moved for k, (moved, _) in by_key.items()})


def say(name: str, lines: Sequence[str]) -> None:
    """Each of ``lines`` on stderr after the command's ``name``."""
    for line in lines:
        print(f"[{name}] {line}", file=sys.stderr)
