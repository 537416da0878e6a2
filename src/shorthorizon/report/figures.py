"""Helpers shared by the experiments' figures and report sections. Each experiment draws its own
figures in its ``plot(run_dir)`` (in its module, or in ``report/<module>.py``), from saved results
only; what two of them draw or write alike lives here."""

from __future__ import annotations

import numpy as np

from shorthorizon.meta.search import log_coordinate
from shorthorizon.optim import COMPLEMENTED
from shorthorizon.results import fmt


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display), imported when a figure
    is drawn: importing an experiment does not load matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def smooth(x: np.ndarray, y: np.ndarray, z: np.ndarray, x_range, y_range, grid: int = 60,
           bandwidth: float = 0.08):
    """Gaussian-kernel average of scattered ``z`` at (x, y) onto a ``grid`` x ``grid`` mesh
    spanning ``x_range`` x ``y_range``; the bandwidth is a fraction of each range."""
    gx, gy = np.linspace(*x_range, grid), np.linspace(*y_range, grid)
    dx = (gx[:, None] - x) / (bandwidth * np.ptp(x_range))
    dy = (gy[:, None] - y) / (bandwidth * np.ptp(y_range))
    w = np.exp(-0.5 * (dx[None] ** 2 + dy[:, None] ** 2))  # (grid_y, grid_x, n)
    return gx, gy, (w * z).sum(-1) / w.sum(-1)


def fitted_names(curves: dict) -> list[str]:
    """The fitted values a surface's stored curves hold (``lr0``, ``decay_exponent``, ...): those
    stored with their box (``{name}_range``), in order."""
    return [k[:-len("_range")] for k in curves if k.endswith("_range")]


def axis_label(name: str) -> str:
    return f"log10(1 − {name})" if name in COMPLEMENTED else f"log10 {name.replace('_', ' ')}"


def surface_panel(fig, ax, surface: dict, loss: np.ndarray, label: str) -> tuple[str, ...]:
    """log10 ``loss`` at the surface's samples over its first two fitted values (:func:`fitted_names`,
    each in :func:`~shorthorizon.meta.search.log_coordinate`), a contour smoothed onto the box (a third value and more
    projected out, said in the panel), or against its one fitted value, and the box's bounds; a
    diverged sample counts as the worst finite one. Returns the values drawn, for :func:`mark`."""
    finite = np.isfinite(loss)
    z = np.log10(np.where(finite, loss, loss[finite].max() if finite.any() else 1.0))
    drawn = tuple(fitted_names(surface)[:2])
    box = [np.sort(log_coordinate(n, surface[f"{n}_range"])) for n in drawn]
    x = log_coordinate(drawn[0], surface[drawn[0]])
    if len(fitted_names(surface)) > 2:
        ax.text(0.02, 0.02, "projected out: " + ", ".join(fitted_names(surface)[2:]), transform=ax.transAxes,
                color="white", fontsize=7)
    if len(drawn) == 1:
        ax.set_facecolor("0.2")  # dark, as the contour's, for the same white marks
        ax.plot(x[np.argsort(x)], z[np.argsort(x)], ".-", color="0.7", lw=0.8)
        for bound in box[0]:  # the box's bounds, for what lies outside (a widened box's samples and fits)
            ax.axvline(bound, color="white", lw=0.8, ls="--")
        ax.set(xlabel=axis_label(drawn[0]), ylabel=label)
        return drawn
    gx, gy, gz = smooth(x, log_coordinate(drawn[1], surface[drawn[1]]), z, *box)
    fig.colorbar(ax.contourf(gx, gy, gz, levels=20, cmap="viridis"), ax=ax, label=label)
    (x0, x1), (y0, y1) = box
    ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color="white", lw=0.8, ls="--")
    ax.set(xlabel=axis_label(drawn[0]), ylabel=axis_label(drawn[1]))
    return drawn


def on_surface(surface: dict, loss: np.ndarray, values: dict) -> float:
    """The surface's ``loss`` at ``values``, interpolated along its first fitted value (in its
    coordinate): where a fit whose own objective was not stored lies on a one-value panel."""
    name = fitted_names(surface)[0]
    x = log_coordinate(name, surface[name])
    return 10 ** np.interp(log_coordinate(name, values[name]), np.sort(x), np.log10(loss)[np.argsort(x)])


def mark(ax, drawn: tuple[str, ...], values: dict, loss, *fmt, **style) -> None:
    """Fitted ``values`` (name -> a value, or values along a path) on a :func:`surface_panel`
    over ``drawn``: at their two drawn values, or, on a one-value panel, at their ``loss``."""
    ax.plot(log_coordinate(drawn[0], values[drawn[0]]),
            log_coordinate(drawn[1], values[drawn[1]]) if len(drawn) > 1 else np.log10(loss), *fmt, **style)


def box_warnings(widened: list[str], edges: list[str], rounds: int) -> str:
    """The report's notes on fits whose box was moved out (``widened``: a line per fit and seed
    naming its final box, after at most ``rounds``) and on those still at an edge of it."""
    text = ("\n**Widened**: these fits landed at an edge of the box, which was moved out and searched again "
            f"(at most {rounds} rounds); their final boxes:\n\n" + "\n".join(f"- {line}" for line in widened)
            + "\n") if widened else ""
    return text + ("\n**At the edge of the box** (the true optimum may lie outside it):\n\n"
                   + "\n".join(f"- {line}" for line in edges) + "\n") if edges else text


BAND = "mean over seeds, band: their min to max"  # what :func:`band` draws, for captions


def band(ax, x: np.ndarray, curves: np.ndarray, **style) -> None:
    """The mean of ``curves`` (one row per seed; a non-finite point is a diverged seed's, left
    out) and, for more than one seed, a band from their minimum to their maximum."""
    values = np.ma.masked_invalid(np.atleast_2d(curves))
    line, = ax.plot(x, values.mean(0).filled(np.nan), **style)
    if len(values) > 1:
        ax.fill_between(x, values.min(0).filled(np.nan), values.max(0).filled(np.nan), color=line.get_color(),
                        alpha=0.2, lw=0)


def interval_text(stat: dict | None, spec: str = ".3g", seeds: bool = False) -> str:
    """An interval of :mod:`shorthorizon.stats` as ``mean [low, high]`` (no bounds for one seed),
    with ``seeds``: ``(n seeds, d diverged)`` after it."""
    if stat is None:
        return "—"
    count = (f" ({stat['n']} seed{'s' * (stat['n'] != 1)}{f', {d} diverged' if (d := stat['diverged']) else ''})"
             if seeds else "")
    if stat["mean"] is None:
        return f"diverged{count}"
    bounds = "" if stat["low"] is None else f" [{fmt(stat['low'], spec)}, {fmt(stat['high'], spec)}]"
    return f"{fmt(stat['mean'], spec)}{bounds}{count}"


def seeds_table(summary: dict) -> str:
    """A run's headline numbers over its seeds (``summary["intervals"]``:
    :func:`shorthorizon.stats.over_seeds`) as ``mean [low, high] (n seeds)`` beside seed 0's
    value; empty for a single-seed run."""
    if summary.get("seeds", 1) < 2:
        return ""
    rows = "\n".join(f"| `{path}` | {fmt(stat['values'][0], '.4g')} | {interval_text(stat, '.4g', seeds=True)} |"
                     for path, stat in summary["intervals"].items())
    return f"""Over {summary['seeds']} seeds (seed k is the run with seed + k: its own initialization, batches and
samples): the mean and 95% Student t interval over seeds; ratios (taken within each seed), learning rates and decay
exponents, which vary by factors, as the geometric mean and the exponentiated t interval of their logs.

| number (`summary.json` path) | seed 0 | mean [95% interval] |
|---|---|---|
{rows}
"""
