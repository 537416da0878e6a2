"""Figures and report section of ``shorthorizon truncated``, from its saved results only."""

from __future__ import annotations

import numpy as np

from shorthorizon.offline_problem import optimizer_text
from shorthorizon.report.figures import (BAND, band, box_warnings, fitted_names, mark, on_surface, pyplot, seeds_table,
                                         surface_panel)
from shorthorizon.results import RunDir, fmt
from shorthorizon.runners import seed_name

REFERENCE = "smd_full"  # the whole-horizon fit every windowed one is compared with


def plot(run_dir: RunDir) -> None:
    """The fits on seed 0's surface (every seed's fitted point), their paths and their long runs
    (over seeds: mean and band)."""
    plt = pyplot()

    summary = run_dir.read_summary()
    seeds, horizon = summary.get("seeds", 1), summary["horizon"]
    surface = run_dir.load_curves("surface")
    fits = [{n: run_dir.load_curves(seed_name(f"fit_{n}", k)) for n in summary["estimators"]} for k in range(seeds)]
    colors = dict(zip(fits[0], plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    # coinciding fits stay visible
    widths = {n: 2.6 - 1.8 * i / max(1, len(fits[0]) - 1) for i, n in enumerate(fits[0])}
    over = f" ({seeds} seeds: {BAND})" if seeds > 1 else ""

    fig, (ax_surface, ax_path) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    drawn = surface_panel(fig, ax_surface, surface, surface["loss"], f"log10 training loss at T = {horizon}")
    traced = fitted_names(surface)[-1]  # the path panel's value: the decay exponent, or the last fitted
    for n, f in fits[0].items():
        end = {v: f[v][-1] for v in drawn}
        if len(drawn) > 1:
            mark(ax_surface, drawn, f, None, color=colors[n], lw=widths[n] / 2)
        mark(ax_surface, drawn, end, on_surface(surface, surface["loss"], end), "*", color=colors[n], ms=12,
             mec="white", label=n)
        for other in ({v: c[n][v][-1] for v in drawn} for c in fits[1:]):  # the other seeds' fitted points
            mark(ax_surface, drawn, other, on_surface(surface, surface["loss"], other), "*", color=colors[n], ms=9,
                 mfc="none")
        band(ax_path, np.linspace(0, f["inner_steps"], len(f[traced])), [c[n][traced] for c in fits],
             color=colors[n], lw=widths[n], label=n)
    ax_surface.set(title="fitted schedules on the surface" + (" of seed 0 (hollow: other seeds)" if seeds > 1 else ""))
    ax_surface.legend(fontsize=8)
    ax_path.set(yscale="log", xlabel="inner steps spent", ylabel=traced.replace("_", " "),
                title="fits under one budget" + over)
    run_dir.save_figure(fig, "fits")

    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for n in fits[0]:
        runs = [c[n] for c in fits if "train_loss" in c[n]]  # a fit that diverged has no long run
        for ax, curve in ((ax_loss, "train_loss"), (ax_err, "test_error")):
            if runs:
                band(ax, runs[0]["step"], [r[curve] for r in runs], color=colors[n], lw=widths[n], label=n)
    ax_loss.set(yscale="log", xlabel="step", ylabel="training loss")
    ax_err.set(xlabel="step", ylabel="test error")
    ax_loss.legend(fontsize=8)
    fig.suptitle(f"Training {horizon} steps with each fitted schedule{over}")
    run_dir.save_figure(fig, "long_runs")


def report(run_dir: RunDir, prefix: str = "") -> str:
    s, config = run_dir.read_summary(), run_dir.read_config()
    named = fitted_names(run_dir.load_curves("surface"))
    rows = "\n".join(
        f"| {n} | {v['objective']} | " + " | ".join(f"{fmt(v[f])} ({fmt(v[f'{f}_ratio'])}x)" if f"{f}_ratio" in v
                                                   else fmt(v[f]) for f in named)
        + f" | {fmt(v['final_train_loss'], '.4f')} ({fmt(v['train_loss_ratio'])}x) | {fmt(v['mean_train_loss'], '.4f')} | "
        f"{fmt(v['final_test_error'], '.4f')} | "
        f"{v['inner_steps']:,} / {v['meta_steps']} | {fmt(v['wall_time_s'], '.0f')} ({fmt(v['wall_time_ratio'])}x) |"
        for n, v in s["estimators"].items())
    seed = " (seed 0)" if s.get("seeds", 1) > 1 else ""
    schedule = (f"lr_t = lr0 (1 + t/{config['decay_steps']:g})^(-decay exponent)"
                if config.get("schedule", "inverse-time") == "inverse-time" else f"a {config['schedule']} schedule over T")
    start = ", ".join(f"{n} {config[f'init_{n}']:g}" for n in named if f"init_{n}" in config)
    return f"""## Beating the short-horizon bias: windowed estimators on the offline task

Dataset: **{s['dataset']}**. The offline problem ({schedule}, fitted: {", ".join(named)};
fixed: {optimizer_text(config) or "—"}; {config['warm_start_steps']}-step warm start) at one whole-run horizon
T = {s['horizon']}. Windowed estimators see K = {s['truncation']} steps per meta-step
({config['fit_particles']} staggered inner runs each, ES/PES/NRES: antithetic pairs, sigma {config['sigma']:g}) and fit the
mean training loss over the run; `{REFERENCE}` is full-horizon forward-mode SMD of the loss at T. Same budget of
inner steps, same start ({start}; any other value at the middle of its box) and update for all. Every
schedule is then trained for T steps and judged by its training loss at T on the fixed evaluation batches.
"Mean train loss" is the mean of the long run's {config['curve_points']} curve points, the windowed
estimators' objective. Ratios in brackets are to `{REFERENCE}`; wall time is each fit's, compilation included, the fits one after
another in one process.

| fit{seed} | objective | {" | ".join(n.replace("_", " ") for n in named)} | train loss at T | mean train loss | test error | inner steps / meta-steps | wall s |
|{"---|" * (7 + len(named))}
{rows}
{box_warnings([f"{n}, seed {k}: {e['widened']}" for k, seed in enumerate(s.get("per_seed", [s]))
               for n, e in seed["estimators"].items() if e.get("widened")],
              [line for seed in s.get("per_seed", [s]) for e in seed["estimators"].values() for line in e["at_edge"]],
              config.get("widen", 0))}
{seeds_table(s)}
![fitted schedules on the surface of horizon T, and their paths]({prefix}fits.png)

![training with each fitted schedule]({prefix}long_runs.png)
"""
