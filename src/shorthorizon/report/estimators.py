"""The ``estimators`` experiment's figures and report section, from its saved results only
(:mod:`shorthorizon.experiments.estimators` computes them)."""

from __future__ import annotations

import numpy as np

from shorthorizon.hypergrad import make_estimator
from shorthorizon.report.figures import BAND, band, pyplot, seeds_table
from shorthorizon.results import RunDir, fmt
from shorthorizon.runners import seed_name


def color(estimator: str) -> str:
    """The colour of the registered ``estimator``'s lines: its class's."""
    return make_estimator(estimator).color


def descriptions(estimators) -> list[str]:
    """What the registered ``estimators`` are, from their classes, each description once
    (forward and reverse mode share one)."""
    return list(dict.fromkeys(make_estimator(e).description for e in estimators))


def plot(run_dir: RunDir) -> None:
    """The bias and variance of every estimator against K, and the schedules they fit; over
    seeds, each line is their mean with a band from their min to their max."""
    plt = pyplot()

    s = run_dir.read_summary()
    seeds = s.get("per_seed", [s])
    by_estimator = {}
    for name, v in s["estimators"].items():
        by_estimator.setdefault(v["estimator"], []).append(name)
    fig, (ax_bias, ax_std) = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
    for e, names in by_estimator.items():
        names = sorted(names, key=lambda n: s["estimators"][n]["truncation"])
        ks = np.array([s["estimators"][n]["truncation"] for n in names])

        def rows(number):  # (seeds, truncations)
            return np.array([[float(seed["estimators"][n][number]) for n in names] for seed in seeds])

        c = color(e)
        band(ax_bias, ks, rows("relative_bias"), marker="o", color=c, label=e)
        band(ax_bias, ks, rows("relative_standard_error"), ls=":", color=c)
        band(ax_std, ks, rows("relative_variance_x_work"), marker="o", color=c, label=e)
        band(ax_std, ks, rows("run_relative_variance_x_work"), marker="s", ls="--", color=c)
    over = f" ({len(seeds)} seeds: {BAND})" if len(seeds) > 1 else ""
    ax_bias.set(xscale="log", yscale="log", xlabel="truncation K (steps per window)",
                ylabel="|mean − exact| / |exact|",
                title="bias away from the optimum (dotted: noise floor)")
    ax_std.set(xscale="log", yscale="log", xlabel="truncation K", ylabel="variance / |exact|² × plain passes",
               title="variance x cost (solid: an estimate; dashed: a run)")
    ax_bias.legend()
    fig.suptitle(f"Hypergradient estimators on the NQM against the exact whole-run gradient{over}")
    run_dir.save_figure(fig, "bias_std")

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    curves = [run_dir.load_curves(seed_name("estimators", k)) for k in range(len(seeds))]
    steps = np.arange(len(curves[0]["exact_curve"]))
    ax.plot(steps, curves[0]["exact_curve"], "k-", lw=2.5, label=f"exact optimum (J={s['exact']['loss']:.1f})")
    ax.plot(steps, curves[0]["greedy_curve"], "k:", lw=1.5, label=f"greedy (J={s['greedy']['loss']:.1f})")
    longest = max(v["truncation"] for v in s["estimators"].values())
    for name, v in s["estimators"].items():
        loss = np.mean([seed["estimators"][name]["fitted_loss"] for seed in seeds])
        band(ax, steps, [c[f"{name}_curve"] for c in curves], color=color(v["estimator"]),
             alpha=0.35 + 0.65 * v["truncation"] / longest, lw=1, label=f"{name} (J={loss:.1f})")
    ax.set(yscale="log", xlabel="step", ylabel="expected excess loss",
           title=f"Schedules fitted by each estimator (exact loss curves){over}")
    ax.legend(fontsize=7, ncol=2)
    run_dir.save_figure(fig, "fitted_schedules")


def report(run_dir: RunDir, prefix: str = "") -> str:
    s = run_dir.read_summary()
    ex = s["exact"]
    rows, unconverged = [], []
    for name, v in s["estimators"].items():
        opt = v["points"][-1]
        h = v["fitted_hyper"]
        if not v["converged"]:
            unconverged.append(f"{name} ({v['meta_steps']:,} meta-steps)")
        rows.append(f"| {name} | {fmt(v['relative_bias'], '.3g')} ({fmt(v['relative_standard_error'], '.2g')}) | "
                    f"{fmt(v['relative_bias_from_expected'], '.3g')} "
                    f"({fmt(v['relative_standard_error_from_expected'], '.2g')}) | {fmt(v['cosine'], '.4f')} | "
                    f"{fmt(v['std'], '.3g')} | {fmt(v['relative_variance_x_work'], '.3g')}, "
                    f"{fmt(v['run_relative_variance_x_work'], '.3g')} | "
                    f"{', '.join(fmt(z, '+.1f') for z in opt['z_from_zero'])} | "
                    f"{', '.join(fmt(x, '.3g') for x in h.values())} | {v['meta_steps']:,} | "
                    f"{fmt(v['fitted_loss'], '.2f')} ({fmt(v['fitted_loss_ratio'], '.3f')}x)"
                    f"{'' if v['converged'] else ', not converged'} | {fmt(v['fixed_point_loss_ratio'], '.3f')}x |")
    hx = ex["hyper"]
    described = descriptions(v["estimator"] for v in s["estimators"].values())
    steps = {name: v["meta_steps"] for name, v in s["estimators"].items()}
    fewest, most = min(steps, key=steps.get), max(steps, key=steps.get)
    budget = (f"Every fit spends the same budget, {s['fit_inner_steps']:,} inner steps over all its particles, so "
              f"its meta-steps range from {steps[fewest]:,} ({fewest}) to {steps[most]:,} ({most}); a fit whose J is "
              f"more than {s['convergence']:.0%} from its estimator's fixed point (where its expected gradient "
              f"vanishes: the exact optimum for the unbiased ones) has not converged within that budget, and its "
              f"number is the budget's, not the estimator's.")
    verdict = ("Not converged: " + ", ".join(unconverged) + "." if unconverged
               else f"Every fit is within {s['convergence']:.0%} of its fixed point.")
    return f"""## Hypergradient estimators against the exact whole-run gradient (NQM)

Objective: {s['objective']}. Coordinates: {', '.join(s['coordinates'])}.
Exact optimum: lr {hx['lr']:.4g}, decay exponent {hx['decay_exponent']:.4g}, momentum {hx['momentum']:.4g},
J = {ex['loss']:.3f} (greedy schedule: J = {s['greedy']['loss']:.2f}).

{chr(10).join(f"- {d}" for d in described)}

Averages over the settings away from the optimum: bias is |mean − exact| / |exact| against the
whole-run gradient and against the estimator's own exact expectation (truncated gradient, or
the smoothed whole-run gradient for PES and NRES), each with its noise floor in parentheses
(|standard error| / |exact|: an unbiased mean is about that far off by chance); std is one
estimate's; "var × work" is one estimate's variance relative to |exact|² times its cost in
plain passes, then the same for a particle's mean over its whole run (lower is better at equal
compute; the second counts the correlation between one run's windows). "z at optimum" is the
mean estimate at the exact optimum in standard errors from zero, per coordinate (the exact
gradient vanishes there). {budget} {verdict} J is exact.{" The table is seed 0's." if s.get("seeds", 1) > 1 else ""}

| estimator | bias vs exact (floor) | bias vs own expectation (floor) | cosine | std | var × work: estimate, run | z at optimum | fitted lr, decay exp., momentum | meta-steps | fitted J (x optimum) | fixed point J (x optimum) |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{seeds_table(s)}
![bias and variance at equal compute against K]({prefix}bias_std.png)

![fitted schedules]({prefix}fitted_schedules.png)
"""
