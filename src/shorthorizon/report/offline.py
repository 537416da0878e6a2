"""Figures 5-6 and the report section of ``shorthorizon offline``, from saved results only.

A run over seeds stores seed 0's curves under the single-seed names and seed k's under
:func:`~shorthorizon.runners.seed_name` (``long_runs_s1.npz``); its summary lists every seed's
(``per_seed``) and each headline number's interval (``intervals``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from shorthorizon.offline_problem import OfflineConfig, optimizer_text, with_family
from shorthorizon.optim import SCHEDULES
from shorthorizon.report.figures import BAND, band, box_warnings, mark, pyplot, seeds_table, surface_panel
from shorthorizon.results import RunDir, fmt
from shorthorizon.runners import seed_name
from shorthorizon.stats import MOST_OF_THE_BOX, log_interval

# Paper Section 3.2: decay exponent ratio between T=100 and T=20k, and the final training
# loss ratio of their schedules over 20k steps on MNIST (Figures 5-6).
PAPER_DECAY_EXPONENT_RATIO = 100.0
PAPER_TRAIN_LOSS_RATIO = 1000.0
PAPER_HORIZONS = (100, 20000)  # the shortest and longest horizon those ratios compare


def is_paper_horizons(config) -> bool:
    """Whether ``config`` (an offline Config or its stored dict) fits the paper's problem at its
    horizons (MLP, batch 100, T = 100 ... 20,000, the paper's schedule and warm start), the only
    setup the paper's ratios may be printed beside. The paper's problem is
    :class:`~shorthorizon.offline_problem.OfflineConfig`'s defaults; it is judged here, below the
    experiments, because the claims table and the section both ask (``report`` never imports
    ``experiments``)."""
    paper = {**dataclasses.asdict(with_family(OfflineConfig())), "horizons": PAPER_HORIZONS}
    config = config if isinstance(config, dict) else with_family(config)  # a stored config is resolved already
    def get(key):  # a stored config: lists for tuples, and a key added since it was stored has its default
        value = config.get(key, paper[key]) if isinstance(config, dict) else getattr(config, key)
        return tuple(value) if isinstance(value, list) else value

    keys = ("task", "batch_size", "warm_start_steps", "warm_start_lr", "optimizer", "momentum", "hyper", "schedule",
            "decay_steps", "adapt", "lr0_range", "decay_exponent_range")
    return all(get(k) == paper[k] for k in keys) and (min(get("horizons")), max(get("horizons"))) == PAPER_HORIZONS


def plot(run_dir: RunDir) -> None:
    """Figure 5: per horizon, seed 0's surface, SMD trajectories and zoomed or searched points,
    and every seed's fit;
    Figure 6: each horizon's long runs (over seeds: mean and band) and its final training loss
    over the longest horizon's within each seed (seeds as points, mean and 95% interval)."""
    plt = pyplot()

    surface, smd = (run_dir.load_curves(n) for n in ("surface", "smd"))
    zoom = run_dir.load_curves("zoom") if (run_dir.path / "zoom.npz").exists() else {"horizon": []}
    summary = run_dir.read_summary()
    seeds = summary.get("per_seed", [summary])
    horizons = [int(h) for h in surface["horizon"]]
    fig, axes = plt.subplots(1, len(horizons), figsize=(4.6 * len(horizons), 3.8), squeeze=False,
                             layout="constrained")
    shown = {}  # what the panels draw besides the surface, for the title (in the order drawn)
    for i, (ax, h) in enumerate(zip(axes[0], horizons)):
        drawn = surface_panel(fig, ax, surface, surface["loss"][i], "log10 meta-objective")
        for r in range(smd["lr0"].shape[1]):
            steps = np.isfinite(smd["lr0"][i, r])  # NaN pads restarts and meta-steps a horizon lacks
            if steps.sum() < 2:  # no meta-step taken (a horizon the zoom or search fits instead)
                continue
            path, best = {n: smd[n][i, r][steps] for n in drawn}, r == smd["best_restart"][i]
            shown["SMD trajectories"] = True
            if len(drawn) > 1:  # a path on a contour; on a one-value panel, where it ends
                mark(ax, drawn, path, None, color="white" if best else "0.8", lw=1.5 if best else 0.8)
                mark(ax, drawn, {n: v[0] for n, v in path.items()}, None, "o", color="0.8", ms=4)
            mark(ax, drawn, {n: v[-1] for n, v in path.items()}, smd["meta_objective"][i, r], "*", color="white", ms=7)
        if h in list(zoom["horizon"]):  # the zoom's samples (its center is the surface's best)
            j = list(zoom["horizon"]).index(h)
            shown["zoomed or searched points (dots)"] = True
            mark(ax, drawn, {n: zoom[n][j] for n in drawn}, zoom["loss"][j], ".", color="white", ms=3)
        for k, seed in enumerate(seeds):  # the horizon's fit: an SMD end, or a surface or zoom sample
            fit = seed["horizons"][str(h)]
            if fit["lr0"] is not None:
                mark(ax, drawn, fit, fit["meta_objective"], "*", color="red",
                     **({"ms": 11} if k == 0 else {"ms": 9, "mfc": "none"}))
        ax.set(title=f"T = {h}")
    over = " of seed 0; hollow stars: the other seeds' fits" if len(seeds) > 1 else ""
    fig.suptitle(f"Meta-objective surface{''.join(', ' + part for part in shown)}{over} (Figure 5)")
    run_dir.save_figure(fig, "figure5_surface")

    long = [run_dir.load_curves(seed_name("long_runs", k)) for k in range(len(seeds))]
    fig, (ax_loss, ax_err, ax_ratio) = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
    for i, h in enumerate(horizons):
        for ax, key in ((ax_loss, "train_loss"), (ax_err, "test_error")):
            band(ax, long[0]["step"], [c[key][i] for c in long], label=f"fitted at T = {h}")
        # the number the verdicts are about: each seed's final loss over its own longest horizon's
        ratios = [seed["horizons"][str(h)]["final_train_loss"] / seed["horizons"][str(horizons[-1])]["final_train_loss"]
                  if None not in (seed["horizons"][str(h)]["final_train_loss"],
                                  seed["horizons"][str(horizons[-1])]["final_train_loss"]) else np.nan
                  for seed in seeds]
        if np.isfinite(ratios).any():
            ax_ratio.plot([h] * len(ratios), ratios, ".", color="0.5")
        stat = log_interval(ratios)
        if stat["mean"] is not None:
            err = None if stat["low"] is None else [[stat["mean"] - stat["low"]], [stat["high"] - stat["mean"]]]
            ax_ratio.errorbar([h], [stat["mean"]], yerr=err, fmt="o", color=f"C{i}", capsize=4)
    ax_loss.set(yscale="log", xlabel="step", ylabel="training loss")
    ax_err.set(xlabel="step", ylabel="test error")
    if ax_ratio.has_data():
        ax_ratio.axhline(1, color="black", lw=0.8)
        ax_ratio.set(xscale="log", yscale="log")
    else:
        ax_ratio.text(0.5, 0.5, "every long run diverged", ha="center", transform=ax_ratio.transAxes)
    ax_ratio.set(xlabel="horizon T fitted at", ylabel=f"final training loss / T = {horizons[-1]}'s (within seed)")
    ax_loss.legend()
    over = f" ({len(seeds)} seeds: {BAND})" if len(seeds) > 1 else ""
    fig.suptitle(f"Training with each horizon's fitted schedule{over} (Figure 6)")
    run_dir.save_figure(fig, "figure6_long_runs")


def _share(horizon: dict, name: str) -> str:
    """The share of the box that a horizon's identified range of ``name`` spans (— where not stored)."""
    span = horizon.get("identified", {}).get(name)
    return "—" if span is None else fmt(span["fraction_of_box"], ".0%")


def report(run_dir: RunDir, prefix: str = "") -> str:
    """The report's section, with the paper's ratios beside ours where the run's config is the
    paper's (:func:`is_paper_horizons`)."""
    s, config = run_dir.read_summary(), run_dir.read_config()
    paper = is_paper_horizons(config)
    if config["smd_from_surface"]:
        longer = (f"the longer ones take the best of the surface and {config['generations']} generations of "
                  f"{config['population']} points of the adaptive search from it (a quadratic model of the surface "
                  "in a trust region)" if config.get("generations") else
                  f"the longer ones take the best of that sample and a zoom of {config['zoom_samples']} samples "
                  f"(it among them) within {config['zoom_width']:g} decades of it on each axis"
                  if config.get("zoom_samples") else "the longer ones keep their best sample")
        refined = "every horizon" if not config["smd_max_horizon"] else f"T <= {config['smd_max_horizon']}; {longer}"
        fit = (f"taken as the best of {config['surface_samples']} surface samples and refined by "
               f"{config['meta_steps']} SMD meta-steps from each of the {config['smd_from_surface']} best ({refined}; "
               f"a refinement replaces the sample where its meta-objective is lower)")
    else:
        fit = f"fitted by SMD ({config['meta_steps']} meta-steps from each of {len(config['init_lr0'])} starts)"
    first = next(iter(s["horizons"].values()))
    named = list(first.get("identified", {"lr0": 0, "decay_exponent": 0}))  # the fitted values (an older run: two)
    rows = "\n".join(
        f"| {h}{' (diverged)' if v['diverged'] else ''} | " + " | ".join(fmt(v[n]) for n in named)
        + f" | {fmt(v['meta_objective'], '.4f')} | {fmt(v['final_train_loss'], '.4f')} | "
        f"{fmt(v['final_test_error'], '.4f')} | " + " | ".join(_share(v, n) for n in named) + " |"
        for h, v in s["horizons"].items())
    seeds = s.get("per_seed", [s])
    warning = box_warnings([f"T={h}, seed {k}: {v['widened']}" for k, seed in enumerate(seeds)
                            for h, v in seed["horizons"].items() if v.get("widened")],
                           [line for seed in seeds for v in seed["horizons"].values() for line in v.get("at_edge", [])],
                           config.get("widen", 0))
    shortest, longest = list(s["horizons"])[0], list(s["horizons"])[-1]
    seed = " (seed 0)" if s.get("seeds", 1) > 1 else ""
    paper_ratio = {"decay_exponent": f" > {PAPER_DECAY_EXPONENT_RATIO:g} |"} if paper else {}
    unseen = {n: h for n in named for h in (longest, shortest) if _share(s["horizons"][h], n) != "—"
              and s["horizons"][h]["identified"][n]["fraction_of_box"] >= MOST_OF_THE_BOX}  # either end: no ratio
    values = "".join(f"| fitted {n.replace('_', ' ')} | {fmt(s[f'{n}_ratio'])}"
                     f"{f' (not identified at T={unseen[n]})' if n in unseen else ''} |{paper_ratio.get(n, ' |' * paper)}\n"
                     for n in named if f"{n}_ratio" in s)  # an older run stored the decay exponent's alone
    loss = fmt(s['final_train_loss_ratio'])
    if paper:
        ratios = f"""| ratio (T={shortest} over T={longest}) | ours{seed} | paper (T=100 over T=20k, MNIST) |
|---|---|---|
{values}| final training loss of the long run | {loss} | > {PAPER_TRAIN_LOSS_RATIO:g} |"""
    else:
        ratios = f"""| ratio (T={shortest} over T={longest}) | ours{seed} |
|---|---|
{values}| final training loss of the long run | {loss} |

These horizons are not the paper's (T = 100 ... 20,000), so its ratios are not shown beside them."""
    schedule = (f"An inverse-time schedule lr_t = lr0 (1 + t/{config['decay_steps']:g})^(-decay_exponent)"
                if config.get("schedule", "inverse-time") == "inverse-time" else
                f"A {config['schedule']} schedule" + (" (laid over each horizon while fitting, over the longest in the long "
                                                      "runs)" if SCHEDULES[config["schedule"]].depends_on_length else ""))
    columns = " | ".join(n.replace("_", " ") for n in named)
    return f"""## Offline meta-optimization: short-horizon bias (Section 3.2, Figures 5-6)

Dataset: **{s['dataset']}**. {schedule}, fitted: {", ".join(named)}; fixed: {optimizer_text(config) or "—"};
for each horizon T from a shared {config['warm_start_steps']}-step warm start,
{fit}; each horizon's schedule is then trained for {s['long_horizon']} steps.

| horizon T{seed} | {columns} | meta-objective | final train loss | final test error | {" | ".join(f"{n.replace('_', ' ')} identified" for n in named)} |
|{"---|" * (4 + 2 * len(named))}
{rows}

"Identified": the share of the box spanned by the values that its samples cannot tell apart from
the horizon's best (within {config.get('tolerance', 0.01):.0%}; at least half of it: not identified, no ratio claimed).

{ratios}
{warning}
{seeds_table(s)}
![Figure 5: surface and fits]({prefix}figure5_surface.png)

![Figure 6: long runs with each fitted schedule]({prefix}figure6_long_runs.png)
"""
