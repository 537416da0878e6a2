"""Adaptive search of a log-space box in vmapped generations: a quadratic model of the
surface around the best points seen, minimized within a trust region, steppable one generation
at a time.

The blind search it replaces scores N log-uniform samples of the box and a zoom of samples
around the best one, every sample a full unroll. Here the caller's coarse samples (a small
shared surface) start a search whose generations are batches of ``population`` points, each
batch one call of the objective (on the offline problem: one vmapped
:meth:`~shorthorizon.offline_problem.OfflineFit.surface`, one unit of work):

    >>> state = init(space, seed=0, start_points=coarse, start_losses=coarse_loss, population=6)
    >>> for _ in range(4):
    ...     points = ask(state)
    ...     state = tell(state, points, objective(points))
    >>> result(state)["best"]

or :func:`search` for the loop. Every point seen (the start's too) stays in the state, so the
caller can take the identified span over everything evaluated; the fit is the best point seen.

Coordinates. The search runs in each hyperparameter's log10 box normalized to [0, 1]
(:func:`to_unit`, :func:`from_unit`): log10 of the value, or of 1 − value for a name in
:data:`shorthorizon.optim.COMPLEMENTED` (a momentum), so one step means the same share of every
box. Candidates outside the box are clipped onto it (not reflected): an optimum on an edge is
then sampled exactly on the edge.

A generation (:func:`ask`). Fit a full quadratic (1 + d + d(d+1)/2 coefficients) by least
squares to the :data:`FIT` best finite points seen, centred on the best one b. Where its
Hessian H is positive definite, the model's minimizer, its step from b cut to the trust radius
r, is the first candidate m, and the others are m + r S z (z standard normal, S = H^(-1/2)
scaled to determinant 1, its condition capped at :data:`CONDITION`): the samples spread along
the valley the model sees. Where H is not positive definite (too few points, a flat or saddle
surface), m is b moved r down the model's gradient and S the identity. :func:`tell` halves r
after a generation that found no better point, so the samples close in on the optimum.

Searches of neighbouring objectives share what they find (``ask``'s ``hint``): on the offline
problem each horizon's generation also tries the best point the next shorter horizon's search
has found so far (in place of one sample), since the optimum moves steadily with the horizon
(the paper's Figure 5) while a long horizon's coarse samples are few (each costs a whole long
unroll): at the paper's T = 20,000, 16 coarse samples and 3 generations of 6 from the best of
them ended at 0.152, 14% above the blind search's fit, at a decay exponent of 0.057, while the
T = 5,000 search had found 1.6 (the blind fit at 20,000: 0.70).

Why not CMA-ES (evosax's ``CMA_ES``, mean at the best coarse point, step 0.15, clipped,
told the ranks): measured by ``benchmarks/search_quality.py`` (10 seeds, 16 coarse points and
4 generations of 6), CMA-ES barely adapts its covariance in so few generations and lands
between the blind search at the same 40 evaluations and the blind search at 160; the quadratic
model's median regret was at or below the blind 160's on all eight surfaces (bowls, a rotated
30:1 valley, a surface flat in the decay exponent, an lr cliff where runs diverge, an optimum
beyond the box's corner, asymmetric and curved valleys, lr with momentum), its worst seed
too. A quadratic needs 6 points in 2 dimensions, and the shared coarse surface already has
them.

Ranks. A non-finite loss (a diverged run) ranks after every finite one and never enters the
fit, ties keep their order, so a NaN never reaches the model.

Randomness. Generation g's draws come from ``numpy.random.default_rng([*seed, g])`` (``seed`` an
int or a sequence of ints, e.g. ``(config.seed, horizon)``):
:func:`ask` is a pure function of the state (asking twice gives the same points), the same seed
and losses give bitwise the same points, and a search resumed from a stored state
(:meth:`SearchState.arrays`, :meth:`SearchState.from_arrays`) goes on exactly as one never
interrupted.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from shorthorizon import optim
from shorthorizon.stats import quadratic

RADIUS = 0.15  # initial trust radius in unit coordinates (~0.4 decades of the paper's lr box)
FIT = 12  # best points the quadratic is fitted to (twice its 6 coefficients in 2 dimensions)
CONDITION = 100.0  # cap on the condition number of the samples' spread S


class SearchState(NamedTuple):
    """Where a search stands, as plain arrays (:meth:`arrays` for ``np.savez``): its space's
    ``names`` and log10 box (``low``, ``high``, in the search's coordinate), the ``seed``, the
    ``population`` of a generation, the number of generations told, every point seen in unit
    coordinates (rows) and its loss (the start's first), and the trust ``radius``."""

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    seed: np.ndarray
    population: np.ndarray
    generation: np.ndarray
    points: np.ndarray
    losses: np.ndarray
    radius: np.ndarray

    def arrays(self) -> dict:
        """The state as name -> NumPy array (the names as a string array)."""
        return {k: np.asarray(v) for k, v in self._asdict().items()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "SearchState":
        """The state :meth:`arrays` gave (e.g. read back with ``np.load``)."""
        return cls(**{k: (tuple(str(n) for n in arrays[k]) if k == "names" else np.asarray(arrays[k]))
                      for k in cls._fields})


def log_box(space: optim.LogSpace) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """``space``'s names and its box in the search's coordinate: log10 of each value, or of
    1 − value for a name in :data:`~shorthorizon.optim.COMPLEMENTED` (low, high: that coordinate's)."""
    names, low, high = [], [], []
    for name, a, b in space.ranges:
        if name in optim.COMPLEMENTED and b >= 1:
            raise ValueError(f"{name!r}'s box must end below 1 for log(1 - {name}) to be bounded, got {b!r}")
        names.append(name)
        lo, hi = np.sort(log_coordinate(name, (a, b)))
        low.append(lo)
        high.append(hi)
    return tuple(names), np.array(low), np.array(high)


def log_coordinate(name: str, values) -> np.ndarray:
    """Values of hyperparameter ``name`` in the search's coordinate: log10 of each, or of
    1 − value for a name in :data:`~shorthorizon.optim.COMPLEMENTED` (a momentum)."""
    values = np.asarray(values, float)
    return np.log10(1 - values) if name in optim.COMPLEMENTED else np.log10(values)


def to_unit(state_or_space, points: Mapping[str, np.ndarray]) -> np.ndarray:
    """Points (name -> values) as rows of unit coordinates of the box (a state's or a space's)."""
    names, low, high = _box(state_or_space)
    columns = [log_coordinate(n, points[n]) for n in names]
    return (np.stack(columns, axis=-1) - low) / (high - low)


def from_unit(state_or_space, unit: np.ndarray) -> dict:
    """Rows of unit coordinates as points (name -> float32 values), clipped onto the box."""
    names, low, high = _box(state_or_space)
    log = low + np.clip(unit, 0.0, 1.0) * (high - low)
    out = {}
    for i, n in enumerate(names):
        value = 10 ** log[:, i]
        lo, hi = 10 ** low[i], 10 ** high[i]
        value = np.clip(value, lo, hi)
        out[n] = (1 - value if n in optim.COMPLEMENTED else value).astype(np.float32)
    return out


def _box(state_or_space):
    if isinstance(state_or_space, SearchState):
        return state_or_space.names, state_or_space.low, state_or_space.high
    return log_box(state_or_space)


def order(losses: np.ndarray) -> np.ndarray:
    """Indices from the lowest loss, the non-finite last, ties by position."""
    return np.argsort(np.where(np.isfinite(losses), losses, np.inf), kind="stable")


def init(space: optim.LogSpace, seed: int | Sequence[int], start_points: Mapping[str, np.ndarray] | None = None,
         start_losses: np.ndarray | None = None, population: int = 6, radius: float = RADIUS) -> SearchState:
    """A search of ``space``'s box from the points already scored (``start_points``: name ->
    values, and their ``start_losses``; e.g. a coarse shared surface), ``population`` points a
    generation, trust radius ``radius`` in unit coordinates, its draws from ``seed`` (an int or
    ints, e.g. ``(config.seed, horizon)``: one stream per seed and horizon)."""
    names, low, high = log_box(space)
    if start_points is None:
        unit, losses = np.zeros((0, len(names))), np.zeros(0)
    else:
        unit, losses = to_unit(space, start_points), np.asarray(start_losses, float).reshape(-1)
        if len(unit) != len(losses):
            raise ValueError(f"{len(unit)} start points but {len(losses)} start losses")
    if population < 1 or not radius > 0:
        raise ValueError(f"population must be at least 1 and radius positive, got {population} and {radius}")
    return SearchState(names=names, low=low, high=high, seed=np.atleast_1d(np.asarray(seed, np.int64)),
                       population=np.asarray(population, np.int64), generation=np.asarray(0, np.int64),
                       points=unit, losses=losses, radius=np.asarray(radius, float))


def _proposal(state: SearchState) -> tuple[np.ndarray, np.ndarray]:
    """The generation's centre m and spread S (module docstring)."""
    d, radius = len(state.names), float(state.radius)
    finite = np.isfinite(state.losses)
    if not finite.any():
        return np.full(d, 0.5), np.eye(d)
    fitted = order(state.losses)[:min(FIT, int(finite.sum()))]
    best = state.points[fitted[0]]
    if len(fitted) < 1 + d + d * (d + 1) // 2:
        return best, np.eye(d)
    gradient, hessian, _ = quadratic(state.points[fitted] - best, state.losses[fitted])
    values, vectors = np.linalg.eigh(hessian)
    if values.min() > 0:
        step = -np.linalg.solve(hessian, gradient)
        spread = vectors @ np.diag(np.maximum(values, values.max() / CONDITION) ** -0.5) @ vectors.T
        spread /= np.linalg.det(spread) ** (1 / d)
    else:
        step = -gradient * radius / max(np.linalg.norm(gradient), 1e-300)
        spread = np.eye(d)
    length = np.linalg.norm(step)
    if length > radius:
        step *= radius / length
    return np.clip(best + step, 0.0, 1.0), spread


def ask(state: SearchState, hint: Mapping[str, float] | None = None) -> dict:
    """The next generation's ``population`` points (name -> float32 values, inside the box):
    the model's proposal first, then its samples, the first of them replaced by ``hint`` (a
    point, name -> value: the best a neighbouring search has found) where given and not seen yet."""
    center, spread = _proposal(state)
    rng = np.random.default_rng([*(int(k) for k in state.seed), int(state.generation)])
    z = rng.standard_normal((int(state.population) - 1, len(state.names)))
    unit = np.vstack([center, center + float(state.radius) * z @ spread.T])
    if hint is not None and len(unit) > 1:
        near = to_unit(state, {n: np.atleast_1d(hint[n]) for n in state.names})
        if not np.isclose(state.points, near, rtol=0, atol=1e-6).all(axis=1).any():
            unit[1] = near[0]
    return from_unit(state, unit)


def tell(state: SearchState, points: Mapping[str, np.ndarray], losses) -> SearchState:
    """``state`` after a generation ``points`` (as :func:`ask` gave them) scored ``losses``: the
    points kept, the trust radius halved where none beat the best before."""
    losses = np.asarray(losses, float).reshape(-1)
    unit = to_unit(state, points)
    if len(unit) != len(losses):
        raise ValueError(f"{len(unit)} points but {len(losses)} losses")
    before = np.min(state.losses, initial=np.inf, where=np.isfinite(state.losses))
    improved = np.any(np.isfinite(losses) & (losses < before))
    return state._replace(generation=state.generation + 1, points=np.concatenate([state.points, unit]),
                          losses=np.concatenate([state.losses, losses]),
                          radius=np.asarray(state.radius if improved else state.radius / 2, float))


def result(state: SearchState) -> dict:
    """Every point seen (``points``: name -> values, the start's first) with its ``losses``, and
    the ``best`` point (name -> value; None where no loss is finite) with its ``best_loss``."""
    return result_of(state, state.points, state.losses)


def result_of(state_or_space, unit: np.ndarray, losses: np.ndarray) -> dict:
    """:func:`result` of points given as rows of unit coordinates of a state's or space's box."""
    points = from_unit(state_or_space, unit.reshape(-1, len(_box(state_or_space)[0])))
    first = order(losses)[:1]
    found = bool(first.size and np.isfinite(losses[first[0]]))
    return {"points": points, "losses": losses,
            "best": {n: float(v[first[0]]) for n, v in points.items()} if found else None,
            "best_loss": float(losses[first[0]]) if found else float("nan")}


def search(objective: Callable[[dict], np.ndarray], space: optim.LogSpace, seed: int | Sequence[int], budget: int,
           population: int = 6, start_points: Mapping[str, np.ndarray] | None = None,
           start_losses: np.ndarray | None = None, radius: float = RADIUS) -> dict:
    """:func:`init`, then ``budget // population`` generations of :func:`ask`, ``objective``
    (name -> values of one generation -> its losses) and :func:`tell`: the :func:`result`."""
    state = init(space, seed, start_points, start_losses, population, radius)
    for _ in range(budget // population):
        points = ask(state)
        state = tell(state, points, np.asarray(objective(points)))
    return result(state)


def blind(objective: Callable[[dict], np.ndarray], space: optim.LogSpace, seed: int, samples: int, zoom: int,
          width: float = 0.3) -> dict:
    """The search this one replaces, on a space instead of a config (the reference it is judged
    against): ``samples`` log-uniform points of the box, then a zoom of ``zoom`` points around
    the best (itself, not scored again, and ``zoom - 1`` log-uniform within ``width`` decades of
    it on each axis, inside the box), each stage one call of ``objective``: the :func:`result`
    of both stages (its ``points``, ``losses``, ``best``, ``best_loss``)."""
    names, low, high = log_box(space)
    rng = np.random.default_rng(seed)
    first = from_unit(space, rng.uniform(size=(samples, len(names))))
    losses = np.asarray(objective(first), float)
    unit = to_unit(space, first)
    center = unit[order(losses)[0]] * (high - low) + low  # in decades
    near_low = np.maximum(center - width, low)
    near_high = np.minimum(center + width, high)
    log = near_low + rng.uniform(size=(zoom - 1, len(names))) * (near_high - near_low)
    second = from_unit(space, (log - low) / (high - low))
    second_losses = np.asarray(objective(second), float)
    return result_of(space, np.concatenate([unit, to_unit(space, second)]), np.concatenate([losses, second_losses]))
