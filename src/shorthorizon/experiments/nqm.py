"""Noisy quadratic model: Figures 1-3 of the paper (short-horizon bias, exactly computed)."""

from __future__ import annotations

import dataclasses
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from shorthorizon.config import DIM, FRACTION, LOG_STEP, POSITIVE, SEED, check, items, key
from shorthorizon.nqm import NQM, fit_schedule, greedy_schedule, loss_components, loss_curve, ratios_of, simulate
from shorthorizon.nqm.problem import PAPER_LOSSES
from shorthorizon.report.figures import pyplot
from shorthorizon.results import RunDir, fmt
from shorthorizon.runners import Unit, run_units

NAME = "nqm"
FLAGS = ()
SETTINGS = ("noisy", "deterministic")
KINDS = ("greedy", "fixed", "optimized")


@dataclasses.dataclass(frozen=True)
class Config:
    dim: int = key(1000, DIM)  # problem dimension (Chebyshev spectrum on [1e-3, 1], sigma² = 1/h)
    horizon: int = key(250, POSITIVE)  # steps of SGD with momentum
    fit_steps: int = key(500, POSITIVE)  # Adam meta-steps for the per-step schedule
    fixed_fit_steps: int = key(150, POSITIVE)  # Adam meta-steps for the best fixed lr and momentum (converged)
    adam_lr: float = key(0.03, LOG_STEP)  # Adam step size on log lr and logit momentum (unbounded)
    penalty: float = key(1e3, POSITIVE)  # weight of the per-dimension constraint penalty (see nqm.fit)
    margin: float = key(1e-3, FRACTION)  # the penalty starts at component ratio 1 - margin
    tail_dims: int = key(50, POSITIVE)  # Figure 3: sums over this many highest / lowest curvatures (<= dim)
    fig1_steps: int = key(60, POSITIVE)  # Figure 1: steps of each sample trajectory on the 2-D problem
    fig1_trajectories: int = key(3, POSITIVE)
    fig2_horizons: tuple[int, ...] = key((1, 10, 50, 250), items(POSITIVE, distinct=True))  # Fig. 2: k steps at one lr
    fig2_decay_steps: int = key(50, POSITIVE)  # then this many steps of exponentially decayed lr
    fig2_decay_rate: float = key(0.9, POSITIVE)  # lr multiplied by this per decay step
    seed: int = key(0, SEED)


PRESETS = {
    "paper": Config(),
    # The paper's problem takes well under a minute, so the quick reproduction runs it too: its
    # numbers are the ones printed beside the paper's.
    "quick": Config(),
}


# the keys that decide the schedules' losses: the problem, and how thoroughly the schedules are fitted
PAPER_KEYS = ("dim", "horizon", "fit_steps", "fixed_fit_steps", "adam_lr", "penalty", "margin")


def is_paper_problem(config) -> bool:
    """Whether ``config`` (a Config, another experiment's config or a stored dict) poses
    Section 2.3's problem and fits its schedules as the paper preset does, the only setup the
    paper's numbers may be printed beside. Keys of :data:`PAPER_KEYS` that ``config`` does not
    have (another experiment's: ``nqm-map`` fits no fixed schedule) are not compared."""
    paper = PRESETS["paper"]
    values = config if isinstance(config, dict) else dataclasses.asdict(config)
    return all(values[k] == getattr(paper, k) for k in PAPER_KEYS if k in values)


# --- units (pure; run in float64 by _dispatch, in-process or in a fresh Ray worker) ---------
def schedules_unit(kind: str, dim: int, horizon: int, steps: int, adam_lr: float,
                   penalty: float, margin: float, tail_dims: int) -> dict:
    """One kind of schedule (greedy, fixed or optimized) for both settings at once (vmapped).

    Returns arrays with a leading axis over SETTINGS: lr, momentum (T,), loss (T+1,), the loss
    summed over the ``tail_dims`` highest (``loss_high``) and lowest (``loss_low``) curvature
    dimensions, and max_component_ratio.
    """
    if kind == "greedy":
        solve = partial(greedy_schedule, horizon=horizon)
    elif kind in ("fixed", "optimized"):
        solve = lambda p: fit_schedule(p, horizon, fixed=(kind == "fixed"), steps=steps,
                                           adam_lr=adam_lr, penalty=penalty, margin=margin).schedule
    else:
        raise ValueError(f"unknown schedule kind {kind!r}; choose one of: {', '.join(KINDS)}")

    # the noisy and the deterministic paper problem, stacked along a leading axis of 2
    both = [NQM.paper(dim, noisy=(setting == "noisy")) for setting in SETTINGS]
    problems = jax.tree.map(lambda *leaves: np.stack(leaves), *both)
    order = np.argsort(-problems.curvature[0])  # descending curvature (same in both settings)

    def evaluate(problem):
        schedule = solve(problem)
        components = loss_components(problem, schedule.lr, schedule.momentum)
        return dict(
            lr=schedule.lr, momentum=schedule.momentum, loss=components.sum(-1),
            loss_high=components[:, order[:tail_dims]].sum(-1),
            loss_low=components[:, order[-tail_dims:]].sum(-1),
            max_component_ratio=ratios_of(components).max(),
        )

    return jax.jit(jax.vmap(evaluate))(problems)


def figure1_unit(steps: int, trajectories: int, seed: int) -> dict:
    """Sample trajectories on a 2-D noisy quadratic: a small fixed lr, and a large lr followed
    by exponential decay."""
    problem = NQM([1.0, 0.1], sigma2=[0.5, 5.0], mean0=[-2.5, 4.0])
    half = steps // 2
    small = jnp.full(steps, 0.1)
    decayed = jnp.concatenate([jnp.full(half, 0.9), 0.9 * 0.85 ** jnp.arange(1, steps - half + 1)])
    key_small, key_decayed = jax.random.split(jax.random.PRNGKey(seed))
    zeros = jnp.zeros(steps)
    return dict(
        curvature=problem.curvature, sigma2=problem.sigma2,
        small=simulate(problem, small, zeros, key_small, trajectories),
        decayed=simulate(problem, decayed, zeros, key_decayed, trajectories),
        small_lr=small, decayed_lr=decayed,
    )


def figure2_unit(dim: int, horizons: tuple, decay_steps: int, decay_rate: float) -> dict:
    """Short-horizon meta-objectives (SGD on the noisy problem): the loss after k steps of a fixed
    lr, and after those k steps plus ``decay_steps`` steps of lr · decay_rate^j."""
    problem = NQM.paper(dim)
    lrs = jnp.geomspace(1e-2, 2.0, 60)
    decay = decay_rate ** jnp.arange(1, decay_steps + 1)

    def losses(lr, k):
        schedule = jnp.concatenate([jnp.full(k, lr), lr * decay])
        curve = loss_curve(problem, schedule, jnp.zeros_like(schedule))
        return curve[k], curve[-1]

    rows = [jax.jit(jax.vmap(partial(losses, k=int(k))))(lrs) for k in horizons]
    return dict(lr=lrs, horizons=np.asarray(horizons), fixed=np.stack([r[0] for r in rows]),
                decayed=np.stack([r[1] for r in rows]))


# --- the experiment --------------------------------------------------------------------------
def validate(config: Config) -> None:
    check(config)
    # Figure 1's trajectories are held whole: (fig1_steps + 1) x trajectories x 2 dimensions in float64
    need = (config.fig1_steps + 1) * config.fig1_trajectories * 2 * 8
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise ValueError(f"config key 'fig1_trajectories': {config.fig1_trajectories} trajectories of "
                         f"{config.fig1_steps} steps need {need / 2**30:.3g} GiB, more than this machine's "
                         f"{have / 2**30:.3g} GiB of memory")
    if config.tail_dims > config.dim:
        raise ValueError(f"config key 'tail_dims' must be at most dim={config.dim}, got {config.tail_dims}")


def run(config: Config, run_dir: RunDir, executor: str = "local", ray_address=None) -> dict:
    validate(config)
    run_dir.write_config(config)
    common = dict(dim=config.dim, horizon=config.horizon, adam_lr=config.adam_lr,
                  penalty=config.penalty, margin=config.margin, tail_dims=config.tail_dims)
    steps = {"greedy": 0, "fixed": config.fixed_fit_steps, "optimized": config.fit_steps}
    results = run_units(_dispatch, [
        *[Unit(kind, dict(fn="schedules", kind=kind, steps=steps[kind], **common)) for kind in KINDS],
        Unit("figure1", dict(fn="figure1", steps=config.fig1_steps,
                             trajectories=config.fig1_trajectories, seed=config.seed)),
        Unit("figure2", dict(fn="figure2", dim=config.dim, horizons=tuple(config.fig2_horizons),
                             decay_steps=config.fig2_decay_steps, decay_rate=config.fig2_decay_rate)),
    ], run_dir, executor, ray_address, desc="nqm")

    run_dir.save_curves("fig1", **results["figure1"])
    run_dir.save_curves("fig2", **results["figure2"])
    summary = {}
    for i, setting in enumerate(SETTINGS):
        curves = {f"{kind}_{key}": value[i] for kind in KINDS for key, value in results[kind].items()}
        run_dir.save_curves(f"fig3_{setting}", **curves)
        summary[setting] = {
            kind: {"final_loss": float(results[kind]["loss"][i, -1]),
                   "max_component_ratio": float(results[kind]["max_component_ratio"][i])}
            for kind in KINDS
        }
        summary[setting]["fixed"] |= {k: float(results["fixed"][k][i, 0]) for k in ("lr", "momentum")}
    if is_paper_problem(config):
        summary["paper"] = PAPER_LOSSES
    plot_all(run_dir)
    return run_dir.write_summary(summary)


def _dispatch(fn: str, **kwargs) -> dict:
    """Route a unit to its function (one picklable entry point for every executor), in float64
    for this call only: the process-wide setting, which other work shares, is left alone."""
    with jax.enable_x64(True):
        return {"schedules": schedules_unit, "figure1": figure1_unit, "figure2": figure2_unit}[fn](**kwargs)


# --- figures (from saved curves only) ------------------------------------------------------------
COLORS = {"greedy": "tab:orange", "fixed": "tab:green", "optimized": "tab:blue"}


def plot_all(run_dir: RunDir) -> None:
    plot_figure1(run_dir)
    plot_figure2(run_dir)
    for setting in SETTINGS:
        plot_figure3(run_dir, setting)


def plot_figure1(run_dir: RunDir) -> None:
    plt = pyplot()

    c = run_dir.load_curves("fig1")
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    paths = np.concatenate([c["small"], c["decayed"]], axis=1)
    lo, hi = paths.min(axis=(0, 1)) - 0.5, paths.max(axis=(0, 1)) + 0.5
    x, y = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    ax.contour(x, y, 0.5 * (c["curvature"][0] * x**2 + c["curvature"][1] * y**2), levels=12,
               colors="0.75", linewidths=0.8)
    for name, color, label in (("small", "tab:blue", "small fixed lr"),
                               ("decayed", "tab:red", "large lr, then exponential decay")):
        for j in range(c[name].shape[1]):
            ax.plot(c[name][:, j, 0], c[name][:, j, 1], "-", color=color, lw=1, alpha=0.8,
                    label=label if j == 0 else None)
    ax.plot(*c["small"][0, 0], "ko", ms=4)
    ax.plot(0, 0, "k*", ms=10)
    ax.set(xlabel=r"$\theta_1$", ylabel=r"$\theta_2$", title="Figure 1: SGD on a 2-D noisy quadratic")
    ax.legend(fontsize=8, loc="upper right")
    run_dir.save_figure(fig, "fig1")


def plot_figure2(run_dir: RunDir) -> None:
    plt = pyplot()

    c = run_dir.load_curves("fig2")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, k in enumerate(c["horizons"]):
        line, = ax.loglog(c["lr"], c["fixed"][i], "-", label=f"{k} step{'s' if k != 1 else ''}")
        ax.loglog(c["lr"], c["decayed"][i], "--", color=line.get_color())
    ax.set(xlabel="learning rate", ylabel="loss", ylim=(None, 2 * c["fixed"][:, 0].max()),
           title="Figure 2: short-horizon meta-objectives (dashed: + decay)")
    ax.legend(fontsize=8)
    run_dir.save_figure(fig, "fig2")


def plot_figure3(run_dir: RunDir, setting: str) -> None:
    plt = pyplot()

    c = run_dir.load_curves(f"fig3_{setting}")
    fig, axes = plt.subplots(1, 5, figsize=(22, 4))
    panels = (("loss", "loss", True), ("lr", "learning rate", False),
              ("momentum", "momentum", False), ("loss_high", "loss, highest curvatures", True),
              ("loss_low", "loss, lowest curvatures", True))
    for ax, (quantity, title, log) in zip(axes, panels):
        for kind in KINDS:
            values = c[f"{kind}_{quantity}"]
            ax.plot(np.arange(len(values)) + (quantity in ("lr", "momentum")), values,
                    color=COLORS[kind], label=kind)
        ax.set(title=title, xlabel="step", yscale="log" if log else "linear")
    axes[0].legend()
    fig.suptitle(f"Figure 3 ({setting})", y=1.03)
    run_dir.save_figure(fig, f"fig3_{setting}")


# --- report ----------------------------------------------------------------------------------
def report(run_dir: RunDir, prefix: str = "") -> str:
    summary = run_dir.read_summary()
    config = run_dir.read_config()
    paper_problem = is_paper_problem(config)
    lines = [
        "## Noisy quadratic model (Section 2)",
        "",
        "Exact expected losses after the horizon (excess over the irreducible loss); "
        "schedules fitted under the constraint that no dimension's loss exceeds its initial value.",
        "" if paper_problem else
        "\nThis run differs from the paper's problem or fit ("
        + ", ".join(f"{k} {config[k]:g}, not {getattr(PRESETS['paper'], k):g}" for k in PAPER_KEYS
                    if config[k] != getattr(PRESETS["paper"], k))
        + "), so the paper's numbers are not shown beside it.\n",
        "| setting | schedule | " + ("paper | " if paper_problem else "") + "ours | max component ratio |",
        "|---|---|---|" + ("---|" if paper_problem else "") + "---|",
    ]
    for setting in SETTINGS:
        for kind in KINDS:
            paper = PAPER_LOSSES.get(setting, {}).get(kind)
            ours = summary[setting][kind]
            column = (f"{'' if paper is None else f'{paper:.2f}'} | " if paper_problem else "")
            lines.append(f"| {setting} | {kind} | {column}"
                         f"{fmt(ours['final_loss'], '.4g')} | {fmt(ours['max_component_ratio'], '.4f')} |")
    fixed = summary["noisy"]["fixed"]
    lines += ["", f"Best fixed (noisy): lr {fmt(fixed['lr'], '.4g')}, momentum {fmt(fixed['momentum'], '.4g')}. "
              f"Computed in {summary['wall_time_s']:.1f} s.", ""]
    figures = [("fig1", "Figure 1"), ("fig2", "Figure 2"), *((f"fig3_{s}", f"Figure 3 ({s})") for s in SETTINGS)]
    lines += [f"![{caption}]({prefix}{name}.png)" for name, caption in figures]
    return "\n".join(lines) + "\n"
