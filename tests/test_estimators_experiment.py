"""The ``shorthorizon estimators`` command end to end on a tiny problem, and resume."""

import dataclasses
import functools
import json
import shutil

import numpy as np
import pytest

from shorthorizon import config as configlib
from shorthorizon.cli import main
from shorthorizon.experiments import estimators as experiment
from shorthorizon.results import RunDir
from shorthorizon.stats import summarised

TINY = ["--set", "dim=10", "--set", "horizon=20", "--set", "truncations=5,20", "--set", "estimators=forward,pes,nres",
        "--set", "estimates=50", "--set", "smoothing_samples=2", "--set", "exact_steps=300",
        "--set", "fit_inner_steps=4000", "--set", "fit_particles=4", "--set", "seeds=1"]


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


def test_seeds_repeat_the_sampled_parts_around_one_exact_optimum(tiny_run, tmp_path, monkeypatch,
                                                                 figures_show_their_data, claims_find_their_numbers):
    """`seeds=2` beside the single-seed run, in a folder holding that run's units: seed 0's units
    are the single-seed run's (same arguments), so only seed 1's sampled units are computed; the
    exact optimum and fixed points are not recomputed for it. Seed 0's summary is the single
    run's, seed 1's measurements and fits differ, and the intervals are stats' of the seeds'
    values; the claims read them over both seeds."""
    config = dataclasses.replace(configlib.resolve(experiment.PRESETS, "quick", configlib.parse_overrides(TINY[1::2])),
                                 seeds=2)
    RunDir(tmp_path).write_config(config)
    shutil.copytree(tiny_run / "units", tmp_path / "units")
    computed, dispatch = [], experiment._dispatch
    monkeypatch.setattr(experiment, "_dispatch", lambda fn, **kw: computed.append((fn, kw["config"].seed))
                        or dispatch(fn, **kw))
    two = experiment.run(config, RunDir(tmp_path))
    assert sorted(set(computed)) == [("fit", 1), ("measure", 1), ("references", 1)]
    single = json.loads((tiny_run / "summary.json").read_text())
    assert two["per_seed"][0]["estimators"] == single["estimators"] == two["estimators"]
    for name, fit in two["per_seed"][1]["estimators"].items():
        assert fit["relative_bias"] != single["estimators"][name]["relative_bias"], name
        assert fit["fitted_hyper"] != single["estimators"][name]["fitted_hyper"], name
    assert set(two["intervals"]) == set(experiment.headlines(config)) >= {
        "estimators.pes_K5.relative_bias_from_expected", "estimators.forward_K5.fitted_loss_ratio"}
    for path, kind in experiment.headlines(config).items():
        values = [functools.reduce(dict.get, path.split("."), s) for s in two["per_seed"]]
        assert two["intervals"][path] == summarised(values, kind), path
    assert "| `estimators.pes_K5.relative_bias` |" in experiment.report(RunDir(tmp_path))
    assert sorted(figures_show_their_data(experiment.plot, tmp_path)) == ["bias_std", "fitted_schedules"]
    rows = claims_find_their_numbers("estimators", tmp_path)
    assert all(r["ours"].endswith("(2 seeds)") for r in rows), rows
