"""nqm.regime: greedy vs optimized on one problem, horizon curves, safe horizons; the
``nqm-map`` command end to end on a tiny grid."""

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shorthorizon.cli import main
from shorthorizon.experiments import nqm_map as experiment
from shorthorizon.nqm import (
    NQM,
    fit_schedule,
    greedy_schedule,
    horizon_curve,
    loss_components,
    ratios_of,
    regime,
    regime_problem,
    safe_horizon,
)
from shorthorizon.results import RunDir


def test_regime_problem_at_the_paper_cell_is_the_paper_problem():
    paper, cell = NQM.paper(), regime_problem(1000.0, 1.0)
    for field in ("curvature", "sigma2", "mean0", "var0"):
        np.testing.assert_allclose(getattr(cell, field), getattr(paper, field), rtol=1e-12)
    assert np.all(regime_problem(1.0, 0.5, dim=3).curvature == 1.0)  # spherical
    with pytest.raises(ValueError, match="kappa must be >= 1"):
        regime_problem(0.5, 1.0)


def test_greedy_with_momentum_on_a_deterministic_problem_is_conjugate_gradients(x64):
    """The deterministic edge: minimising the next loss over (lr, momentum) searches the plane
    x_t + span{∇f, x_t − x_{t−1}}, which holds CG's iterate, the minimiser over the larger
    Krylov space; so the greedy losses are CG's, down to 0 after d steps."""
    h = np.array([1.0, 0.7, 0.4, 0.2, 0.1, 0.05])
    x = np.linspace(1.0, 2.0, h.size)
    cg, r = [0.5 * np.sum(h * x**2)], -h * x
    p = r.copy()
    for _ in range(h.size):
        alpha = (r @ r) / (p @ (h * p))
        x, r_next = x + alpha * p, r - alpha * h * p
        p, r = r_next + (r_next @ r_next) / (r @ r) * p, r_next
        cg.append(0.5 * np.sum(h * x**2))
    greedy = greedy_schedule(NQM(h, sigma2=0.0, mean0=np.linspace(1.0, 2.0, h.size)), h.size)
    np.testing.assert_allclose(greedy.loss[:-1], cg[:-1], rtol=1e-7)
    assert greedy.loss[-1] < 1e-20 * greedy.loss[0] and cg[-1] < 1e-20 * cg[0]


def test_greedy_at_an_exact_minimum_is_not_nan(x64):
    """Deterministic spherical problem: lr 1 reaches the minimum in one step; 0/0 afterwards."""
    for momentum in (True, False):
        schedule = greedy_schedule(NQM(np.ones(3), mean0=2.0), 4, momentum=momentum)
        np.testing.assert_array_equal(schedule.loss[1:], 0.0)
        assert np.all(np.isfinite(schedule.lr)) and np.all(np.isfinite(schedule.momentum))


def test_fit_survives_a_loss_that_underflows_to_zero(x64):
    fit = fit_schedule(NQM(np.ones(3), mean0=2.0), 250, momentum=False, steps=50, init_lr=0.9)
    assert np.all(np.isfinite(fit.history))
    assert fit.schedule.loss[-1] < 1e-300  # 0 or subnormal: (1 - lr)^500 underflows


def test_horizon_curve_is_the_argmin_over_the_grid_at_every_horizon(x64):
    """Against a direct loop: for each k, the admissible grid point (no component ratio above
    1 up to step k) with the lowest loss after k steps, and its loss after T steps."""
    problem, horizon = regime_problem(100.0, 0.3, dim=6), 15
    lrs, momenta = np.geomspace(0.05, 3.0, 9), np.array([0.0, 0.5, 0.9])
    curve = horizon_curve(problem, horizon, lrs=lrs, momenta=momenta, batch_size=4)
    points = [(lr, mu) for mu in momenta for lr in lrs]
    rollouts, components_of = [], jax.jit(loss_components)
    for lr, mu in points:
        components = components_of(problem, jnp.full(horizon, lr), jnp.full(horizon, mu))
        rollouts.append((np.asarray(components.sum(-1)), np.asarray(ratios_of(components).max(-1))))
    for k in range(1, horizon + 1):
        scores = [loss[k] if worst[: k + 1].max() <= 1 else np.inf for loss, worst in rollouts]
        best = int(np.argmin(scores))
        assert (curve.lr[k - 1], curve.momentum[k - 1]) == points[best]
        np.testing.assert_allclose(curve.loss[k - 1], rollouts[best][0][-1], rtol=1e-12)


@pytest.mark.parametrize("kappa, noise", [(100.0, 1.0), (1000.0, 0.01)])
def test_best_fixed_on_the_grid_agrees_with_the_adam_fit(x64, kappa, noise):
    """The grid's constant schedule tuned at T and a 300-step Adam fit of (lr, momentum) under
    the same constraint: within 5% (the grid has 20 lrs per decade)."""
    problem, horizon = regime_problem(kappa, noise, dim=10), 40
    grid = horizon_curve(problem, horizon).loss[-1]
    adam = fit_schedule(problem, horizon, fixed=True, steps=300, adam_lr=0.03).schedule.loss[-1]
    np.testing.assert_allclose(grid, adam, rtol=0.05)


def test_safe_horizon_by_hand():
    # k:        1    2     3    4    5     6   (tolerance 10% of the last, 1.0)
    losses = [5.0, 1.05, 1.2, 1.0, 1.08, 1.0]
    assert int(safe_horizon(jnp.asarray(losses))) == 4  # k = 3 is the last above 1.1
    assert int(safe_horizon(jnp.asarray(losses), tolerance=0.25)) == 2
    assert int(safe_horizon(jnp.asarray([3.0, 2.0, 1.0]))) == 3  # only the last itself
    # batched over leading axes; each row judged against its own last entry (here 5.0)
    np.testing.assert_array_equal(safe_horizon(jnp.asarray([losses, losses[::-1]])), [4, 1])


def test_noise_is_initial_distance(x64):
    """σ² = s/h and E[θ(0)] = m give s times the losses of (m/√s, 1): same schedules, same
    ratio, same safe horizon (module docstring of nqm.regime)."""
    near = regime(regime_problem(100.0, 4.0, dim=10, mean0=10.0), 40, fit_steps=50)
    far = regime(regime_problem(100.0, 1.0, dim=10, mean0=5.0), 40, fit_steps=50)
    for name in ("greedy", "fixed", "optimized"):
        np.testing.assert_allclose(getattr(near, name), 4 * getattr(far, name), rtol=1e-6)
    np.testing.assert_allclose(near.ratio, far.ratio, rtol=1e-6)
    np.testing.assert_allclose(near.horizon.loss, 4 * far.horizon.loss, rtol=1e-9)
    assert int(near.safe_horizon) == int(far.safe_horizon)


# --- the nqm-map command ---------------------------------------------------------------------
TINY = ["--set", "dim=8", "--set", "horizon=20", "--set", "fit_steps=60", "--set", "kappas=1,100",
        "--set", "noises=0,1", "--set", "paper_kappa=100"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nqm-map")
    assert main(["nqm-map", "--out", str(out), *TINY]) == 0
    return out


def test_tiny_map_writes_summary_figures_and_report(tiny_run):
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert len(summary["cells"]) == 2 * 2 * 2  # kappa x noise x momentum
    greedy_of = jax.jit(greedy_schedule, static_argnames=("horizon", "momentum"))
    for cell in summary["cells"]:
        assert {"kappa", "noise", "momentum", "greedy", "fixed", "optimized"} <= set(cell)
        assert cell["max_component_ratio"] <= 1.0
        if cell["kappa"] == 1 and cell["noise"] == 1 and not cell["momentum"]:
            assert cell["greedy"] <= cell["optimized"] * (1 + 1e-9)  # Theorem 3: greedy optimal
        with jax.enable_x64(True):  # each cell is the problem its kappa and noise name
            problem = regime_problem(cell["kappa"], cell["noise"], dim=8)
            greedy = greedy_of(problem, horizon=20, momentum=cell["momentum"]).loss
        assert cell["greedy"] == pytest.approx(float(greedy[-1]), rel=1e-9)
        assert cell["initial"] == pytest.approx(float(greedy[0]), rel=1e-12)
        assert cell["fit_above_fixed"] == (cell["optimized"] > cell["fixed"])
    paper = summary["paper_cell"]
    assert (paper["kappa"], paper["noise"]) == (100.0, 1.0)
    assert paper["ratio"] == pytest.approx(paper["greedy"] / paper["optimized"])
    assert len(summary["safe_horizon"]) == 8
    assert all(1 <= s["horizon"] <= 20 for s in summary["safe_horizon"])
    assert set(summary["edges"]) == {"spherical_sgd", "deterministic_momentum",
                                     "deterministic_sgd", "spherical_momentum"}
    for name in ("map", "horizon_curves"):
        assert (tiny_run / f"{name}.png").stat().st_size > 0 and (tiny_run / f"{name}.pdf").exists()
    text = experiment.report(RunDir(tiny_run), prefix="nqm-map/")
    assert "nqm-map/map.png" in text and "nqm-map/horizon_curves.png" in text


def test_tiny_map_resumes_without_recomputing(tiny_run, monkeypatch):
    def fail(**kwargs):
        raise AssertionError("a stored unit was recomputed")

    monkeypatch.setattr(experiment, "row_unit", fail)
    before = json.loads((tiny_run / "summary.json").read_text())
    assert main(["nqm-map", "--out", str(tiny_run), *TINY]) == 0
    assert json.loads((tiny_run / "summary.json").read_text())["cells"] == before["cells"]


def test_paper_cell_off_the_grid_is_a_clear_error(tmp_path, capsys):
    assert main(["nqm-map", "--out", str(tmp_path), *TINY, "--set", "paper_noise=3"]) == 2
    assert "the paper's cell (paper_kappa=100, paper_noise=3) is not on the grid" in capsys.readouterr().err


def test_readme_regime_example_runs(capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (code,) = re.findall(r"```py\n(.*?)```", readme, re.S)
    exec(code, {})
    numbers = re.search(r"greedy (\S+), fixed (\S+), optimized (\S+), ratio (\S+), safe horizon "
                        r"(\d+) of 100", capsys.readouterr().out)
    greedy, fixed, optimized, ratio = (float(x.rstrip(",")) for x in numbers.groups()[:4])
    assert ratio == pytest.approx(greedy / optimized, rel=0.02)  # printed to 3 digits
    assert 1 <= int(numbers.group(5)) <= 100 and min(greedy, fixed, optimized) > 0


def test_every_map_figure_shows_its_data_and_every_claim_its_number(tiny_run, figures_show_their_data,
                                                                   claims_find_their_numbers):
    assert sorted(figures_show_their_data(experiment.plot_all, tiny_run)) == ["horizon_curves", "map"]
    claims_find_their_numbers("nqm-map", tiny_run)
