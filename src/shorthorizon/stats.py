"""Intervals for numbers measured over independent seeds.

A headline number measured once is one draw: at T = 100 the offline objective is flat enough
that two schedules decades apart score within 0.2%, and at T = 20,000 one schedule scores 2-4%
apart on another batch stream. Every command that runs seeds reports, per number, the seeds'
values, their mean and a 95% interval from one function here.

- :func:`interval`: Student's t interval for the mean, mean ± t_{n-1} s / sqrt(n). Exact for
  normal draws whatever n; with 3 seeds t_2 = 4.30, so the interval is wide, as it should be.
- :func:`log_interval`: for a positive quantity that varies by factors (a fitted learning rate
  or decay exponent; a ratio computed per seed, short-horizon fit / reference), the t interval
  of the logs, exponentiated: the geometric mean and an interval that stays positive and treats
  2x and 1/2x alike. A ratio is taken within each seed (paired: same initialization, batches
  and samples), which removes what the seeds share.

A hyperparameter study scores many sampled configurations at each short horizon K and at the
full horizon T; three numbers summarise what the scores say:

- :func:`identified_range`: the span of one hyperparameter's samples that score within a
  relative tolerance of the best, and (:func:`identified_fraction`) the share of the box it
  spans: a horizon whose objective is flat in a hyperparameter does not identify it. Samples
  are sparse: where a valley runs diagonally (a larger lr0 with a faster decay), few of them
  fall in it, so :func:`profile_halfwidths` adds what a quadratic model of the best samples
  says: how far each value can move, the others re-optimised, before the objective leaves the
  tolerance.
- :func:`rank_agreement`: whether K ranks the configurations as T does (Spearman, Kendall).
- :func:`shortest_safe_horizon`: the shortest K whose pick costs at most a budget at T, over seeds;
  :func:`finding`: which side of a threshold a number's interval lies on, if either.
"""

from __future__ import annotations

import math
import sys
from typing import Mapping, NamedTuple, Sequence

import numpy as np
from scipy import stats

LARGEST_LOG = math.log(sys.float_info.max)  # exp of a larger number overflows


def finite_or_none(x) -> float | None:
    """``x`` as a float, or None (JSON null) where it is not finite."""
    x = float(x)
    return x if math.isfinite(x) else None


# How a headline number is summarised over seeds (the values of an experiment's HEADLINES table,
# :func:`over_seeds`' ``numbers``): FACTORS, a positive quantity that varies by factors
# (:func:`log_interval`, which stays positive), or the natural bounds (low, high) a plain number
# cannot pass, which its t interval is clipped to (:func:`interval`; with 3 seeds a test error near
# 0 had an interval reaching below it, a rank correlation near 1 one above it).
FACTORS = "factors"
UNBOUNDED = (-math.inf, math.inf)  # a loss (a user's task may have a negative one), a difference
PROPORTION = (0.0, 1.0)  # a test error, a share of runs, a momentum
CORRELATION = (-1.0, 1.0)  # a rank correlation (Spearman, Kendall)


def interval(values: Sequence[float], confidence: float = 0.95, bounds: tuple[float, float] = UNBOUNDED) -> dict:
    """``{"values", "mean", "low", "high", "n", "diverged"}`` of the finite ``values`` (a
    non-finite value is a diverged seed: left out of the interval, counted in ``"diverged"``).
    With fewer than two finite values the bounds are null (None): one draw has no spread. The
    interval is clipped to ``bounds``, the values the number can take (:data:`PROPORTION`, ...).

    The bounds are mean ± half with half = ``scipy.stats.t.interval(confidence, n - 1)[1]``
    s / sqrt(n), not ``t.interval(confidence, n - 1, loc=mean, scale=s / sqrt(n))``: scipy
    computes that lower bound from its own lower quantile, which is not bit for bit minus the
    upper one (confidence 0.9, n = 3), and scales in another order, so its bounds differ from
    these in the last bits (up to 1e-11 relative where the mean nearly cancels the half-width)
    and the interval is no longer exactly symmetric; the refactor check
    (``benchmarks/pin_summaries.py``) pins these bit for bit."""
    values = np.asarray(values, float)
    finite = values[np.isfinite(values)]
    out = {"values": [finite_or_none(v) for v in values], "n": int(finite.size),
           "diverged": int(values.size - finite.size), "mean": float(finite.mean()) if finite.size else None,
           "low": None, "high": None}
    if finite.size >= 2:
        half = stats.t.interval(confidence, finite.size - 1)[1] * finite.std(ddof=1) / math.sqrt(finite.size)
        out["low"], out["high"] = float(max(finite.mean() - half, bounds[0])), float(min(finite.mean() + half, bounds[1]))
    return out


def log_interval(values: Sequence[float], confidence: float = 0.95) -> dict:
    """:func:`interval` of ``log(values)``, exponentiated: ``"mean"`` is the geometric mean.
    A value that is not positive and finite counts as diverged. A bound beyond the largest
    float (a wide spread at a high confidence) is the largest float: the interval is unbounded
    above, and a summary holds no infinity (strict JSON)."""
    values = np.asarray(values, float)
    logs = np.where(np.isfinite(values) & (values > 0), np.log(np.where(values > 0, values, 1.0)), np.nan)
    out = interval(logs, confidence)
    return {**out, "values": [finite_or_none(r) for r in values],
            **{k: None if out[k] is None else math.exp(out[k]) if out[k] < LARGEST_LOG else sys.float_info.max
               for k in ("mean", "low", "high")}}


def summarised(values: Sequence[float], kind: str | tuple[float, float], confidence: float = 0.95) -> dict:
    """The interval over seeds of a number of ``kind`` (:data:`FACTORS`, or its natural bounds)."""
    return log_interval(values, confidence) if kind == FACTORS else interval(values, confidence, kind)


def over_seeds(per_seed: Sequence[Mapping], numbers: Mapping[str, str | tuple[float, float]],
               confidence: float = 0.95) -> dict:
    """A command's summary over its seeds, from each seed's own summary (seed 0 first).

    Seed 0's summary stays at the top level (what a reader of a single-seed run reads); every
    seed's is under ``"per_seed"`` when there is more than one; ``"intervals"`` holds, for each
    headline number, its interval over the seeds. ``numbers`` maps a dotted path into a seed's
    summary (``"horizons.100.decay_exponent"``) to its kind (:func:`summarised`): :data:`FACTORS`
    for a positive quantity such as a learning rate, a decay exponent or a ratio taken within a
    seed, else its natural bounds. A missing or null number is a diverged seed.
    """
    def get(summary: Mapping, path: str) -> float:
        value = lookup(summary, path)
        return math.nan if value is None else float(value)

    intervals = {path: summarised([get(s, path) for s in per_seed], kind, confidence) for path, kind in numbers.items()}
    return {**per_seed[0], "seeds": len(per_seed), **({"per_seed": list(per_seed)} if len(per_seed) > 1 else {}),
            "intervals": intervals}


def lookup(summary: Mapping, path: str):
    """The value at dotted ``path`` of a summary (``"horizons.100.decay_exponent"``), or None
    where a key on the way is missing or null."""
    for key in path.split("."):
        if not isinstance(summary, Mapping) or summary.get(key) is None:
            return None
        summary = summary[key]
    return summary


# The identified range "covers most of the box" when its fraction reaches this: a plain majority.
# A span of samples that score within the tolerance of the best and reach across at least half
# the box's decades means the objective cannot tell apart values that differ by most of what was
# searched, so where the fit lands inside it is set by sampling noise, not by the objective.
MOST_OF_THE_BOX = 0.5


class IdentifiedRange(NamedTuple):
    """The span ``[low, high]`` of one hyperparameter's samples that score within the tolerance
    of the best, and ``fraction``: the share of the box it spans (:func:`identified_fraction`;
    None where no box was given)."""

    low: float
    high: float
    fraction: float | None


def identified_range(values: Sequence[float], objective: Sequence[float], tolerance: float = 0.01, *,
                     box: tuple[float, float] | None = None, log: bool = True) -> IdentifiedRange | None:
    """The span of the sampled ``values`` of one hyperparameter whose ``objective`` (lower is
    better; one entry per sample) is within a relative ``tolerance`` of the best finite one:
    objective <= best + tolerance |best|, i.e. best (1 + tolerance) for a positive best, best
    (1 - tolerance) for a negative one (the band always lies above the best, its width taken
    from |best|), and only exact ties of the best where the best is 0. A non-finite objective
    (a diverged sample, -inf included) is never in the range nor the best. With a ``box``
    (``(low, high)`` that the samples were drawn from) the fraction of it spanned, on a log
    scale where ``log``; see :func:`identified_fraction`. None where no objective is finite."""
    values, objective = np.asarray(values, float), np.asarray(objective, float)
    finite = np.isfinite(objective)
    if not finite.any():
        return None
    best = objective[finite].min()
    inside = values[finite & (objective <= best + tolerance * abs(best))]
    low, high = float(inside.min()), float(inside.max())
    return IdentifiedRange(low, high, None if box is None else identified_fraction((low, high), box, log=log))


def profile_halfwidths(coords: np.ndarray, objective: Sequence[float], tolerance: float = 0.01,
                       condition: float = 1e6) -> np.ndarray | None:
    """Per coordinate (column of ``coords``: n points x d, in the coordinates the box is searched
    in, log10 of each value), how far from the best point its *profile* (the objective minimised
    over the other coordinates) stays within the tolerance band of :func:`identified_range`.

    The quadratic model (:func:`quadratic`) through the 2 (1 + d + d(d+1)/2) best finite points,
    centred on the best, has Hessian H; minimised over the others, coordinate i's profile is a
    parabola of curvature 1 / (H^-1)_ii (the Schur complement), so, its minimum taken as the
    best's value b, it stays below b + tolerance |b| within sqrt(2 tolerance |b| (H^-1)_ii).
    Eigenvalues of H below 1/``condition`` of the largest (a flat or curving-down direction,
    noise included) count as 1/``condition`` of it: every coordinate such a direction moves gets
    a long half-width (every one, where no eigenvalue is positive). The model interpolates,
    never extrapolates: a half-width is at most the distance from the best to the farthest of
    the points it was fitted to, in that coordinate (a noisy curvature near 0 would otherwise
    call the whole box alike). None where fewer finite points than twice the model's
    coefficients, where those points do not determine it (all on one line, say), or where the
    model misses one of them by more than the band's width (tolerance |b|): over that region
    the objective is not a quadratic, and its curvatures would say nothing."""
    coords, objective = np.asarray(coords, float), np.asarray(objective, float)
    d = coords.shape[1]
    coefficients = 1 + d + d * (d + 1) // 2
    finite = np.flatnonzero(np.isfinite(objective))
    if len(finite) < 2 * coefficients:
        return None
    fitted = finite[np.argsort(objective[finite], kind="stable")][:2 * coefficients]
    centred, band = coords[fitted] - coords[fitted[0]], tolerance * abs(objective[fitted[0]])
    if np.linalg.matrix_rank(_features(centred)) < coefficients:  # e.g. all on one line
        return None
    _, hessian, misfit = quadratic(centred, objective[fitted])
    if misfit > band:  # the surface is not a quadratic there
        return None
    values, vectors = np.linalg.eigh(hessian)
    reach = np.abs(centred).max(0)
    if values.max() <= 0:
        return reach
    inverse = (vectors ** 2) @ (1 / np.maximum(values, values.max() / condition))
    return np.minimum(np.sqrt(2 * band * inverse), reach)


def _features(points: np.ndarray) -> np.ndarray:
    """The quadratic's features of each row of ``points``: 1, the coordinates, their products."""
    d = points.shape[1]
    return np.column_stack([np.ones(len(points)), points]
                           + [points[:, i] * points[:, j] for i in range(d) for j in range(i, d)])


def quadratic(points: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Gradient and Hessian at the origin of the least-squares quadratic through ``losses`` at
    the rows of ``points`` (1 + d + d(d+1)/2 coefficients, at least as many rows), and the
    largest distance of a loss from it."""
    d = points.shape[1]
    pairs = [(i, j) for i in range(d) for j in range(i, d)]
    features = _features(points)
    coef = np.linalg.lstsq(features, losses, rcond=None)[0]
    misfit = float(np.abs(features @ coef - losses).max())
    hessian = np.zeros((d, d))
    for c, (i, j) in zip(coef[1 + d:], pairs):
        hessian[i, j] += c
        hessian[j, i] += c  # the diagonal gets 2 c: the second derivative of c x²
    return coef[1:1 + d], hessian, misfit


def identified_fraction(span: tuple[float, float], box: tuple[float, float], *, log: bool = True) -> float:
    """The share of ``box`` = ``(low, high)`` that ``span`` = ``(low, high)`` reaches across:
    log10(span high / span low) / log10(box high / box low) where ``log`` (a hyperparameter
    sampled log-uniformly: a learning rate, a decay exponent; for the momentum stored as 1 - mu
    the caller passes that coordinate's span and box), else the ratio of the plain widths.
    0 for a single value, 1 for a span from bound to bound (more only if samples lie outside
    the box). Compare with :data:`MOST_OF_THE_BOX`."""
    (low, high), (box_low, box_high) = span, box
    if log:
        return float(math.log10(high / low) / math.log10(box_high / box_low))
    return float((high - low) / (box_high - box_low))


class RankAgreement(NamedTuple):
    """Spearman's ``rho`` and Kendall's ``tau`` (tau-b) between two rankings of the same
    configurations, over ``n`` of them; rho and tau are None where undefined."""

    rho: float | None
    tau: float | None
    n: int


def rank_agreement(loss_k: Sequence[float], loss_t: Sequence[float]) -> RankAgreement:
    """How well ranking the configurations by their loss at horizon K (``loss_k``) matches
    ranking them by their loss at T (``loss_t``; same order), over the ``n`` configurations
    whose two losses are both finite (a diverged one has no rank): ``scipy.stats.spearmanr``
    and ``scipy.stats.kendalltau`` (tau-b; ties get average ranks). 1: the same order, -1: the
    reverse. rho and tau are None (undefined, JSON null) with fewer than 3 such configurations
    (two points are always ranked perfectly alike or reversed: ±1 says nothing) or where either
    loss is the same for all of them (a constant gives no ranking to agree with)."""
    loss_k, loss_t = np.asarray(loss_k, float), np.asarray(loss_t, float)
    both = np.isfinite(loss_k) & np.isfinite(loss_t)
    k, t = loss_k[both], loss_t[both]
    if k.size < 3 or np.ptp(k) == 0 or np.ptp(t) == 0:
        return RankAgreement(None, None, int(k.size))
    return RankAgreement(float(stats.spearmanr(k, t).statistic), float(stats.kendalltau(k, t).statistic), int(k.size))


def finding(stat: Mapping, threshold: float, words: tuple[str, str], at_or_below: bool = False) -> str:
    """An interval over seeds (:func:`interval`, :func:`log_interval`) read against ``threshold``:
    ``words[0]`` where it lies wholly above it, ``words[1]`` wholly below (``at_or_below``: at or
    below; else an interval that only touches the threshold, a ratio of [1, 1] say, has no
    direction), "inconclusive" where it straddles or touches it; "diverged" without a mean (no
    finite seed), "one seed" without bounds."""
    if stat["mean"] is None:
        return "diverged"
    if stat["low"] is None:
        return "one seed"
    below = stat["high"] <= threshold if at_or_below else stat["high"] < threshold
    return words[0] if stat["low"] > threshold else words[1] if below else "inconclusive"


def shortest_safe_horizon(horizons: Sequence[int], cost_intervals: Sequence[Mapping | None],
                          budget: float = 0.01) -> int | None:
    """The shortest of ``horizons`` whose pick costs at most ``budget`` at T over the seeds.

    ``cost_intervals[i]`` is the :func:`interval` or :func:`log_interval` dict, over seeds, of
    horizon ``horizons[i]``'s cost: train loss at T of the hyperparameters fitted at K / that of
    the reference fitted at T, so 1 is no cost. K is safe when its whole interval lies at or
    below 1 + ``budget`` (``"high"`` <= 1 + budget). An interval that is None, has no bounds
    (one finite seed) or counts a diverged seed (a pick that diverged at T costs without bound)
    is never safe. Each K is judged on its own: the shortest safe K is returned even where a
    longer K is not safe, since its pick is what one would use and a longer horizon's pick does
    not change its cost. None where no K is safe ("none of the K run"); horizons in any order."""
    safe = [h for h, c in zip(horizons, cost_intervals, strict=True)
            if c is not None and c["high"] is not None and not c.get("diverged", 0) and c["high"] <= 1 + budget]
    return min(safe, default=None)
