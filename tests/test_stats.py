"""Intervals over seeds cover the truth at their nominal rate; the hyperparameter study's helpers
(identified range, rank agreement, shortest safe horizon) match cases worked by hand."""

import math
import sys

import jax
import numpy as np
import pytest
from scipy import stats

from shorthorizon.nqm import NQM
from shorthorizon.nqm.inner import ExactNQM, SampledNQM, to_raw
from shorthorizon.stats import (CORRELATION, FACTORS, MOST_OF_THE_BOX, UNBOUNDED, finding, identified_fraction,
                                identified_range, interval, log_interval, over_seeds, profile_halfwidths, rank_agreement,
                                shortest_safe_horizon, summarised)

REPEATS = 2000  # binomial standard error of a 95% coverage: 0.0049


def test_the_interval_covers_the_exact_nqm_loss_at_its_nominal_rate(x64):
    """Each "seed" is one sampled NQM run (its own noise); the quantity is its mean excess loss
    over the run, whose expectation Theorem 1 gives exactly. Over 2,000 repetitions the 95%
    interval of 3 (and of 10) seeds covers it 95% of the time, within 3.5 standard errors."""
    nqm, horizon = NQM.paper(50), 50
    raw = to_raw(0.3, 0.5, 0.5)
    exact = ExactNQM(nqm, horizon)
    truth = float(exact.unroll(raw, exact.init(), horizon)[0])
    sampled = SampledNQM(nqm, horizon)
    runs = jax.jit(jax.vmap(lambda k: sampled.unroll(raw, sampled.init(k), horizon)[0]))
    for seeds in (3, 10):
        draws = np.asarray(runs(jax.random.split(jax.random.PRNGKey(seeds), REPEATS * seeds))).reshape(REPEATS, seeds)
        assert abs(draws.mean() - truth) < 4 * draws.std() / np.sqrt(draws.size)  # the sampler is unbiased
        covered = [interval(d)["low"] <= truth <= interval(d)["high"] for d in draws]
        assert abs(np.mean(covered) - 0.95) < 3.5 * np.sqrt(0.95 * 0.05 / REPEATS), (seeds, np.mean(covered))


def test_the_log_interval_covers_the_median_of_lognormal_ratios():
    """Ratios with normal logs (median exp(0.4)): the exponentiated t interval of the logs covers
    the median at its nominal rate, and its center is the geometric mean."""
    rng = np.random.default_rng(0)
    draws = np.exp(rng.normal(0.4, 0.5, (REPEATS, 3)))
    covered = [log_interval(d)["low"] <= np.exp(0.4) <= log_interval(d)["high"] for d in draws]
    assert abs(np.mean(covered) - 0.95) < 3.5 * np.sqrt(0.95 * 0.05 / REPEATS)
    np.testing.assert_allclose(log_interval(draws[0])["mean"], np.exp(np.mean(np.log(draws[0]))))


def test_a_diverged_seed_is_counted_not_averaged():
    out = interval([1.0, np.nan, 3.0])
    assert out["n"] == 2 and out["diverged"] == 1 and out["mean"] == 2.0 and out["values"][1] is None
    one = interval([5.0])
    assert one["mean"] == 5.0 and one["low"] is None and one["high"] is None
    assert log_interval([2.0, -1.0, 8.0])["diverged"] == 1 and log_interval([2.0, 8.0])["mean"] == pytest.approx(4.0)
    wide = log_interval([1e-300, 1e300], confidence=0.999999)  # t(1) quantile ~ 3e5 times a log spread ~ 1e3
    assert wide["high"] == sys.float_info.max and 0 <= wide["low"] < 1e-300 and wide["mean"] == pytest.approx(1.0)


def test_over_seeds_keeps_seed_zero_and_summarises_each_headline_number():
    """Two seeds' summaries: the intervals are those of the numbers at each path (a ratio by its
    logs), a seed whose number is null or missing counts as diverged, seed 0 stays on top."""
    seeds = [{"ratio": 2.0, "horizons": {"100": {"loss": 1.0}}, "dataset": "d"},
             {"ratio": 8.0, "horizons": {"100": {"loss": None}}, "dataset": "d"}]
    out = over_seeds(seeds, {"ratio": FACTORS, "horizons.100.loss": UNBOUNDED, "horizons.300.loss": UNBOUNDED})
    assert out["ratio"] == 2.0 and out["seeds"] == 2 and out["per_seed"] == seeds
    assert out["intervals"]["ratio"] == log_interval([2.0, 8.0])
    assert out["intervals"]["horizons.100.loss"]["diverged"] == 1 and out["intervals"]["horizons.300.loss"]["n"] == 0
    one = over_seeds(seeds[:1], {"ratio": FACTORS})
    assert "per_seed" not in one and one["intervals"]["ratio"]["mean"] == pytest.approx(2.0)


def test_an_interval_stays_within_the_natural_bounds_its_headline_declares():
    """Three seeds' test errors near 0 and rank correlations near 1: the t interval reached below
    0 and above 1, values the numbers cannot take. Clipped to the bounds the experiments declare
    with their headline numbers (offline's HEADLINES; bias: its rank agreement), the mean and the
    other side unchanged."""
    from shorthorizon.experiments import offline

    errors, rhos = [0.001, 0.02, 0.0005], [0.99, 0.9, 1.0]
    plain = interval(errors)
    assert plain["low"] < 0  # what the bound is for
    seeds = [{"horizons": {"100": {"final_test_error": e}}} for e in errors]
    path = "horizons.100.final_test_error"
    clipped = over_seeds(seeds, {path: offline.HEADLINES["horizons.{horizon}.final_test_error"]})["intervals"][path]
    assert clipped == {**plain, "low": 0.0}
    assert interval(rhos, bounds=CORRELATION) == {**interval(rhos), "high": 1.0} and interval(rhos)["high"] > 1
    assert summarised(errors, UNBOUNDED) == plain and summarised([2.0, 8.0], FACTORS) == log_interval([2.0, 8.0])


def test_the_interval_is_mean_plus_minus_the_t_quantile_times_the_standard_error():
    """[1, 2, 3]: mean 2, s = 1, half-width t_{0.975,2} / sqrt(3), where with 2 degrees of freedom
    the quantile has the closed form t_{p,2} = (2p - 1) / sqrt(2p(1 - p)): 0.95 / sqrt(0.04875) =
    4.302652729749464 (tables: 4.303). And, to 1e-12 of the half-width, scipy's own interval
    around the mean (t.interval with loc and scale), which rounds differently in the last bits."""
    out = interval([1.0, 2.0, 3.0])
    half = 0.95 / math.sqrt(2 * 0.975 * 0.025) / math.sqrt(3)
    assert half * math.sqrt(3) == pytest.approx(4.302652729749464, rel=1e-15, abs=0)
    assert out["mean"] == 2.0 and out["n"] == 3 and out["diverged"] == 0
    assert out["low"] == pytest.approx(2.0 - half, rel=1e-14, abs=0)
    assert out["high"] == pytest.approx(2.0 + half, rel=1e-14, abs=0)
    rng = np.random.default_rng(1)
    for confidence in (0.95, 0.9, 0.5):
        for n in (2, 3, 10):
            values = rng.lognormal(0.0, 2.0, n)
            out, sem = interval(values, confidence), values.std(ddof=1) / math.sqrt(n)
            low, high = stats.t.interval(confidence, n - 1, loc=values.mean(), scale=sem)
            assert abs(out["low"] - low) < 1e-12 * sem and abs(out["high"] - high) < 1e-12 * sem


# A bowl in a, flat in b, sampled on a grid: log10 a = -1.5 + 0.04 j (j = -37..37), b = 10^(-2..2.3).
# objective = 1 + (log10 a + 1.5)^2, best 1 at a* = 10^-1.5; within 1% of it: (log10 a + 1.5)^2
# <= 0.01, i.e. |log10 a + 1.5| <= 0.1, whose grid points reach +-0.08 (the next, 0.12, is out).
LOG_A = -1.5 + 0.04 * np.arange(-37, 38)
A, B = (g.ravel() for g in np.meshgrid(10.0 ** LOG_A, np.logspace(-2.0, 2.3, 11)))
BOWL = 1.0 + (np.log10(A) + 1.5) ** 2
A_BOX = (10.0 ** LOG_A[0], 10.0 ** LOG_A[-1])  # 2.96 decades


def test_the_identified_range_is_the_bowls_tolerance_band_and_the_whole_flat_axis():
    a = identified_range(A, BOWL, 0.01, box=A_BOX)
    assert a.low == pytest.approx(10.0 ** -1.58, rel=1e-12) and a.high == pytest.approx(10.0 ** -1.42, rel=1e-12)
    assert a.fraction == pytest.approx(0.16 / 2.96, rel=1e-12) and a.fraction < MOST_OF_THE_BOX
    b = identified_range(B, BOWL, 0.01, box=(1e-2, 10.0 ** 2.3))
    assert (b.low, b.high) == pytest.approx((1e-2, 10.0 ** 2.3), rel=1e-12)
    assert b.fraction == pytest.approx(1.0, rel=1e-12) and b.fraction >= MOST_OF_THE_BOX
    assert identified_range(A, BOWL, 0.01).fraction is None
    # a 5% tolerance: |log10 a + 1.5| <= sqrt(0.05) = 0.2236, grid points to +-0.20
    assert identified_range(A, BOWL, 0.05)[:2] == pytest.approx((10.0 ** -1.7, 10.0 ** -1.3), rel=1e-12)


def test_the_profile_of_a_bowl_flat_in_one_coordinate_and_of_a_diagonal_valley():
    """Worked by hand, 1% tolerance, best 1 (the optimum is a sample):
    - f = 1 + (x - 0.5)^2, flat in y: H = diag(2, 0), so x's profile band is sqrt(2 0.01 1 / 2)
      = 0.1 wide on each side, and y's is unbounded, cut to the fitted points' reach;
    - the valley f = 1 + (x - y)^2 + 0.01 (x + y)^2: H = 2 [[1.01, -0.99], [-0.99, 1.01]],
      (H^-1)_xx = 1.01 / (2 (1.01^2 - 0.99^2)) = 12.625, so both profiles reach
      sqrt(2 0.01 12.625) = 0.50249 from the best, while the 40 samples spread over the square
      that lie within 1% span less than a fifth of that band;
    - a wide bowl, 0.001 (x^2 + y^2) + 1: its band, sqrt(10), is cut to the fitted points' reach.
    Too few finite points (fewer than twice the model's 6 coefficients) give no model."""
    rng = np.random.default_rng(0)
    xy = np.vstack([[0.5, 0.5], rng.uniform(-2, 2, (39, 2))])
    bowl = 1 + (xy[:, 0] - 0.5) ** 2
    widths = profile_halfwidths(xy, bowl, 0.01)
    reach = np.abs(xy[np.argsort(bowl)[:12]] - 0.5).max(0)  # of the 12 points the model is fitted to
    assert widths[0] == pytest.approx(0.1, rel=1e-6) and widths[1] == reach[1] > 1
    valley = 1 + (xy[:, 0] - xy[:, 1]) ** 2 + 0.01 * (xy[:, 0] + xy[:, 1] - 1) ** 2
    assert profile_halfwidths(xy, valley, 0.01) == pytest.approx([math.sqrt(0.2525)] * 2, rel=1e-6)
    # no extrapolation: the 12 points nearest a wide bowl's bottom reach ~0.5, less than its band
    wide = 1 + 0.001 * ((xy[:, 0] - 0.5) ** 2 + (xy[:, 1] - 0.5) ** 2)
    reach = np.abs(xy[np.argsort(wide)[:12]] - 0.5).max(0)
    assert profile_halfwidths(xy, wide, 0.01) == pytest.approx(reach) and (reach < math.sqrt(10)).all()
    low, high, _ = identified_range(xy[:, 0], valley, 0.01, log=False)
    assert high - low < 0.2
    few = np.full(40, np.nan)
    few[:11] = valley[:11]
    assert profile_halfwidths(xy, few, 0.01) is None and profile_halfwidths(xy, few + np.inf, 0.01) is None


def test_a_negative_best_takes_its_band_from_its_magnitude():
    """The bowl shifted down by 2: best -1, band objective <= -1 + 0.01 |-1| = -0.99, the same
    |log10 a + 1.5| <= 0.1 as the unshifted bowl's; a best of 0 keeps only its exact ties."""
    assert identified_range(A, BOWL - 2.0, 0.01)[:2] == pytest.approx((10.0 ** -1.58, 10.0 ** -1.42), rel=1e-12)
    assert identified_range([1.0, 2.0, 3.0], [0.0, 1e-9, 0.0]) == (1.0, 3.0, None)


def test_diverged_samples_are_never_in_the_range():
    """NaN at log10 a = -1.42 and +inf at -1.58 (both would be in the band), -inf far outside
    it (it would be the best): the range is what the finite samples give, +-0.04 decades."""
    objective = BOWL.copy()
    objective[np.isclose(np.log10(A), -1.42)] = np.nan
    objective[np.isclose(np.log10(A), -1.58)] = np.inf
    objective[np.isclose(np.log10(A), -2.98)] = -np.inf
    assert identified_range(A, objective)[:2] == pytest.approx((10.0 ** -1.54, 10.0 ** -1.46), rel=1e-12)
    assert identified_range(A, np.full(A.shape, np.nan)) is None


def test_the_identified_fraction_of_a_box():
    assert identified_fraction((1e-3, 1e-1), (1e-4, 1e0)) == pytest.approx(0.5)
    assert identified_fraction((2.0, 4.0), (0.0, 8.0), log=False) == 0.25
    assert identified_fraction((0.3, 0.3), (1e-4, 1.0)) == 0.0


def test_a_monotone_transform_ranks_alike_and_a_reversal_opposite():
    loss_k = np.random.default_rng(0).uniform(0.1, 3.0, 20)
    assert rank_agreement(loss_k, np.exp(loss_k)) == (1.0, 1.0, 20)
    assert rank_agreement(loss_k, 3 * loss_k + 1) == (1.0, 1.0, 20)
    assert rank_agreement(loss_k, -loss_k) == (-1.0, -1.0, 20)


def test_rank_agreement_on_a_case_counted_by_hand():
    """K's order 1..5, T's [2, 1, 4, 5, 3]: of the 10 pairs, (1,2), (3,5) and (4,5) are
    discordant, 7 concordant: tau = (7 - 3) / 10 = 0.4. Rank differences [-1, 1, -1, -1, 2]:
    rho = 1 - 6 * 8 / (5 * 24) = 0.6. Pairs with a NaN or inf on either side are dropped."""
    assert rank_agreement([1, 2, 3, 4, 5], [2, 1, 4, 5, 3]) == pytest.approx((0.6, 0.4, 5))
    with_diverged = rank_agreement([1, np.nan, 2, 3, 9, 4, 5], [2, 7, 1, 4, np.inf, 5, 3])
    assert with_diverged == pytest.approx((0.6, 0.4, 5))


def test_rank_agreement_is_undefined_below_three_pairs_or_for_a_constant():
    assert rank_agreement([1.0, 2.0, np.nan], [1.0, 2.0, 3.0]) == (None, None, 2)
    assert rank_agreement([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]) == (None, None, 3)
    assert rank_agreement([5.0, 5.0, 5.0, 5.0], [1.0, 2.0, 3.0, 4.0]) == (None, None, 4)


def test_the_shortest_safe_horizon_is_the_shortest_whose_whole_interval_is_within_budget():
    def cost(low, high, diverged=0):
        return {"mean": (low + high) / 2, "low": low, "high": high, "values": [], "n": 3, "diverged": diverged}

    horizons = [10, 30, 100, 300, 1000]
    costs = [cost(1.2, 1.5), cost(0.99, 1.02), cost(0.995, 1.008), cost(1.0, 1.03), cost(0.999, 1.001)]
    assert shortest_safe_horizon(horizons, costs) == 100  # 300 unsafe after it does not matter
    assert shortest_safe_horizon(horizons, costs, budget=0.05) == 30
    assert shortest_safe_horizon(horizons[::-1], costs[::-1]) == 100  # any order
    one_seed = {"mean": 1.0, "low": None, "high": None, "values": [1.0], "n": 1, "diverged": 0}
    assert shortest_safe_horizon(horizons, [None, one_seed, cost(1.0, 1.005, diverged=1), None, costs[4]]) == 1000
    assert shortest_safe_horizon(horizons, [cost(1.0, 1.02)] * 4 + [None]) is None
    assert shortest_safe_horizon([10, 20], [interval([1.0, 1.0, 1.0]), log_interval([1.0, 1.0])]) == 10
    with pytest.raises(ValueError):
        shortest_safe_horizon([10, 20], [None])


def test_a_finding_needs_the_whole_interval_on_one_side_of_its_threshold():
    words = ("above", "below")
    assert finding(interval([2.0, 2.2, 2.4]), 1.0, words) == "above"
    assert finding(interval([0.5, 0.6, 0.7]), 1.0, words) == "below"
    assert finding(interval([0.5, 1.5, 2.5]), 1.0, words) == "inconclusive"
    touching = {"mean": 0.95, "low": 0.9, "high": 1.0}  # its interval reaches the threshold
    assert finding(touching, 1.0, words) == "inconclusive" and finding(touching, 1.0, words, at_or_below=True) == "below"
    assert finding(interval([3.0]), 1.0, words) == "one seed" and finding(interval([np.nan]), 1.0, words) == "diverged"
