"""Figures and report section of ``shorthorizon bias``, from its saved summary only."""

from __future__ import annotations

from shorthorizon.offline_problem import optimizer_text
from shorthorizon.report.figures import box_warnings, interval_text, pyplot
from shorthorizon.results import RunDir, fmt

# how each protocol tunes, as the report's sentences say it
PROTOCOL_TEXT = {
    "meta": "for the loss after K steps, the schedule laid over T (the paper's protocol)",
    "rerun": "on K-step trial runs, the schedule re-annealed over each trial",
    "rung": "at K-step rung checkpoints of full-length runs (early stopping)",
}
COLORS = {"meta": "tab:blue", "rerun": "tab:orange", "rung": "tab:green"}


def _by_protocol(s: dict) -> dict:
    """protocol -> its fits (rows of the summary), by increasing K."""
    return {p: sorted((r for r in s["fits"].values() if r["protocol"] == p), key=lambda r: r["horizon"])
            for p in s["protocols"]}


def plot(run_dir: RunDir) -> None:
    """Per protocol against K: each fitted value's ratio to the reference (drawn hollow where K
    or the reference's T cannot identify the value: no ratio is claimed, as the findings say), the cost at T of K's pick, and the rank agreement of the loss at K
    with the loss at T over the box's samples. Seeds as points, their mean and 95% interval."""
    plt = pyplot()
    s = run_dir.read_summary()
    panels = [(n, f"{n}: fitted at K / at T", lambda r, n=n: r["ratio_to_reference"][n]) for n in s["fitted"]]
    panels += [("cost", f"training loss at T = {s['horizon']}: pick / reference",
                lambda r: r["ratio_to_reference"]["train_loss_at_T"]),
               ("rank", "rank agreement with the loss at T (Spearman)", lambda r: r["rank_agreement"]["spearman"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), layout="constrained", squeeze=False)
    groups = _by_protocol(s)
    ks = sorted({row["horizon"] for rows in groups.values() for row in rows})
    for ax, (name, label, of) in zip(axes[0], panels):
        drawn = False
        for i, (protocol, rows) in enumerate(groups.items()):
            color = COLORS[protocol]
            for j, row in enumerate(rows):
                stat, k = of(row), row["horizon"] * 1.1 ** (i - (len(groups) - 1) / 2)  # protocols side by side
                hollow = name in row["not_identified"] + s["fits"]["reference"]["not_identified"]
                values = [v for v in stat["values"] if v is not None]
                drawn |= bool(values)
                ax.plot([k] * len(values), values, ".", color=color, alpha=0.4)
                if stat["mean"] is None:
                    continue
                # a correlation's t interval can pass +-1, where no correlation lies: drawn to the bound
                low, high = (stat["low"], stat["high"]) if name != "rank" or stat["low"] is None else (
                    max(stat["low"], -1.0), min(stat["high"], 1.0))
                err = None if low is None else [[stat["mean"] - low], [high - stat["mean"]]]
                ax.errorbar([k], [stat["mean"]], yerr=err, fmt="o", color=color, mfc="white" if hollow else color,
                            capsize=4, label=(protocol + (" (hollow: not identified)" if hollow else ""))
                            if j == 0 else None)
        if not drawn:  # every fit diverged (or none ranked): say so instead of an empty panel
            ax.text(0.5, 0.5, "every fit diverged" if name != "rank" else "no ranking", ha="center",
                    transform=ax.transAxes)
        elif name == "rank":
            ax.axhline(0, color="0.6", lw=0.8)
            ax.set(ylim=(-1.05, 1.05))
        else:
            ax.axhline(1, color="black", lw=1, label="reference (tuned at T)")
            if name == "cost":
                ax.axhline(1 + s["budget"], color="black", lw=0.8, ls="--", label=f"+{s['budget']:.0%}")
            ax.set_yscale("log")
        if drawn:  # K on a log axis, a tick at each K run
            ax.set_xscale("log")
            ax.set_xlim(min(ks) / 2, max(ks) * 2)
            ax.set_xticks(ks, [f"{k:g}" for k in ks])
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set(xlabel="tuning horizon K", title=label)
        ax.title.set_fontsize(9)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{s['task']}, {s['optimizer']}, {s['schedule']} schedule: tuned on K steps, judged at "
                 f"T = {s['horizon']} ({s['seeds']} seeds: points, mean, 95% interval)")
    run_dir.save_figure(fig, "bias")


def findings(s: dict) -> list[str]:
    """One sentence per fit and fitted value, and one for its cost at T."""
    out, reference = [], s["fits"]["reference"]
    for protocol, rows in _by_protocol(s).items():
        for row in rows:
            k, lines = row["horizon"], []
            for n in s["fitted"]:
                # a ratio needs the value identified at both ends: at K (this row) and at T (the reference)
                unseen = next(((where, r) for where, r in ((f"K = {k}", row), (f"T = {s['horizon']}", reference))
                               if n in r["not_identified"]), None)
                if row["verdict"][n] == "diverged":
                    lines.append(f"{n}: every fit diverged")
                elif unseen:
                    shares = ", ".join(fmt(x, ".0%") for x in unseen[1]["identified"][n]["fraction_of_box"])
                    lines.append(f"{n} is **not identified** at {unseen[0]}: the values within {s['tolerance']:.0%} "
                                 f"of the best span {shares} of its box (by seed), so no ratio is claimed")
                else:
                    lines.append(f"{n} comes out {interval_text(row['ratio_to_reference'][n])}x the full run's "
                                 f"({row['verdict'][n]})")
            cost = row["ratio_to_reference"]["train_loss_at_T"]
            if row["verdict"]["train_loss_at_T"] == "diverged":
                lines.append(f"no cost at T: a long run (its or the reference's) diverged in {cost['diverged']} of "
                             f"{s['seeds']} seeds")
            else:
                percent = {key: None if cost[key] is None else 100 * (cost[key] - 1) for key in ("mean", "low", "high")}
                lines.append(f"it costs {interval_text({**cost, **percent}, '+.1f')} % training loss at T "
                             f"({row['verdict']['train_loss_at_T']})")
            out.append(f"- Tuned {PROTOCOL_TEXT[protocol]}, K = {k}: " + "; ".join(lines) + ".")
    return out


def report(run_dir: RunDir, prefix: str = "") -> str:
    s, config = run_dir.read_summary(), run_dir.read_config()
    names = s["fitted"]
    head = " | ".join(["fit", *names, "loss at its horizon", "train loss at T", "x reference",
                       "rank agreement (Spearman)", "test error at T"])
    rows = "\n".join(
        f"| {label} | " + " | ".join([*(interval_text(v["hyper"][n]) + (" (n.i.)" if n in v["not_identified"] else "")
                                       for n in names),
                                     *(interval_text(v[k], ".4f") for k in ("objective", "train_loss_at_T")),
                                     interval_text(v["ratio_to_reference"]["train_loss_at_T"]),
                                     interval_text(v.get("rank_agreement", {}).get("spearman"), ".2f"),
                                     interval_text(v["test_error_at_T"], ".4f")]) + " |"
        for label, v in s["fits"].items())
    none = "none of the K run" if s["seeds"] > 1 else "not decided (one seed has no interval)"
    shortest = "\n".join(f"- {p}: " + (f"K = {k}" if k is not None else none) for p, k in s["shortest_safe_horizon"].items())
    widened = [f"{label}, {line}" for label, v in s["fits"].items() for line in v.get("widened", [])]
    edges = [line for v in s["fits"].values() for line in v["at_edge"]]
    warning = box_warnings(widened, edges, config.get("widen", 0))
    return f"""## Would a short horizon mis-tune it? (`shorthorizon bias`)

Task **{s['task']}** on **{s['dataset']}**, {optimizer_text(config) or config.get('optimizer', 'momentum')}; schedule **{s['schedule']}**, fitted:
{', '.join(names)}. {f"Each of {s['seeds']} seeds" if s['seeds'] > 1 else "One seed"} fits them for the training loss after T = {s['horizon']} steps (the
reference) and as a practitioner would from K-step trials under each protocol, from a shared
{config['warm_start_steps']}-step warm start, then trains every pick for T steps. Cells: mean over seeds and
{s['interval']}. "n.i.": not identified at that horizon (the values within {s['tolerance']:.0%} of its best, sampled or by the
quadratic model's profile through the best samples, cover most of the box).

{chr(10).join(findings(s))}

The shortest K whose pick costs at most {s['budget']:.0%} training loss at T, its whole interval below:

{shortest}

| {head} |
|{'---|' * (len(names) + 6)}
{rows}
{warning}
![fitted values, cost at T and rank agreement against the tuning horizon]({prefix}bias.png)
"""
