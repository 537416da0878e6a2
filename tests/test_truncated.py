"""Windowed estimators on the offline task (`shorthorizon truncated`): memory, budget, results."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shorthorizon import config as configlib
from shorthorizon.cli import main
from shorthorizon.data import make_fake_dataset
from shorthorizon.experiments import pipeline
from shorthorizon.experiments import truncated as experiment
from shorthorizon.hypergrad import Data, batches, make_estimator
from shorthorizon.meta import offline
from shorthorizon.optim import inverse_time, momentum
from shorthorizon.results import RunDir
from shorthorizon.stats import summarised
from shorthorizon.tasks import mlp


def test_windowed_memory_does_not_grow_with_the_horizon():
    """A meta-step's compiled program holds one window, whatever T; full reverse mode (K = T)
    holds the whole run (the comparison shows the measurement can see growth)."""
    task = mlp((4, 4, 1), hidden=(8,))
    key = jax.random.PRNGKey(0)
    data = Data(jax.random.uniform(key, (64, 4, 4, 1)), jnp.arange(64) % 10)
    paper = offline.Offline(task, momentum(inverse_time(5000.0)), batch_size=8)
    problem = offline.warm_start(paper, data, key, batches(data, key, 2, 8, replace=False), 2,
                                 {"lr": 0.1, "momentum": 0.9})
    raw = paper.space.to_raw({"lr": jnp.asarray(0.03), "decay_exponent": jnp.asarray(1.0)})

    def temp_bytes(horizon, name, truncation):
        est = paper.windowed(problem, make_estimator(name, truncation=truncation, particles=2, sigma=0.1), horizon)
        state = jax.eval_shape(est.init, raw, key)  # shapes only: nothing runs
        return jax.jit(est.estimate).lower(state, raw, key).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(200, "pes", 5) == temp_bytes(20, "pes", 5)
    assert temp_bytes(200, "reverse", 200) > 5 * temp_bytes(20, "reverse", 20)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The command on a tiny fake MNIST: the reference, truncated forward mode and PES (the
    claims table compares those three; the other estimators run the same code, and their cost
    accounting is tested in test_estimators)."""
    root = tmp_path_factory.mktemp("truncated")
    make_fake_dataset(root / "data", "mnist", n_train=500, n_test=1000, seed=0)
    config = dataclasses.replace(
        experiment.PRESETS["quick"], dataset="auto", data_dir=str(root / "data"), verify=False, horizon=40,
        truncation=10, estimators=("forward", "pes"), fit_particles=2, fit_inner_steps=400, warm_start_steps=5,
        eval_batches=2, surface_samples=4, surface_chunk=2, curve_points=4, meta_chunk=5)
    sets = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value != getattr(experiment.PRESETS["quick"], field.name):
            sets += ["--set", f"{field.name}={','.join(map(str, value)) if isinstance(value, tuple) else value}"]
    out = root / "run"
    assert main(["truncated", "--preset", "quick", "--out", str(out), *sets]) == 0
    return out, sets


def test_every_fit_spends_the_same_budget_and_is_judged_by_the_loss_at_T(run, strict_json, capsys):
    out, _ = run
    summary = strict_json(out / "summary.json")
    assert summary["dataset"] == "mnist" and summary["horizon"] == 40 and summary["truncation"] == 10
    fits = summary["estimators"]
    assert list(fits) == ["smd_full", "forward_K10", "pes_K10"]
    for name, fit in fits.items():
        assert {"truncation", "lr0", "decay_exponent", "final_train_loss", "final_test_error", "inner_steps",
                "wall_time_s"} <= set(fit)
        # whole meta-steps within the budget: at most one meta-step's cost (K x particles x 2) short
        assert 400 - 10 * 2 * 2 < fit["inner_steps"] <= 400, name
        assert 1e-3 <= fit["lr0"] <= 10**-0.3 and 1e-2 <= fit["decay_exponent"] <= 10**2.3
        # a line per value within 0.05 decades of a bound of the box
        near = [abs(np.log10(fit[k] / bound)) < 0.05 for k, box in (("lr0", (1e-3, 10**-0.3)),
                                                                    ("decay_exponent", (1e-2, 10**2.3))) for bound in box]
        assert len(fit["at_edge"]) == sum(near), name
        # the yardstick is the long run's loss at T, stored with the fit's curves
        curves = RunDir(out).load_curves(f"fit_{name}")
        assert curves["step"][-1] == 40 and curves["train_loss"][-1] == pytest.approx(fit["final_train_loss"])
        assert fit["train_loss_ratio"] == pytest.approx(fit["final_train_loss"] / fits["smd_full"]["final_train_loss"])
    assert fits["smd_full"]["truncation"] is None and fits["pes_K10"]["truncation"] == 10
    assert fits["smd_full"]["meta_steps"] == 10  # 400 / T
    # after staggering particle 1 by 2 of the 4 windows; a meta-step is K x particles x trajectories
    assert fits["forward_K10"]["meta_steps"] == (400 - 2 * 10) // (10 * 2)
    assert fits["pes_K10"]["meta_steps"] == (400 - 2 * 10 * 2) // (10 * 2 * 2)
    for name in ("fits.png", "fits.pdf", "long_runs.png", "long_runs.pdf"):
        assert (out / name).is_file(), name
    section = experiment.report(RunDir(out), prefix="truncated/")
    assert "(truncated/fits.png)" in section and "| pes_K10 | mean training loss over the run |" in section


def test_rerun_resumes_without_recomputing(run, monkeypatch, strict_json):
    out, sets = run
    before = strict_json(out / "summary.json")

    def recomputed(**kwargs):
        raise AssertionError("a finished unit was recomputed")

    monkeypatch.setattr(experiment, "fit_unit", recomputed)
    for unit in ("surface_unit", "long_run_unit"):
        monkeypatch.setattr(pipeline, unit, recomputed)
    assert main(["truncated", "--preset", "quick", "--out", str(out), *sets]) == 0
    after = strict_json(out / "summary.json")
    assert {k: v for k, v in after.items() if k != "wall_time_s"} == {k: v for k, v in before.items()
                                                                      if k != "wall_time_s"}


def test_bad_config_names_the_key(tmp_path, capsys):
    assert main(["truncated", "--preset", "quick", "--out", str(tmp_path / "a"), "--set", "truncation=7"]) == 2
    assert "'truncation' (7) must divide the horizon (3000)" in capsys.readouterr().err
    assert main(["truncated", "--preset", "quick", "--out", str(tmp_path / "b"), "--set", "estimators=forward,adam"]) == 2
    assert "config key 'estimators' must be one or more distinct values, each one of forward, reverse, fd, es, pes, nres" in \
        capsys.readouterr().err
    assert main(["truncated", "--preset", "quick", "--out", str(tmp_path / "c"), "--set", "estimators=forward,fd"]) == 2
    assert "config key 'estimators': fd (central differences) needs float64" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_every_figure_shows_its_data_and_every_claim_its_number(run, figures_show_their_data,
                                                               claims_find_their_numbers):
    assert sorted(figures_show_their_data(experiment.plot, run[0])) == ["fits", "long_runs"]
    claims_find_their_numbers("truncated", run[0])


def _sets(sets: list[str], *changes: str) -> list[str]:
    """``sets`` (``--set KEY=VALUE`` pairs) with each of ``changes`` (KEY=VALUE) in place of its
    key's (the command line refuses a key given twice)."""
    changed = {change.split("=")[0] for change in changes}
    kept = [arg for flag, pair in zip(sets[::2], sets[1::2]) if pair.split("=")[0] not in changed for arg in (flag, pair)]
    return kept + [arg for change in changes for arg in ("--set", change)]


def _untimed(summary):
    """A summary without its timings, nor the keys a run over seeds adds."""
    if isinstance(summary, dict):
        return {k: _untimed(v) for k, v in summary.items() if "time" not in k and k not in ("seeds", "intervals")}
    return summary


def test_seeds_are_independent_runs_with_intervals_and_resume_one_unit(run, tmp_path, capsys, rerun_seeds,
                                                                      figures_show_their_data):
    """`seeds=2` beside the single-seed run: seed 0's summary is that run's, seed 1's differs;
    each fit's headline numbers have stats' interval of the seeds' values; each fit's printed
    cost doubles; after seed 1's last long run is deleted, a rerun recomputes it alone."""
    out, sets = run
    config = dataclasses.replace(configlib.resolve(experiment.PRESETS, "quick", configlib.parse_overrides(sets[1::2])),
                                 dataset="mnist", seeds=2)
    two = experiment.run(config, RunDir(tmp_path))
    assert f"{experiment.REFERENCE} {2 * experiment.fit_cost(config, 'reference'):.3g}, forward " \
           f"{2 * experiment.fit_cost(config, 'forward'):.3g}, pes " \
           f"{2 * experiment.fit_cost(config, 'pes'):.3g}; 2 seeds, " in capsys.readouterr().err
    single = RunDir(out).read_summary()
    top = {k: v for k, v in two.items() if k != "per_seed"}
    assert _untimed(two["per_seed"][0]) == _untimed(single) == _untimed(top)
    assert _untimed(two["per_seed"][1]["estimators"]) != _untimed(two["per_seed"][0]["estimators"])
    assert set(two["intervals"]) == set(experiment.headlines(config)) >= {
        "estimators.pes_K10.decay_exponent", "estimators.pes_K10.train_loss_ratio", "estimators.smd_full.lr0"}
    for path, kind in experiment.headlines(config).items():
        values = [functools.reduce(dict.get, path.split("."), s) for s in two["per_seed"]]
        assert two["intervals"][path] == summarised(values, kind), path
    assert "| fit (seed 0) |" in experiment.report(RunDir(tmp_path)) and (tmp_path / "fit_pes_K10_s1.npz").is_file()
    assert sorted(figures_show_their_data(experiment.plot, tmp_path)) == ["fits", "long_runs"]

    (tmp_path / "units" / "long_pes_K10_s1.npz").unlink()
    again, calls = rerun_seeds(experiment, ("fit_unit", (pipeline, "surface_unit")),
                               (pipeline, "long_run_unit"),
                               lambda: experiment.run(config, RunDir(tmp_path)))
    assert calls == [1] and _untimed(again) == _untimed(two) and again["intervals"] == two["intervals"]


def test_a_schedule_laid_over_the_run(run, tmp_path, strict_json, figures_show_their_data):
    """``--set schedule=cosine``: every fit (the reference and the windowed ones) fits the one
    value the schedule has, laid over the whole run T; the ratios, the report's columns and the
    figures follow the fitted values."""
    _, sets = run
    out = tmp_path / "cosine"
    assert main(["truncated", "--preset", "quick", "--out", str(out), *_sets(sets, "schedule=cosine")]) == 0
    summary = strict_json(out / "summary.json")
    for fit in summary["estimators"].values():
        assert "decay_exponent" not in fit and 1e-3 <= fit["lr0"] <= 10**-0.3
        assert {k for k in fit if k.endswith("_ratio")} == {"lr0_ratio", "train_loss_ratio", "wall_time_ratio"}
    reference = summary["estimators"]["smd_full"]
    assert reference["lr0_ratio"] == 1 and reference["meta_steps"] == 400 // 40
    section = experiment.report(RunDir(out))
    assert "a cosine schedule over T, fitted: lr0" in section and "| fit | objective | lr0 | train loss at T |" in section
    figures_show_their_data(experiment.plot, out)


def test_a_fit_at_the_edge_of_its_box_fits_again_in_a_wider_one(run, tmp_path, strict_json, capsys):
    """A box too narrow for every fit (lr0 in [0.01, 0.0101], the start 0.03 outside it: the fits
    start at its bound, said on stderr): each fit ends at an edge, is fitted again (``widen``
    round 1: the bounds it sat at moved ``zoom_width`` decades out), and the refit, inside the
    wider box, is what the summary, the long run and the report hold."""
    _, sets = run
    out = tmp_path / "narrow"
    capsys.readouterr()
    assert main(["truncated", "--preset", "quick", "--out", str(out),
                 *_sets(sets, "lr0_range=0.01,0.0101", "estimators=forward", "widen=1")]) == 0
    err = capsys.readouterr().err
    assert "init_lr0 0.03 lies outside the box of lr [0.01, 0.0101]: the fit starts at its nearest bound" in err
    assert float(RunDir(out).load_unit("fit_smd_full")["lr"][0]) == pytest.approx(0.0101)
    summary = strict_json(out / "summary.json")
    for name in ("smd_full", "forward_K10"):
        fit, refit = summary["estimators"][name], RunDir(out).load_unit(f"widen1_fit_{name.split('_K')[0]}")
        assert f"{name}, seed 0: the fit is at the edge of its box; fitting again in lr [" in err
        assert fit["widened"].startswith("lr [") and fit["lr0"] == pytest.approx(float(refit["lr"][-1]))
        low, high = (float(x) for x in fit["widened"].split("[")[1].split("]")[0].split(", "))
        assert low <= fit["lr0"] <= high and (low < 0.01 / 1.9 or high > 0.0101 * 1.9)  # 10^0.3 ~ 2 out
    assert "**Widened**" in experiment.report(RunDir(out))
