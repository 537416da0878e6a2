"""Regime map of the noisy quadratic model: where greedy (short-horizon) schedules are safe."""

from __future__ import annotations

import dataclasses
import math
import sys
from functools import partial

import jax
import numpy as np

from shorthorizon.config import DIM, FRACTION, LOG_STEP, NONNEGATIVE, POSITIVE, at_least, check, items, key
from shorthorizon.nqm import initial_moments, regime, regime_problem
from shorthorizon.nqm.dynamics import loss_of
from shorthorizon.nqm.problem import PAPER_LOSSES
from shorthorizon.report.figures import pyplot
from shorthorizon.results import RunDir, fmt
from shorthorizon.runners import Unit, run_units
from shorthorizon.stats import finite_or_none

NAME = "nqm-map"
FLAGS = ()
SETTINGS = {"momentum": True, "sgd": False}  # unit-name part -> SGD with momentum or without
EDGE_TOLERANCE = 1.05  # Section 2.2.4's edges: greedy / optimized at most this
NEGLIGIBLE = 1e-6  # ... or both final losses below this fraction of the initial loss


# the keys that decide the paper's cell's losses (the NQM experiment's paper problem and fit)
PAPER_KEYS = ("dim", "horizon", "fit_steps", "adam_lr", "penalty", "margin", "paper_kappa", "paper_noise", "mean0")


@dataclasses.dataclass(frozen=True)
class Config:
    dim: int = key(1000, DIM)  # problem dimension (Chebyshev spectrum on [1/kappa, 1])
    horizon: int = key(250, POSITIVE)  # steps of SGD
    kappas: tuple[float, ...] = key((1.0, 10.0, 100.0, 1000.0, 10000.0), items(at_least(1), distinct=True))
    noises: tuple[float, ...] = key((0.0, 1e-4, 1e-2, 1.0, 100.0), items(NONNEGATIVE, distinct=True))  # s: σ² = s/h
    paper_kappa: float = key(1000.0, at_least(1))  # the paper's cell (must be on the grid)
    paper_noise: float = key(1.0, NONNEGATIVE)
    mean0: float = key(10.0, POSITIVE)  # E[theta(0)]; only mean0²/s matters (nqm.regime)
    fit_steps: int = key(500, POSITIVE)  # Adam meta-steps of the per-step (optimized) schedule
    adam_lr: float = key(0.03, LOG_STEP)
    penalty: float = key(1e3, POSITIVE)  # the component constraint of nqm.fit
    margin: float = key(1e-3, FRACTION)
    tolerance: float = key(0.1, POSITIVE)  # safe horizon: loss at T within 10% of the schedule tuned at T


PRESETS = {
    "paper": Config(),
    "quick": Config(dim=100, fit_steps=300),
}


def validate(config: Config) -> None:
    check(config)
    if not math.isfinite(config.dim * config.mean0 * config.mean0):  # the initial loss 1/2 sum_i h_i mean0^2 (h_i <= 1)
        raise ValueError(f"config key 'mean0' must keep the initial loss dim * mean0^2 finite in float64 (below "
                         f"{math.sqrt(sys.float_info.max / config.dim):.3g} at dim={config.dim}), got {config.mean0:g}")
    if config.paper_kappa not in config.kappas or config.paper_noise not in config.noises:
        raise ValueError(f"the paper's cell (paper_kappa={config.paper_kappa:g}, paper_noise="
                         f"{config.paper_noise:g}) is not on the grid kappas={config.kappas}, "
                         f"noises={config.noises}; add it to kappas and noises, or set paper_kappa and "
                         "paper_noise to a cell of the grid")


# --- units (pure; float64 for the call only) -------------------------------------------------
def row_unit(kappa: float, noises: tuple, momentum: bool, dim: int, horizon: int, mean0: float,
             fit_steps: int, adam_lr: float, penalty: float, margin: float,
             tolerance: float) -> dict:
    """One condition number, every noise scale at once (vmapped): ``nqm.regime`` per cell."""
    with jax.enable_x64(True):
        cells = [regime_problem(kappa, s, dim, mean0) for s in noises]
        problems = jax.tree.map(lambda *leaves: np.stack(leaves), *cells)
        return _row(problems, horizon, momentum, fit_steps, tolerance, adam_lr, penalty, margin)


@partial(jax.jit, static_argnums=(1, 2, 3))
def _row(problems, horizon, momentum, fit_steps, tolerance, adam_lr, penalty, margin):
    """``nqm.regime`` vmapped over a row of cells, compiled once per process (rows differ only in
    array values)."""

    def solve(problem):
        r = regime(problem, horizon, momentum=momentum, tolerance=tolerance,
                   fit_steps=fit_steps, adam_lr=adam_lr, penalty=penalty, margin=margin)
        return dict(greedy=r.greedy, fixed=r.fixed, optimized=r.optimized,
                    initial=loss_of(problem, initial_moments(problem)).sum(),
                    max_component_ratio=r.max_component_ratio, safe_horizon=r.safe_horizon,
                    horizon_loss=r.horizon.loss, horizon_lr=r.horizon.lr,
                    horizon_momentum=r.horizon.momentum)

    return jax.vmap(solve)(problems)


def _unit_name(setting: str, kappa: float) -> str:
    return f"{setting}-kappa{kappa:g}"


# --- the experiment --------------------------------------------------------------------------
def run(config: Config, run_dir: RunDir, executor: str = "local", ray_address=None) -> dict:
    validate(config)
    run_dir.write_config(config)
    common = dict(noises=tuple(config.noises), dim=config.dim, horizon=config.horizon,
                  mean0=config.mean0, fit_steps=config.fit_steps, adam_lr=config.adam_lr,
                  penalty=config.penalty, margin=config.margin, tolerance=config.tolerance)
    units = [Unit(_unit_name(setting, kappa), dict(kappa=kappa, momentum=momentum, **common))
             for setting, momentum in SETTINGS.items() for kappa in config.kappas]
    results = run_units(row_unit, units, run_dir, executor, ray_address, desc=NAME)

    maps = {setting: {key: np.stack([results[_unit_name(setting, k)][key] for k in config.kappas])
                      for key in results[units[0].name]}
            for setting in SETTINGS}  # each value: (kappa, noise, ...)
    for setting, arrays in maps.items():
        run_dir.save_curves(f"map_{setting}", kappas=np.asarray(config.kappas),
                            noises=np.asarray(config.noises), **arrays)
    summary = summarize(config, maps)
    plot_all(run_dir)
    return run_dir.write_summary(summary)


def summarize(config: Config, maps: dict) -> dict:
    """summary.json: every cell, the paper's cell, safe horizons and the edge checks."""
    cells = []
    for setting, momentum in SETTINGS.items():
        m = maps[setting]
        for i, kappa in enumerate(config.kappas):
            for j, noise in enumerate(config.noises):
                greedy, fixed, optimized = (float(m[k][i, j]) for k in ("greedy", "fixed", "optimized"))
                cells.append(dict(
                    kappa=kappa, noise=noise, momentum=momentum, greedy=greedy,
                    fixed=fixed, optimized=optimized,
                    ratio=finite_or_none(greedy / optimized) if optimized > 0 else None,
                    initial=float(m["initial"][i, j]),
                    max_component_ratio=float(m["max_component_ratio"][i, j]),
                    # the per-step family holds every constant schedule: a fit above the best
                    # one stopped in a local optimum, and its ratio is an underestimate
                    fit_above_fixed=optimized > fixed,
                    safe_horizon=int(m["safe_horizon"][i, j])))
    paper = next(c for c in cells if c["momentum"] and c["kappa"] == config.paper_kappa
                 and c["noise"] == config.paper_noise)
    return {"cells": cells,
            "paper_cell": {k: paper[k] for k in ("kappa", "noise", "greedy", "fixed", "optimized",
                                                 "ratio", "safe_horizon")},
            "safe_horizon": [dict(kappa=c["kappa"], noise=c["noise"], momentum=c["momentum"],
                                  horizon=c["safe_horizon"]) for c in cells],
            "edges": edges(cells),
            "monotone": monotonicity(config, cells)}


def edges(cells: list[dict]) -> dict:
    """The paper's two edges (greedy optimal) and the two it does not name.

    Each edge lists its cells' ratios and whether every cell has greedy / optimized <=
    EDGE_TOLERANCE or both losses below NEGLIGIBLE of the initial loss."""
    def edge(select):
        chosen = [c for c in cells if select(c)]
        return {"cells": [{k: c[k] for k in ("kappa", "noise", "greedy", "optimized", "ratio")}
                          for c in chosen],
                "greedy_optimal": all(max(c["greedy"], c["optimized"]) < NEGLIGIBLE * c["initial"]
                                      or (c["ratio"] is not None and c["ratio"] <= EDGE_TOLERANCE) for c in chosen)}

    return {
        "spherical_sgd": edge(lambda c: c["kappa"] == 1 and not c["momentum"]),
        "deterministic_momentum": edge(lambda c: c["noise"] == 0 and c["momentum"]),
        "deterministic_sgd": edge(lambda c: c["noise"] == 0 and not c["momentum"]),
        "spherical_momentum": edge(lambda c: c["kappa"] == 1 and c["momentum"]),
    }


def monotonicity(config: Config, cells: list[dict]) -> dict:
    """Off the edges (kappa > 1, noise > 0): the neighbouring cells, (kappa, noise) -> (kappa,
    noise), where the ratio does not grow with kappa (at fixed noise) or with noise (at fixed
    kappa)."""
    kappas = [k for k in config.kappas if k > 1]
    noises = [s for s in config.noises if s > 0]
    steps = {"not_growing_with_kappa": [((a, s), (b, s)) for s in noises
                                        for a, b in zip(kappas, kappas[1:])],
             "not_growing_with_noise": [((k, a), (k, b)) for k in kappas
                                        for a, b in zip(noises, noises[1:])]}
    out = {}
    for setting, momentum in SETTINGS.items():
        ratio = {(c["kappa"], c["noise"]): c["ratio"] for c in cells if c["momentum"] == momentum}
        out[setting] = {axis: [{"from": a, "to": b, "ratios": [ratio[a], ratio[b]]}
                               for a, b in pairs if not (ratio[b] or 0) > (ratio[a] or 0)]
                        for axis, pairs in steps.items()}
    return out


# --- figures (from saved curves only) ----------------------------------------------------------
def plot_all(run_dir: RunDir) -> None:
    plot_maps(run_dir)
    plot_horizon_curves(run_dir)


def plot_maps(run_dir: RunDir) -> None:
    """Heat maps of greedy / optimized (log color) and of the safe horizon, the paper's cell
    boxed."""
    import matplotlib.patheffects as pe
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    plt = pyplot()

    config = run_dir.read_config()
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), layout="constrained")
    for col, setting in enumerate(SETTINGS):
        m = run_dir.load_curves(f"map_{setting}")
        kappas, noises = m["kappas"], m["noises"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = m["greedy"] / m["optimized"]
        # deterministic cells where both losses vanish: their ratio (e.g. 1e-40) is noise
        tiny = (np.maximum(m["greedy"], m["optimized"]) < NEGLIGIBLE * m["initial"]) & (noises == 0)
        shown = np.where(tiny | ~np.isfinite(ratio), np.nan, ratio)
        panels = ((axes[0, col], shown, LogNorm(vmin=0.5, vmax=max(np.nanmax(shown), 2.0)),
                   "viridis", f"greedy / optimized ({setting}; *: fit above best constant)"),
                  (axes[1, col], m["safe_horizon"].astype(float),
                   LogNorm(vmin=1, vmax=config["horizon"]), "magma",
                   f"safe horizon of a constant schedule ({setting})"))
        for ax, values, norm, cmap, title in panels:
            # colored at least as the scale's bottom: a log scale leaves 0 (a safe horizon of none) blank
            image = ax.imshow(np.maximum(values, norm.vmin), origin="lower", cmap=cmap, norm=norm, aspect="auto")
            fig.colorbar(image, ax=ax)
            for i in range(len(kappas)):
                for j in range(len(noises)):
                    text = "both\n<1e-6" if values is shown and tiny[i, j] else f"{values[i, j]:.3g}"
                    if values is shown and not tiny[i, j] and m["optimized"][i, j] > m["fixed"][i, j]:
                        text += "*"  # the per-step fit stopped above the best constant schedule
                    ax.text(j, i, text, ha="center", va="center", fontsize=8, color="w",
                            path_effects=[pe.withStroke(linewidth=2, foreground="k")])
            i, j = list(kappas).index(config["paper_kappa"]), list(noises).index(config["paper_noise"])
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
            ax.set(xticks=range(len(noises)), xticklabels=[f"{s:g}" for s in noises],
                   yticks=range(len(kappas)), yticklabels=[f"{k:g}" for k in kappas],
                   xlabel=r"noise scale $s$ ($\sigma^2 = s/h$)", ylabel=r"condition number $\kappa$",
                   title=title)
    fig.suptitle(f"NQM regime map (d={config['dim']}, T={config['horizon']}; red: the paper's cell)")
    run_dir.save_figure(fig, "map")


def plot_horizon_curves(run_dir: RunDir) -> None:
    """Loss at T of the constant schedule tuned at meta-horizon k, over its value at k = T, for
    the cells through the paper's cell (with momentum)."""
    plt = pyplot()

    config = run_dir.read_config()
    m = run_dir.load_curves("map_momentum")
    kappas, noises = list(m["kappas"]), list(m["noises"])
    pi, pj = kappas.index(config["paper_kappa"]), noises.index(config["paper_noise"])
    k = np.arange(1, config["horizon"] + 1)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    sweeps = ((axes[0], [(i, pj) for i in range(len(kappas))], lambda i, j: f"κ={kappas[i]:g}",
               f"noise s={noises[pj]:g}"),
              (axes[1], [(pi, j) for j in range(len(noises))], lambda i, j: f"s={noises[j]:g}",
               f"κ={kappas[pi]:g}"))
    for ax, cells, label, fixed in sweeps:
        for i, j in cells:
            curve = m["horizon_loss"][i, j]
            line, = ax.loglog(k, curve / curve[-1], lw=2.5 if (i, j) == (pi, pj) else 1.2,
                              label=f"{label(i, j)} (safe from k={m['safe_horizon'][i, j]})")
            ax.axvline(m["safe_horizon"][i, j], color=line.get_color(), ls=":", lw=0.8)
        ax.axhline(1 + config["tolerance"], color="k", ls="--", lw=0.8)
        ax.set(xlabel="meta-horizon k (steps the constant lr and momentum are tuned for)",
               title=f"{fixed}, with momentum; thick: the paper's cell")
        ax.legend(fontsize=8)
    axes[0].set_ylabel(f"loss at T={config['horizon']} / loss of the schedule tuned at T")
    run_dir.save_figure(fig, "horizon_curves")


# --- report ----------------------------------------------------------------------------------
def _paper_ratio(config: dict) -> str:
    """The paper's greedy / optimized ratio (Section 2.3), only beside the paper's problem and
    fit in the paper's cell: the paper preset's values of every key that decides that cell."""
    paper = PRESETS["paper"]
    if any(config[k] != getattr(paper, k) for k in PAPER_KEYS):
        return "the problem or its fit is not the paper's, so its ratio is not shown"
    noisy = PAPER_LOSSES["noisy"]
    return f"paper {noisy['greedy']} / {noisy['optimized']} = {noisy['greedy'] / noisy['optimized']:.1f}"


def report(run_dir: RunDir, prefix: str = "") -> str:
    summary = run_dir.read_summary()
    config = run_dir.read_config()
    paper = summary["paper_cell"]
    lines = [
        "## Noisy quadratic model: when is a short horizon safe?",
        "",
        f"d = {config['dim']}, T = {config['horizon']}; Chebyshev spectrum on [1/κ, 1], "
        "σ² = s/h. Headline per cell: greedy / optimized final loss (exact; the optimized "
        "schedule is the constrained per-step fit of Figure 3, the best constant schedule a "
        "grid search under the same constraint).",
        "",
        f"Paper's cell (κ = {paper['kappa']:g}, s = {paper['noise']:g}, momentum): greedy "
        f"{paper['greedy']:.4g}, fixed {paper['fixed']:.4g}, optimized {paper['optimized']:.4g}, "
        f"ratio {fmt(paper['ratio'])} ({_paper_ratio(config)}); a constant "
        f"schedule needs a meta-horizon of {paper['safe_horizon']} steps to land within "
        f"{config['tolerance']:.0%} of the one tuned at T.",
        "",
        "| edge | greedy not beaten: ratio ≤ 1.05 or both < 1e-6 of the initial loss | ratios |",
        "|---|---|---|",
    ]
    for name, edge in summary["edges"].items():
        ratios = ", ".join(fmt(c["ratio"]) for c in edge["cells"])
        lines.append(f"| {name.replace('_', ' ')} | {edge['greedy_optimal']} | {ratios} |")
    lines += ["", "Off the edges, neighbouring cells where the ratio does not grow. Only "
              "E[θ(0)]²/s matters (nqm.regime), so more noise is the same problem started closer "
              "to its noise floor, with less to gain from any schedule. Along κ, the added low "
              "curvatures start with little loss (½h·E[θ(0)]²) and no schedule removes much of it "
              "in T steps, so beyond κ ≈ 100-1000 they change neither loss much.", ""]
    for setting, drops in summary["monotone"].items():
        for axis, pairs in drops.items():
            shown = "; ".join(f"{tuple(p['from'])}→{tuple(p['to'])}: "
                              f"{fmt(p['ratios'][0])}→{fmt(p['ratios'][1])}" for p in pairs)
            lines.append(f"- {setting}, {axis.replace('_', ' ')} (κ, s): {shown or 'none'}")
    stuck = [f"(κ {c['kappa']:g}, s {c['noise']:g}, {'momentum' if c['momentum'] else 'sgd'})"
             for c in summary["cells"] if c["fit_above_fixed"]]
    lines += ["", "Cells where the per-step fit ended above the best constant schedule (a local "
              f"optimum; their ratio is an underestimate): {', '.join(stuck) or 'none'}.",
              "", f"Computed in {summary['wall_time_s']:.1f} s.", "",
              f"![regime map]({prefix}map.png)", "",
              f"![horizon curves]({prefix}horizon_curves.png)"]
    return "\n".join(lines) + "\n"
