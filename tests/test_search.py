"""The adaptive search (:mod:`shorthorizon.meta.search`) on synthetic log-space surfaces with a
known minimizer: it finds it to a stated tolerance within a stated number of evaluations, at
least as well as the blind search (log-uniform samples + zoom) at equal evaluations, from the
seed alone, through diverged points, onto a box edge, and in a momentum's log(1 − μ)."""

import numpy as np
import pytest

from shorthorizon import optim
from shorthorizon.meta import search

PAPER = optim.LogSpace((("lr", 1e-3, 10 ** -0.3), ("decay_exponent", 1e-2, 10 ** 2.3)))
MOMENTUM = optim.LogSpace((("lr", 1e-3, 10 ** -0.3), ("momentum", 0.0, 0.999)))
COARSE, POPULATION, GENERATIONS = 16, 6, 4  # 40 evaluations in all
TOLERANCE = 0.05  # decades


def decades(space, points):
    _, low, high = search.log_box(space)
    return low + search.to_unit(space, points) * (high - low)


def bowl(space, center, scales=(1.0, 1.0), bend=0.0):
    """0.3 + 0.05 (steep-sided valley in decades from ``center``) + a deterministic ripple of
    1e-5 (a noise floor far below the valley's rise at the tolerance, 0.05 x 0.05² = 1.25e-4);
    ``bend`` != 0 makes it asymmetric and curved, not a quadratic."""
    center = np.asarray(center)

    def objective(points):
        u = decades(space, points) - center
        u2 = u[:, 1] - bend * u[:, 0] ** 2
        valley = scales[0] * u[:, 0] ** 2 if bend == 0 else np.expm1(2 * u[:, 0]) - 2 * u[:, 0]
        return 0.3 + 0.05 * (valley + scales[1] * u2 ** 2) + 1e-5 * np.sin(37 * u[:, 0]) * np.sin(23 * u[:, 1])
    return objective


def coarse(space, objective, seed):
    points = search.from_unit(space, np.random.default_rng([seed, 1]).uniform(size=(COARSE, 2)))
    return points, objective(points)


def run(space, objective, seed, **kw):
    start, losses = coarse(space, objective, seed)
    return search.search(objective, space, seed, POPULATION * GENERATIONS, POPULATION, start, losses, **kw)


def best_decades(space, out):
    return decades(space, {k: [v] for k, v in out["best"].items()})[0]


@pytest.mark.parametrize("seed", range(5))
def test_finds_a_known_minimizer_within_40_evaluations(seed):
    minimizer = np.array([-1.5, 0.5])  # lr 10^-1.5, decay exponent 10^0.5
    out = run(PAPER, bowl(PAPER, minimizer, scales=(1.0, 10.0)), seed)
    assert len(out["losses"]) == COARSE + POPULATION * GENERATIONS == 40
    assert np.all(np.abs(best_decades(PAPER, out) - minimizer) < TOLERANCE)


@pytest.mark.parametrize("surface", ["bowl", "curved"])
def test_at_least_as_good_as_blind_search_at_equal_evaluations(surface):
    objective = bowl(PAPER, [-1.2, 0.8]) if surface == "bowl" else bowl(PAPER, [-1.0, 0.3], (1.0, 3.0), bend=1.5)
    ours = [run(PAPER, objective, seed)["best_loss"] for seed in range(6)]
    blind = [search.blind(objective, PAPER, seed, 32, 8)["best_loss"] for seed in range(6)]
    assert np.all(np.array(ours) <= np.array(blind))


def test_reproducible_from_the_seed_and_resumable_from_arrays(tmp_path):
    objective = bowl(PAPER, [-1.0, 1.0])
    start, losses = coarse(PAPER, objective, 3)
    a, b = run(PAPER, objective, 3), run(PAPER, objective, 3)
    for name in PAPER.names:
        np.testing.assert_array_equal(a["points"][name], b["points"][name])
    np.testing.assert_array_equal(a["losses"], b["losses"])
    other = run(PAPER, objective, 4)
    assert not np.array_equal(a["points"]["lr"][COARSE:], other["points"]["lr"][COARSE:])
    by_horizon = [search.ask(search.init(PAPER, (3, h), start, losses, POPULATION))["lr"] for h in (100, 1000)]
    assert not np.array_equal(*(p[1:] for p in by_horizon))  # one stream per (seed, horizon); the first: the model's

    state = search.init(PAPER, 3, start, losses, POPULATION)
    for generation in range(GENERATIONS):
        points = search.ask(state)
        for name in PAPER.names:  # asking is pure: no hidden random state
            np.testing.assert_array_equal(points[name], search.ask(state)[name])
        state = search.tell(state, points, objective(points))
        np.savez(tmp_path / "state.npz", **state.arrays())  # a unit of work stored, then resumed
        with np.load(tmp_path / "state.npz") as stored:
            state = search.SearchState.from_arrays(dict(stored))
    resumed = search.result(state)
    for name in PAPER.names:
        np.testing.assert_array_equal(resumed["points"][name], a["points"][name])
    assert resumed["best"] == a["best"]


def test_diverged_points_rank_last_and_do_not_break_it():
    smooth = bowl(PAPER, [-0.6, 0.5])

    def objective(points):  # diverges (inf) past an lr cliff, NaN on a band of decay exponents
        x = decades(PAPER, points)
        loss = smooth(points)
        loss = np.where(x[:, 0] > -0.7, np.inf, loss)
        return np.where(np.abs(x[:, 1] - 1.8) < 0.1, np.nan, loss)

    out = run(PAPER, objective, 0)
    assert not np.all(np.isfinite(out["losses"]))  # some did diverge
    assert np.isfinite(out["best_loss"]) and best_decades(PAPER, out)[0] <= -0.7
    assert out["best_loss"] == np.nanmin(np.where(np.isfinite(out["losses"]), out["losses"], np.nan))
    assert best_decades(PAPER, out)[0] > -0.7 - TOLERANCE  # at the cliff, where the constrained optimum is

    start = {"lr": np.array([0.01, 0.1], np.float32), "decay_exponent": np.array([1.0, 3.0], np.float32)}
    state = search.init(PAPER, 0, start, [np.nan, np.inf], POPULATION)  # nothing finite yet: the box's centre
    np.testing.assert_allclose(search.to_unit(state, search.ask(state))[0], [0.5, 0.5], atol=1e-6)
    assert search.result(state)["best"] is None


def test_a_hint_takes_the_first_samples_place_until_it_is_seen():
    """``ask(state, hint)``: the model's proposal and the draws are those of ``ask(state)``, the
    first sample is the hint (a neighbouring search's best, e.g. a shorter horizon's) while this
    search has not scored it, and after it has, the generation is the plain one."""
    objective = bowl(PAPER, [-1.2, -0.2])
    start, losses = coarse(PAPER, objective, 2)
    state = search.init(PAPER, 2, start, losses, POPULATION)
    hint = {"lr": 10 ** -1.3, "decay_exponent": 1.0}
    plain, hinted = search.ask(state), search.ask(state, hint)
    for name in PAPER.names:
        np.testing.assert_array_equal(np.delete(hinted[name], 1), np.delete(plain[name], 1))
        assert hinted[name][1] == pytest.approx(hint[name], rel=1e-6)
    state = search.tell(state, hinted, objective(hinted))
    again = search.ask(state, {n: float(hinted[n][1]) for n in PAPER.names})
    for name in PAPER.names:
        np.testing.assert_array_equal(again[name], search.ask(state)[name])


def test_an_optimum_beyond_the_box_is_found_on_its_edge():
    objective = bowl(PAPER, [0.3, -2.5])  # lr 10^0.3 > 10^-0.3, decay exponent 10^-2.5 < 1e-2
    out = run(PAPER, objective, 1)
    for name, low, high in PAPER.ranges:
        assert np.all((out["points"][name] >= np.float32(low)) & (out["points"][name] <= np.float32(high)))
    assert out["best"] == {"lr": float(np.float32(10 ** -0.3)), "decay_exponent": float(np.float32(1e-2))}


@pytest.mark.parametrize("seed", range(3))
def test_momentum_searched_in_log_one_minus(seed):
    minimizer = np.array([-2.0, -1.3])  # lr 0.01, momentum 1 - 10^-1.3 ≈ 0.95
    out = run(MOMENTUM, bowl(MOMENTUM, minimizer, scales=(1.0, 3.0)), seed)
    assert np.all((out["points"]["momentum"] >= 0) & (out["points"]["momentum"] <= np.float32(0.999)))
    assert np.all(np.abs(best_decades(MOMENTUM, out) - minimizer) < TOLERANCE)
    assert abs(out["best"]["momentum"] - (1 - 10 ** -1.3)) < 0.006


def test_unit_coordinates():
    points = {"lr": np.array([1e-3, 10 ** -0.3], np.float32), "momentum": np.array([0.999, 0.0], np.float32)}
    unit = search.to_unit(MOMENTUM, points)
    np.testing.assert_allclose(unit, [[0.0, 0.0], [1.0, 1.0]], atol=1e-5)  # 1 - μ from 1e-3 to 1 (float32 μ)
    back = search.from_unit(MOMENTUM, np.array([[-0.5, 2.0], [0.5, 0.5]]))  # clipped onto the box
    np.testing.assert_allclose(back["lr"], [1e-3, 10 ** -1.65], rtol=1e-6)
    np.testing.assert_allclose(back["momentum"], [0.0, 1 - 10 ** -1.5], rtol=1e-6)
    with pytest.raises(ValueError, match="below 1"):
        search.log_box(optim.LogSpace((("momentum", 0.0, 1.0),)))
