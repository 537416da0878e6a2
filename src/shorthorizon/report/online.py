"""Figures 7-8 and the report section of the ``online`` command, from its saved results only.

A figure per task: the training loss, the learning rate and each other adapted hyperparameter
over training. With several seeds a curve is the mean of the seeds that did not diverge and its
band their min-max (a band shows every seed, where an interval of 2 or 3 would be far wider
than the seeds). A run that diverged is drawn up to its divergence and marked with ×, and
the loss panel's limits come from the runs that did not diverge: a deterministic lookahead's
loss of 658 then leaves the others visible (their losses stay below 2.7), and it is drawn
until it leaves the panel.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from shorthorizon.hypergrad import make_estimator
from shorthorizon.report.figures import interval_text, pyplot
from shorthorizon.results import RunDir, fmt
from shorthorizon.stats import FACTORS, PROPORTION, UNBOUNDED

FIGURES = {"mlp": "figure7_mlp", "cnn": "figure8_cnn"}
MARGIN = 1.25  # the loss panel spans the finished runs' losses, this factor wider each way (log scale)

# The names of the summary's numbers, which the experiment writes (and imports from here: the
# report imports nothing from the experiment). The headline numbers of each task and mode (baseline,
# stochastic, deterministic; pes, nres), by name -> its kind (shorthorizon.stats.summarised: FACTORS,
# or its natural bounds); their paths in summary["intervals"] are "<task>.<mode>.<name>",
# e.g. "mlp.stochastic.lr_ratio" (the baseline has the first two only). lr_ratio is the lr at stop
# over the tuned (baseline) lr, loss_ratio the final train loss over the baseline's.
HEADLINES = {"final_train_loss": UNBOUNDED, "diverged": PROPORTION, "lr_at_stop": FACTORS, "lr_ratio": FACTORS,
             "loss_ratio": FACTORS}


def file_name(task: str) -> str:
    """``task`` as a portable file name: a user's ``package.module:factory`` with ``_`` for
    what is not a letter, digit or underscore (a colon is not portable)."""
    return re.sub(r"\W", "_", task)


def at_stop(row) -> tuple[str, ...]:
    """The ``NAME_at_stop`` keys of a run's result or summary row, ``lr`` first."""
    return tuple(sorted((k for k in row if k.endswith("_at_stop")), key=lambda k: k != "lr_at_stop"))


def _smooth(y: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The steps at which each moving mean of ``y`` over ``window`` steps ends, and the means."""
    if len(y) < window or window < 2:
        return np.arange(len(y)), y
    return np.arange(window - 1, len(y)), np.convolve(y, np.ones(window) / window, mode="valid")


def _tasks(summary: dict) -> list[str]:
    """The tasks in a summary: the paper's first, then any named as package.module:factory."""
    return [t for t in FIGURES if t in summary] + [t for t in summary if ":" in t]


def _figure(task: str) -> str:
    return FIGURES.get(task, "online_" + file_name(task))


def _drawn(x: np.ndarray, y: np.ndarray, top: float = np.inf) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """A diverged run's curve up to where it diverged (its first value that is not finite) or
    left the panel (its first above ``top``), and where to mark that: on the panel's top edge
    where it left, else at its last point."""
    inside = np.isfinite(y) & (y <= top)
    end = len(y) if inside.all() else int(np.argmin(inside))
    mark = (x[end], top) if end < len(y) and y[end] > top else (x[end - 1], y[end - 1]) if end else None
    return x[:end], y[:end], mark


def _draw(ax, runs: list[tuple[np.ndarray, np.ndarray, bool]], top: float, label: str, **style) -> None:
    """The mean and min-max band of the seeds that finished, each diverged seed's curve up to
    its divergence (:func:`_drawn`), marked with ×."""
    finished = np.array([y for _, y, diverged in runs if not diverged])
    if len(finished):
        x = next(x for x, _, diverged in runs if not diverged)
        diverged = len(runs) - len(finished)
        ax.plot(x, finished.mean(axis=0), label=label + (f" ({diverged} of {len(runs)} diverged)" if diverged else ""),
                **style)
        if len(finished) > 1:
            ax.fill_between(x, finished.min(axis=0), finished.max(axis=0), color=style["color"], alpha=0.2, lw=0)
    legend = None if len(finished) else f"{label} (diverged)"  # on the first diverged seed's curve
    for x, y, mark in (_drawn(x, y, top) for x, y, diverged in runs if diverged):
        ax.plot(x, y, lw=0.8, label=legend, **style)
        if mark:
            ax.plot(*mark, marker="x", ms=8, color=style["color"])
        legend = None


def _loss_limits(runs: list[tuple[np.ndarray, np.ndarray, bool]], start: float) -> tuple[float, float]:
    """The loss panel's limits: from the initial loss ``start`` (where every run begins, before
    a moving mean hides it) and the finished runs' losses, widened by MARGIN; a diverged run is
    drawn only up to the top."""
    top = MARGIN * max([start] + [float(np.max(y)) for _, y, diverged in runs if not diverged])
    drawn = [y for _, y, diverged in runs if not diverged] + [_drawn(x, y, top)[1] for x, y, diverged in runs
                                                               if diverged]
    return min([start] + [float(np.min(y)) for y in drawn if len(y)]) / MARGIN, top


def plot(run_dir: RunDir, baseline_unit: Callable[[str, int], str]) -> None:
    """The figure of each task; the runs' curves are the units their summary rows name, the
    baseline's (whose row names none) ``baseline_unit(task, seed)``, the experiment's name for it."""
    plt = pyplot()

    summary = run_dir.read_summary()
    per_seed = summary.get("per_seed", [summary])  # seed 0 first; a single-seed run's is the summary itself
    for task in _tasks(summary):
        s, seeds = summary[task], [seed[task] for seed in per_seed]
        window = max(1, s["steps"] // 100)
        # a panel per adapted hyperparameter beside lr
        others = [k.removesuffix("_at_stop") for k in at_stop(s["runs"][0])[1:]] if s["runs"] else []
        fig, (ax_loss, ax_lr, *ax_others) = plt.subplots(1, 2 + len(others), figsize=(5.5 * (2 + len(others)), 4))
        init_lrs = sorted({r["init_lr"] for r in s["runs"]})
        colors = dict(zip(init_lrs, plt.cm.viridis(np.linspace(0, 0.9, len(init_lrs)))))
        base_lr = s["baseline"]["lr"]
        # (label, style, each seed's (unit, diverged))
        entries = [(f"baseline lr={base_lr:g}", dict(color="black", ls="-"),
                    [(baseline_unit(task, k), seed["baseline"]["diverged"])
                     for k, seed in enumerate(seeds)])]
        entries += [(f"{r['lookahead']} lr0={r['init_lr']:g}",
                     dict(color=colors[r["init_lr"]], ls="-" if r["lookahead"] == "stochastic" else "--"),
                     [(seed["runs"][i]["unit"], seed["runs"][i]["diverged"]) for seed in seeds])
                    for i, r in enumerate(s["runs"])]
        curves = [[(run_dir.load_unit(unit), diverged) for unit, diverged in runs] for _, _, runs in entries]
        losses = [[(*_smooth(c["loss"], window), diverged) for c, diverged in runs] for runs in curves]
        start = max(float(c["loss"][0]) for runs in curves for c, _ in runs if np.isfinite(c["loss"][0]))
        bottom, top = _loss_limits([run for runs in losses for run in runs], start)
        for (label, style, _), runs, loss in zip(entries, curves, losses):
            _draw(ax_loss, loss, top, label, **style)
            for ax, name in zip([ax_lr, *ax_others], ["lr", *others]):
                _draw(ax, [(np.arange(len(c[name])), c[name], diverged) for c, diverged in runs], np.inf, label,
                      **style)
        spread = f"; {len(seeds)} seeds: mean, band min–max" if len(seeds) > 1 else ""
        ax_loss.set(yscale="log", ylim=(bottom, top), xlabel="training step",
                    ylabel=f"training loss (moving mean of {window})",
                    title=f"{task.upper()} on {s['dataset']}{spread}")
        for ax, name in zip([ax_lr, *ax_others], ["learning rate α", *others]):
            ax.set(yscale="log", xlabel="training step", ylabel=name, title=name)
            ax.axvline(s["steps"] // 2, color="gray", lw=0.8, ls=":")
        ax_loss.legend(fontsize=7, loc="upper right")  # losses fall from the upper left; the lr curves fill their panel
        run_dir.save_figure(fig, _figure(task))


def _over_seeds(summary: dict, task: str) -> list[str]:
    """The headline numbers of ``task`` over the seeds, a row per mode."""
    intervals, name = summary["intervals"], file_name(task)
    modes = list(dict.fromkeys(path.split(".")[1] for path in intervals if path.startswith(name + ".")))
    return [f"Over {summary['seeds']} seeds: each number's mean and 95% Student-t interval over the seeds "
            "(for learning rates and the ratios to the baseline's lr and loss, which vary by factors, the interval of "
            "their logs, exponentiated; a ratio is taken within each seed). A mode's lr at stop is the largest of its "
            "runs', its loss the lowest; diverged is the fraction of its runs that diverged (a diverged run's loss is "
            "counted apart).", "",
            "| mode | " + " | ".join(HEADLINES) + " |", "|---|" + "---|" * len(HEADLINES)] + [
        f"| {mode} | " + " | ".join(interval_text(intervals.get(f"{name}.{mode}.{key}"), seeds=True) for key in HEADLINES) + " |"
        for mode in modes] + ["", "Seed 0:", ""]


def report(run_dir: RunDir, prefix: str = "") -> str:
    summary, config = run_dir.read_summary(), run_dir.read_config()
    optimizer = config.get("optimizer", "momentum")
    how = (f"{config['estimator'].upper()} particles beside the run, one meta-step per interval"
           if make_estimator(config["estimator"]).persistent else f"{config['horizon']}-step lookahead")
    lines = ["## Online meta-optimization (Section 3.3, Figures 7–8)", "",
             f"SMD adapts {' and '.join(config.get('adapt', ('lr', 'momentum')))} of {optimizer} during the first "
             f"half of training ({how}); then every hyperparameter is frozen but the lr, which decays "
             f"exponentially until the effective lr is {config['final_lr_eff']:g}."
             + (" Learning rates are α in v ← μv − α∇L." if optimizer == "momentum" else ""), ""]
    for task in _tasks(summary):
        s = summary[task]
        b = s["baseline"]
        figure = {"mlp": "Figure 7", "cnn": "Figure 8"}.get(task, "Your task")
        stop = at_stop(s["runs"][0]) if s["runs"] else ("lr_at_stop",)
        names = [k.removesuffix("_at_stop") for k in stop]
        lines += [f"### {figure}: {task.upper()} on {s['dataset']} ({s['steps']} steps)", "",
                  f"![{figure}]({prefix}{_figure(task)}.png)", "",
                  *(_over_seeds(summary, task) if summary.get("seeds", 1) > 1 else []),
                  "| run | lr₀ | " + " | ".join(f"{n} at stop" for n in names)
                  + " | final train loss | test accuracy | diverged |",
                  "|---|---|" + "---|" * len(names) + "---|---|---|",
                  f"| baseline | {b['lr']:g} | " + " | ".join(f"{b[n]:g}" for n in names)
                  + f" | {fmt(b['final_train_loss'], '.4f')} "
                  f"| {fmt(b['final_test_accuracy'], '.4f')} | {'yes' if b['diverged'] else 'no'} |"]
        for r in s["runs"]:
            lines.append(f"| {r['lookahead']} | {r['init_lr']:g} | " + " | ".join(fmt(r[k]) for k in stop)
                         + f" | {fmt(r['final_train_loss'], '.4f')} | "
                         f"{fmt(r['final_test_accuracy'], '.4f')} | "
                         f"{'yes, at step ' + str(r['steps_done']) if r['diverged'] else 'no'} |")
        lines += ["", "Checks: " + ", ".join(f"{k}: **{v}**" for k, v in s["checks"].items()), ""]
    return "\n".join(lines)
