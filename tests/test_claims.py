"""The claims table: verdicts by one rule, from the stored results."""

import dataclasses
import json
import math

import pytest

from shorthorizon.cli import main
from shorthorizon.experiments import nqm, offline
from shorthorizon.report import claims
from shorthorizon.report.document import write_report
from shorthorizon.stats import interval, log_interval

from test_run_folders import NQM


@pytest.mark.parametrize("number, above, expected", [
    (log_interval([2.0, 3.0, 4.0]), True, claims.HOLDS),  # [1.46, 5.44], wholly above 1
    (log_interval([0.5, 2.0, 4.0]), True, claims.OPEN),  # straddles 1
    (log_interval([0.2, 0.3, 0.4]), True, claims.FAILS),  # wholly below
    (log_interval([0.2, 0.3, 0.4]), False, claims.HOLDS),
    (interval([3.0]), True, claims.OPEN),  # one seed: no interval, whatever its value
    (3.0, True, claims.OPEN),  # a sampled number alone (one seed's)
    (interval([float("nan"), float("nan")]), True, claims.NOT_COMPARABLE),  # every seed diverged
    (float("inf"), True, claims.NOT_COMPARABLE),
    (None, True, claims.NOT_COMPARABLE),
    (0.5, True, claims.OPEN),
])
def test_a_verdict_follows_the_rule(number, above, expected):
    assert claims.verdict(claims.Evidence(number, 1.0, above=above))[1] == expected
    if isinstance(number, float) and math.isfinite(number):  # the same number exact (computed) decides alone
        assert claims.verdict(claims.Evidence(number, 1.0, above=above, exact=True))[1] == (
            claims.HOLDS if (number > 1) == above else claims.FAILS)


@pytest.mark.parametrize("number, shown, expected", [
    (1.001, "1.001 (1 seed)", claims.OPEN),  # not "1": a number that reads as the threshold it is not
    (0.9996, "0.9996 (1 seed)", claims.OPEN),
    (2.34567, "2.35 (1 seed)", claims.OPEN),
    (interval([1.0004]), "1.0004 (1 seed)", claims.OPEN),
])
def test_a_number_near_the_threshold_is_shown_with_the_digits_that_decide_it(number, shown, expected):
    assert claims.verdict(claims.Evidence(number, 1.0)) == (shown, expected)


@pytest.mark.parametrize("shares, expected", [
    ((0.9, 0.6, 0.1), claims.NOT_IDENTIFIED),  # two of three seeds: at least half the box
    ((0.9, 0.1, 0.1), claims.OPEN),  # identified in most seeds: the interval decides
    ((0.9, None, 0.1), claims.OPEN),  # a seed whose samples all diverged counts as identified nowhere
])
def test_a_decay_ratio_the_short_horizon_cannot_see_is_not_identified_whatever_its_number(shares, expected):
    """The offline decay-exponent claim reads, before its number, what the shortest horizon's
    samples identify: seeds 48.7, 0.311, 28.7 (an interval straddling 1) are *not identified*
    where most seeds' identified range spans at least half of the decay exponent's box."""
    def seed(share):
        span = None if share is None else {"low": 0.1, "high": 10.0, "fraction_of_box": share}
        return {"horizons": {"100": {"identified": {"decay_exponent": span}},
                             "3000": {"identified": {"decay_exponent": {"fraction_of_box": 0.1}}}}}

    summary = {"per_seed": [seed(x) for x in shares], "intervals": {"decay_exponent_ratio": log_interval([48.7, 0.311, 28.7])}}
    row = next(r for r in claims.table({"offline": (summary, {"horizons": [100, 3000]})})
               if r["claim"].startswith("Offline: a short horizon picks a faster decay"))
    assert row["verdict"] == expected
    if expected == claims.NOT_IDENTIFIED:
        assert row["ours"] == "not identified at T = 100: the values within the tolerance of its best span 90%, 60%, " \
                              "10% of the box (by seed)"


def test_a_decay_ratio_the_long_horizon_cannot_see_is_not_identified_either():
    """A ratio needs its value at both ends: where the longest horizon's samples span most of the
    box in most seeds, the claim is not identified there, whatever the shortest saw."""
    def seed(short, long):
        return {"horizons": {"100": {"identified": {"decay_exponent": {"fraction_of_box": short}}},
                             "3000": {"identified": {"decay_exponent": {"fraction_of_box": long}}}}}

    summary = {"per_seed": [seed(0.1, 0.7), seed(0.2, 0.55)], "intervals": {"decay_exponent_ratio": log_interval([48.7, 9.0])}}
    row = next(r for r in claims.table({"offline": (summary, {"horizons": [100, 3000]})})
               if r["claim"].startswith("Offline: a short horizon picks a faster decay"))
    assert (row["verdict"], row["ours"]) == (claims.NOT_IDENTIFIED, "not identified at T = 3000: the values within the "
                                             "tolerance of its best span 70%, 55% of the box (by seed)")


def test_the_threshold_itself_counts_only_where_inclusive():
    assert claims.verdict(claims.Evidence(1.0, 1.0, exact=True))[1] == claims.FAILS
    assert claims.verdict(claims.Evidence(1.0, 1.0, exact=True, inclusive=True))[1] == claims.HOLDS
    assert claims.verdict(claims.Evidence(1.0, 1.0, above=False, exact=True, inclusive=True))[1] == claims.HOLDS


def test_at_reads_the_interval_over_seeds_before_the_plain_value():
    summary = {"ratio": 2.0, "a": {"b": 3.0}, "intervals": {"ratio": log_interval([2.0, 8.0])}}
    assert claims.at(summary, "ratio")["mean"] == pytest.approx(4.0)
    assert claims.at(summary, "a.b") == 3.0 and claims.at(summary, "a.c") is None


def test_the_report_opens_with_claims_judged_from_the_stored_results(tmp_path):
    """A reproduction of the NQM alone: its claims are judged, the others' say the experiment did
    not run; the same table is machine-readable in summary.json. Swapping the stored greedy and
    optimized losses of the deterministic problem and writing the report again flips the
    verdict: it is computed from the numbers on disk, not written as text."""
    out = tmp_path / "reproduction"
    assert main(["reproduce", *NQM[1:], "--only", "nqm", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert report.index("## Claims") < report.index('<a id="nqm"></a>') < report.index("## Noisy quadratic")
    table = json.loads((out / "summary.json").read_text())["claims"]
    assert len(table) == len(claims.CLAIMS)
    for row, claim in zip(table, claims.CLAIMS):
        assert row["claim"] == claim.text and (row["ours"] == "not run") == (claim.source != "nqm")
    deterministic = next(r for r in table if r["claim"].startswith("NQM, deterministic"))
    assert deterministic["verdict"] == claims.HOLDS  # greedy is optimal without noise (Theorem 3)

    summary = json.loads((out / "nqm" / "summary.json").read_text())
    d = summary["deterministic"]
    d["greedy"]["final_loss"], d["optimized"]["final_loss"] = d["optimized"]["final_loss"] + 1, d["greedy"]["final_loss"]
    (out / "nqm" / "summary.json").write_text(json.dumps(summary))
    write_report(out, {"nqm": nqm.report})
    table = json.loads((out / "summary.json").read_text())["claims"]
    assert next(r for r in table if r["claim"].startswith("NQM, deterministic"))["verdict"] == claims.FAILS


def test_the_paper_horizons_are_the_offline_presets_at_the_papers_problem():
    """``report.offline.is_paper_horizons`` (below the experiments: the claims and the section ask)
    knows the paper's problem without the presets: it must still say which presets pose it."""
    from shorthorizon.report.offline import is_paper_horizons

    assert {name for name, config in offline.PRESETS.items() if is_paper_horizons(config)} == {"paper", "paper-horizons"}
    from shorthorizon.offline_problem import with_family

    # as config.json holds it: resolved (the optimizer family's box and warm start filled in)
    stored = json.loads(json.dumps(dataclasses.asdict(with_family(offline.PRESETS["paper-horizons"]))))
    assert is_paper_horizons(stored) and not is_paper_horizons({**stored, "batch_size": 50})


def test_a_diverged_number_supports_only_a_claim_of_instability():
    everything_diverged = interval([float("nan"), float("nan")])
    assert claims.verdict(claims.Evidence(everything_diverged, 1.0, unstable=log_interval([1.0, 1.0])))[1] == claims.HOLDS
    assert claims.verdict(claims.Evidence(None, 1.0, unstable=0.0))[1] == claims.NOT_COMPARABLE


def test_the_state_is_read_before_the_number_on_a_stored_online_run_whose_deterministic_lookahead_diverged():
    """The quick reproduction's case: the deterministic lookahead diverged at ~2,600 steps and left
    an lr at stop 0.168 of the tuned one. "lr above the tuned one, or unstable" holds on the
    divergence, not "does not hold" on the lr it left; such lrs from two runs that did not
    diverge do not hold, and from one run are inconclusive (one draw)."""
    def summary(diverged: float, ratios=(0.168,)) -> dict:
        runs = {"baseline": {"lr": 0.1}, "deterministic": {"lr_ratio": ratios[0], "diverged": diverged}}
        return {"mlp": runs, "intervals": {"mlp.deterministic.lr_ratio": log_interval(list(ratios)),
                                          "mlp.deterministic.diverged": interval([diverged] * len(ratios))}}

    claim = next(c for c in claims.CLAIMS if c.text.startswith("Online, deterministic lookahead"))
    ours, verdict = claims.verdict(claim.evidence(summary(1.0), {}))
    assert verdict == claims.HOLDS and ours.startswith("diverged")
    assert claims.verdict(claim.evidence(summary(0.0, (0.168, 0.2)), {}))[1] == claims.FAILS
    assert claims.verdict(claim.evidence(summary(0.0), {}))[1] == claims.OPEN


def test_reproduce_takes_seeds_and_its_claims_read_their_intervals(tmp_path, monkeypatch):
    """``reproduce --set seeds=2`` repeats the online experiment over two seeds; its claims rows
    are judged on the intervals over them (two values each, ``(2 seeds)``), not on seed 0 alone."""
    from test_online import _write_learnable

    _write_learnable(tmp_path / "data", "fashion-mnist", 400, 100)
    monkeypatch.delenv("SHORTHORIZON_DATA", raising=False)
    out = tmp_path / "reproduction"
    tiny = {"seeds": 2, "task": "mlp", "data_dir": tmp_path / "data", "verify": "false", "mlp_steps": 40,
            "meta_steps": 2, "interval": 5, "chunks": 2, "mlp_batch_size": 20, "mlp_init_lrs": 0.05,
            "lookaheads": "stochastic", "eval_examples": 100}
    assert main(["reproduce", "--only", "online", "--out", str(out),
                 *(a for k, v in tiny.items() for a in ("--set", f"{k}={v}"))]) == 0
    summary = json.loads((out / "online" / "summary.json").read_text())
    assert summary["seeds"] == 2 and len(summary["per_seed"]) == 2
    rows = [r for r in json.loads((out / "summary.json").read_text())["claims"] if r["source"] == "online"]
    stochastic = [r for r in rows if "stochastic" in r["claim"]]
    assert stochastic and all(r["ours"].endswith("(2 seeds)") for r in stochastic), stochastic
    ratios = [run["mlp"]["runs"][0]["lr_at_stop"] / run["mlp"]["baseline"]["lr"] for run in summary["per_seed"]]
    assert summary["intervals"]["mlp.stochastic.lr_ratio"]["values"] == pytest.approx(ratios)
