"""The claims table that opens the reproduction report: one row per claim, judged in code.

Each claim is a number read from an experiment's stored ``summary.json`` and a side of a
threshold the claim puts it on (e.g. "the decay-exponent ratio T_short / T_long is above 1").
The verdict follows one rule (:data:`RULE`, printed next to the table):

- the number is measured over seeds: its 95% interval (``summary["intervals"][path]``, from
  :func:`shorthorizon.stats.over_seeds`) decides: *holds* when the whole interval lies on the
  claim's side, *does not hold* when it lies wholly on the other, *inconclusive* when it
  straddles the threshold;
- it is exact (the NQM's dynamics, computed, not sampled): the value decides;
- it is one seed's: *inconclusive*, whatever the value (one draw has no interval: Student t's
  with one sample is unbounded), and its text says "1 seed";
- *not comparable* when the experiment did not run or the number is missing or diverged.

Where the configuration is the paper's, the paper's own number is shown, and where the claim is
a magnitude the paper reports (the offline ratios) it is the threshold; elsewhere the paper
column stays empty and the threshold is the claim's direction. Claims that compare two numbers
of one run put their ratio against 1.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, NamedTuple

from shorthorizon.report.figures import interval_text
from shorthorizon.report.offline import PAPER_DECAY_EXPONENT_RATIO, PAPER_TRAIN_LOSS_RATIO, is_paper_horizons
from shorthorizon.results import fmt
from shorthorizon.stats import MOST_OF_THE_BOX, log_interval, lookup

RULE = ("A claim *holds* when its number's 95% interval over seeds (Student t; by logs for ratios) lies "
        "wholly on the claim's side of its threshold, *does not hold* when it lies wholly on the other, and is "
        "*inconclusive* when it straddles it or rests on one seed (one draw has no interval); an exact number (the "
        "NQM's, computed) is judged by its value. The state is read before the number: a claim that an instability supports (\"... or "
        "unstable\") *holds* where a run diverged, whatever the number it left, and any other claim on that run is "
        "*not comparable*. *Not comparable*: the experiment did not run, or its number is missing or diverged. *Not identified*: the claim is about a fitted value "
        "that one of its horizons cannot see (a ratio needs both; in most seeds, the values scoring within the tolerance of that horizon's "
        "best span at least half of the box), so where the fit landed is noise, whatever the number. The "
        "threshold is the paper's number where the claim is a magnitude the paper reports (the offline ratios) and "
        "the configuration is the paper's, else the claim's direction; the paper column shows the paper's number "
        "wherever the configuration is the paper's.")
HOLDS, FAILS, OPEN, NOT_COMPARABLE = "holds", "does not hold", "inconclusive", "not comparable"
NOT_IDENTIFIED = "not identified"


class Evidence(NamedTuple):
    """What a claim reads from one run: its number (a value or an interval dict), the threshold,
    the side (``above``) and whether the threshold itself is on it (``inclusive``), the paper's
    number where the configuration is the paper's, and whether the number is exact (not sampled)."""

    number: float | Mapping | None
    threshold: float
    above: bool = True
    paper: str = ""
    exact: bool = False
    inclusive: bool = False
    unstable: float | Mapping | None = None  # the diverged fraction of the runs the number comes from
    instability_holds: bool = True  # where runs diverged: the claim says "... or unstable" (else not comparable)
    unseen: str = ""  # where the value the claim is about is not identified: what its horizon saw

    def side(self, x: float) -> bool:
        if x == self.threshold:
            return self.inclusive
        return (x > self.threshold) == self.above

    def relation(self) -> str:
        return ("≥" if self.inclusive else ">") if self.above else ("≤" if self.inclusive else "<")


class Claim(NamedTuple):
    text: str
    source: str  # the experiment (its report section and sub-folder)
    evidence: Callable[[Mapping, Mapping], Evidence]  # (summary, config) -> evidence
    applies: Callable[[Mapping], bool] = lambda config: True  # to a run of this config (else left out)


def at(summary: Mapping, path: str) -> float | Mapping | None:
    """The number at dotted ``path`` of ``summary``: its interval over seeds where the summary
    has one, else the plain value (None where absent)."""
    return summary.get("intervals", {}).get(path, lookup(summary, path))


def verdict(evidence: Evidence) -> tuple[str, str]:
    """(what we measured, as text; the verdict) by :data:`RULE`."""
    number, side = evidence.number, evidence.side
    unstable = evidence.unstable["mean"] if isinstance(evidence.unstable, Mapping) else evidence.unstable
    if unstable:  # the state before the number: a diverged run's lr at stop is no measurement
        return f"diverged ({fmt(unstable, '.0%')} of runs)", HOLDS if evidence.instability_holds else NOT_COMPARABLE
    if evidence.unseen:
        return evidence.unseen, NOT_IDENTIFIED
    if isinstance(number, Mapping):  # an interval over seeds
        if number["mean"] is None:
            return "diverged", NOT_COMPARABLE
        spec = _digits([number[k] for k in ("mean", "low", "high")], evidence.threshold)
        if number["low"] is None:  # one seed: no interval
            return interval_text(number, spec, seeds=True), OPEN
        low, high = side(number["low"]), side(number["high"])
        return interval_text(number, spec, seeds=True), HOLDS if low and high else FAILS if not (low or high) else OPEN
    if number is None or isinstance(number, bool) or not math.isfinite(number):
        return "—", NOT_COMPARABLE
    if not evidence.exact:
        return f"{fmt(number, _digits([number], evidence.threshold))} (1 seed)", OPEN
    return fmt(number, _digits([number], evidence.threshold)), HOLDS if side(number) else FAILS


def _digits(numbers: list, threshold: float) -> str:
    """The format of a claim's numbers: 3 significant digits, more (up to 6) where one of them
    would read as the threshold without being it (1.001 against 1: shown as 1.001, not 1)."""
    for digits in range(3, 7):
        if all(x is None or x == threshold or format(x, f".{digits}g") != format(threshold, f".{digits}g")
               for x in numbers):
            break
    return f".{digits}g"


def table(runs: Mapping[str, tuple[Mapping, Mapping]]) -> list[dict]:
    """The claims judged on ``runs`` (experiment name -> (summary, config)), one dict per row:
    ``claim``, ``source``, ``paper``, ``ours``, ``threshold``, ``verdict``."""
    rows = []
    for claim in CLAIMS:
        if claim.source in runs and not claim.applies(runs[claim.source][1]):
            continue
        if claim.source not in runs:
            rows.append({"claim": claim.text, "source": claim.source, "paper": "", "ours": "not run",
                         "threshold": None, "verdict": NOT_COMPARABLE})
            continue
        evidence = claim.evidence(*runs[claim.source])
        ours, judged = verdict(evidence)
        rows.append({"claim": claim.text, "source": claim.source, "paper": evidence.paper, "ours": ours,
                     "threshold": f"{evidence.relation()} {evidence.threshold:g}", "verdict": judged})
    return rows


def of(name: str, summary: Mapping, config: Mapping) -> list[dict]:
    """The rows of :func:`table` that experiment ``name``'s results decide on their own (a command's
    own report; a claim reads one experiment's results, its ``source``)."""
    return [row for row in table({name: (summary, config)}) if row["source"] == name]


def markdown(rows: list[dict]) -> str:
    lines = ["| claim | paper | ours | judged against | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {r['claim']} ([{r['source']}](#{r['source']})) | {r['paper'] or '—'} | {r['ours']} | "
              f"{r['threshold'] or '—'} | **{r['verdict']}** |" for r in rows]
    return "\n".join(lines) + f"\n\n{RULE}"


# --- the claims ----------------------------------------------------------------------------
def _nqm_order(summary, config) -> Evidence:
    noisy, paper = summary["noisy"], summary.get("paper", {}).get("noisy")
    ratio = min(noisy["greedy"]["final_loss"] / noisy["fixed"]["final_loss"],
                noisy["fixed"]["final_loss"] / noisy["optimized"]["final_loss"])
    if paper:  # the paper's own ratios, beside ours
        paper = (f"{min(paper['greedy'] / paper['fixed'], paper['fixed'] / paper['optimized']):.3g} (greedy "
                 f"{paper['greedy']:g}, fixed {paper['fixed']:g}, optimized {paper['optimized']:g})")
    return Evidence(ratio, 1.0, paper=paper or "", exact=True)


def _nqm_deterministic(summary, config) -> Evidence:
    d = summary["deterministic"]
    return Evidence(d["greedy"]["final_loss"] / d["optimized"]["final_loss"], 1.0, above=False, exact=True,
                    inclusive=True)


def _offline(path: str, paper_number: float, value: str | None = None):
    """The offline ratio at ``path``; with ``value``, a claim about that fitted value's ratio
    (shortest over longest horizon), not identified where most seeds' identified range at either
    spans at least :data:`~shorthorizon.stats.MOST_OF_THE_BOX` of its box."""
    def evidence(summary, config) -> Evidence:
        paper = is_paper_horizons(config)
        return Evidence(at(summary, path), paper_number if paper else 1.0,
                        paper=f"> {paper_number:g} (MNIST)" if paper else "", unseen=value and _unseen(summary, value))
    return evidence


def _unseen(summary: Mapping, value: str) -> str:
    """What the shortest or the longest horizon (a ratio needs both) saw of ``value``, where it
    is not identified there (else "")."""
    seeds = summary.get("per_seed", [summary])
    ordered = sorted(seeds[0]["horizons"], key=int)
    for horizon in dict.fromkeys((ordered[0], ordered[-1])):
        shares = [lookup(s, f"horizons.{horizon}.identified.{value}.fraction_of_box") for s in seeds]
        if sum(x is not None and x >= MOST_OF_THE_BOX for x in shares) * 2 > len(seeds):
            return (f"not identified at T = {horizon}: the values within the tolerance of its best span "
                    + ", ".join("—" if x is None else f"{x:.0%}" for x in shares) + " of the box (by seed)")
    return ""


def _online(kind: str, relation: str):
    """The first task's runs with ``kind`` lookahead (the online command's headline numbers, its
    ``HEADLINES``): ``relation`` "tenth" (lr at stop / baseline lr below 1/10), "loss" (final
    loss / baseline's above 1) or "above" (lr at stop / baseline lr above 1; a run that diverged
    was unstable, which the claim also says; where a run diverged the other two are not comparable)."""
    def evidence(summary, config) -> Evidence:
        task = next(k for k, v in summary.items() if isinstance(v, Mapping) and "baseline" in v)
        number = at(summary, f"{task}.{kind}.{'loss_ratio' if relation == 'loss' else 'lr_ratio'}")
        return Evidence(number, 0.1 if relation == "tenth" else 1.0, above=relation != "tenth",
                        unstable=at(summary, f"{task}.{kind}.diverged"), instability_holds=relation == "above")
    return evidence


def _over_seeds(summary: Mapping, number: Callable[[Mapping], float]) -> dict:
    """``number`` of each seed's summary (a single-seed run's own), summarised by its logs: for a
    claim's number that the command's ``intervals`` do not hold (computed from several of them)."""
    return log_interval([number(seed) for seed in summary.get("per_seed", [summary])])


def _estimators(kind: str, biased: bool):
    """The NQM estimators' bias against the whole-run gradient (``biased``: a truncated
    estimator's, K < T, in units of its noise floor: above 3 floors), or against its own
    expectation (PES, NRES: below 3 floors); per seed, the least (biased) or the most biased of
    its K < T, summarised over seeds by their logs."""
    def evidence(summary, config) -> Evidence:
        def in_floors(seed: Mapping) -> float | None:
            rows = [v for v in seed["estimators"].values() if v["estimator"] == kind
                    and v["truncation"] < config["horizon"]]
            key = "" if biased else "_from_expected"
            floors = [r[f"relative_bias{key}"] / r[f"relative_standard_error{key}"] for r in rows]
            return (min(floors) if biased else max(floors)) if floors else None

        return Evidence(None if in_floors(summary) is None else _over_seeds(summary, in_floors), 3.0, above=biased)
    return evidence


def _truncated_bias(summary, config) -> Evidence:
    """Truncated forward mode's fitted decay exponent over full-horizon SMD's (within a seed)."""
    return Evidence(at(summary, f"estimators.forward_K{config['truncation']}.decay_exponent_ratio"), 1.0)


def _pes_recovers(summary, config) -> Evidence:
    """PES's schedule's training loss at T over truncated forward mode's, at the same window K,
    taken within each seed (paired) and summarised by its logs."""
    def ratio(seed: Mapping) -> float:
        fits = seed["estimators"]
        pes, forward = (fits.get(f"{e}_K{config['truncation']}", {}).get("final_train_loss") for e in ("pes", "forward"))
        return math.nan if pes is None or forward is None else pes / forward
    return Evidence(_over_seeds(summary, ratio), 1.0, above=False)


def _decays(config: Mapping) -> bool:
    """Whether the run fitted the paper's inverse-time schedule (a decay exponent to compare)."""
    return config.get("schedule", "inverse-time") == "inverse-time"


def _regime_edges(summary, config) -> Evidence:
    edges = summary["edges"].values()
    return Evidence(sum(e["greedy_optimal"] for e in edges) / len(edges), 1.0, exact=True, inclusive=True)


CLAIMS = (
    Claim("NQM, noisy: the greedy schedule's loss > the best fixed one's > the optimized one's (the smaller "
          "of the two loss ratios)", "nqm", _nqm_order),
    Claim("NQM, deterministic: the greedy schedule is optimal (its loss / the optimized one's)", "nqm",
          _nqm_deterministic),
    Claim("Offline: a short horizon picks a faster decay (decay exponent T_short / T_long)", "offline",
          _offline("decay_exponent_ratio", PAPER_DECAY_EXPONENT_RATIO, "decay_exponent"), _decays),
    Claim("Offline: the short horizon's schedule ends the long run behind (final train loss T_short / T_long)",
          "offline", _offline("final_train_loss_ratio", PAPER_TRAIN_LOSS_RATIO)),
    Claim("Online, stochastic lookahead: lr at stop below a tenth of the tuned one (lr ratio)", "online",
          _online("stochastic", "tenth")),
    Claim("Online, stochastic lookahead: a worse final train loss than the tuned baseline (loss ratio)", "online",
          _online("stochastic", "loss")),
    Claim("Online, deterministic lookahead: lr at stop above the tuned one, or unstable (lr ratio)", "online",
          _online("deterministic", "above")),
    Claim("Truncated (MLP): forward-mode SMD over windows of K steps fits a faster decay than full-horizon SMD "
          "(decay exponent ratio)", "truncated", _truncated_bias, _decays),
    Claim("Truncated (MLP): PES's schedule ends the run below truncated forward mode's at the same K (train loss "
          "at T, PES / forward)", "truncated", _pes_recovers),
    Claim("NQM estimators: truncated forward mode (K < T) is biased (relative bias / noise floor)", "estimators",
          _estimators("forward", biased=True)),
    Claim("NQM estimators: PES is unbiased for its smoothed whole-run objective (relative bias / floor)",
          "estimators", _estimators("pes", biased=False)),
    Claim("NQM estimators: NRES is unbiased for its smoothed whole-run objective (relative bias / floor)",
          "estimators", _estimators("nres", biased=False)),
    Claim("Regime map: greedy is optimal on every edge of the map (fraction of edges)", "nqm-map", _regime_edges),
)
