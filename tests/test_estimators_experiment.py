"""The ``shorthorizon estimators`` command end to end on a tiny problem, and resume."""

import json

import numpy as np
import pytest

from shorthorizon.cli import main
from shorthorizon.experiments import estimators as experiment
from shorthorizon.results import RunDir

TINY = ["--set", "dim=10", "--set", "horizon=20", "--set", "truncations=5,20", "--set", "estimators=forward,pes,nres",
        "--set", "estimates=50", "--set", "smoothing_samples=2", "--set", "exact_steps=300",
        "--set", "fit_inner_steps=4000", "--set", "fit_particles=4"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("estimators")
    assert main(["estimators", "--out", str(out), *TINY]) == 0
    return out


def test_summary_holds_every_estimator_against_the_exact_truth(tiny_run):
    s = json.loads((tiny_run / "summary.json").read_text())
    assert set(s["estimators"]) == {"forward_K5", "forward_full", "pes_K5", "pes_full", "nres_K5", "nres_full"}
    assert s["exact"]["full_forward_relative_error"] < 1e-10
    assert s["exact"]["full_reverse_relative_error"] < 1e-10
    # the exact optimum is stationary: its gradient is tiny beside the one at a setting away from it
    away = s["estimators"]["forward_full"]["points"][0]["exact"]
    assert np.linalg.norm(s["exact"]["gradient_at_optimum"]) < 1e-3 * np.linalg.norm(away)
    for name, v in s["estimators"].items():
        assert {"truncation", "relative_bias", "relative_bias_from_expected", "cosine", "std",
                "relative_variance_x_work", "run_relative_variance_x_work", "fitted_hyper", "fitted_loss",
                "fixed_point_loss", "converged"} <= set(v)
        assert v["fitted_loss"] >= s["exact"]["loss"] * (1 - 1e-9)  # nothing beats the exact optimum
        for point in v["points"]:  # each estimator within Monte-Carlo error of its exact expectation
            assert np.all(np.abs(point["z_from_expected"]) < 5), (name, point)
    # the truncated estimator's fixed point is its own, the unbiased ones' the exact optimum
    assert s["estimators"]["forward_K5"]["fixed_point_loss"] > s["exact"]["loss"]
    for name in ("forward_full", "pes_K5", "nres_K5"):
        assert s["estimators"][name]["fixed_point_loss"] == s["exact"]["loss"]
    # the truncated estimate does not vanish at the optimum; the full-run one does (within error)
    assert np.max(np.abs(s["estimators"]["forward_K5"]["points"][-1]["z_from_zero"])) > 10
    for name in ("forward_full", "pes_K5", "nres_K5"):
        assert np.all(np.abs(s["estimators"][name]["points"][-1]["z_from_zero"]) < 5)
    for figure in ("bias_std", "fitted_schedules"):
        assert (tiny_run / f"{figure}.png").stat().st_size > 0


def test_rerun_resumes_from_stored_units_and_report_reads_them(tiny_run):
    before = json.loads((tiny_run / "summary.json").read_text())
    assert main(["estimators", "--out", str(tiny_run), *TINY]) == 0
    after = json.loads((tiny_run / "summary.json").read_text())
    assert after["estimators"] == before["estimators"]
    text = experiment.report(RunDir(tiny_run), prefix="estimators/")
    assert "estimators/bias_std.png" in text and "pes_K5" in text and "nres_K5" in text
    # the report says what the budget does, and which fits it stopped
    assert "inner steps over all its particles" in text
    unconverged = [n for n, v in after["estimators"].items() if not v["converged"]]
    assert all(f"{n} (" in text.split("Not converged: ")[1] for n in unconverged) if unconverged else \
        "Every fit is within 2% of its fixed point" in text


def test_every_figure_shows_its_data_and_every_claim_its_number(tiny_run, figures_show_their_data,
                                                               claims_find_their_numbers):
    assert sorted(figures_show_their_data(experiment.plot, tiny_run)) == ["bias_std", "fitted_schedules"]
    claims_find_their_numbers("estimators", tiny_run)
