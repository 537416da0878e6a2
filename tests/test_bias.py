"""`shorthorizon bias` and `offline` on users' models (Flax NNX, Equinox), end to end at tiny scale."""

import json
import re

import numpy as np
import pytest

from shorthorizon.cli import main
from shorthorizon.data import make_fake_dataset

# seconds each on a CPU, most of it compiling: tiny horizons, 2 seeds, 6 samples and a zoom of 3
TINY = {"horizon": "20", "short": "5", "seeds": "2", "surface_samples": "6", "surface_chunk": "6",
        "zoom_samples": "3", "eval_batches": "2", "warm_start_steps": "3", "curve_points": "2"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    make_fake_dataset(folder, "mnist", n_train=500, n_test=1000, seed=0)
    return folder


def bias(data, out, task, **overrides):
    sets = {"data_dir": str(data), "verify": "false", **TINY, **overrides}
    return main(["bias", "--preset", "quick", "--dataset", "mnist", "--task", task, "--out", str(out),
                 *(a for k, v in sets.items() for a in ("--set", f"{k}={v}"))])


@pytest.mark.parametrize("task", ["example_tasks:nnx_net", "example_tasks:equinox_net"])
def test_bias_on_a_users_model(data, tmp_path, task, strict_json):
    """A Flax NNX and an Equinox model (BatchNorm, dropout) run through the command: every row
    holds each seed's fitted values, its loss and test error at T and its ratios to the
    reference, consistent with each other; the seeds really differ; the report and figure are
    written."""
    out = tmp_path / "run"
    assert bias(data, out, task) == 0
    summary = strict_json(out / "summary.json")
    assert summary["task"] == task and summary["fitted"] == ["lr", "decay_exponent"]
    rows = summary["rows"]
    assert set(rows) == {"reference", "K=5"}
    for row in rows.values():
        for stat in (*row["hyper"].values(), row["train_loss_at_T"], row["test_error_at_T"]):
            assert len(stat["values"]) == 2 and stat["n"] == 2
            assert stat["low"] <= stat["mean"] <= stat["high"]
        for name in summary["fitted"]:  # ratios are per seed, the short fit's over the reference's
            np.testing.assert_allclose(row["ratio_to_reference"][name]["values"],
                                       np.divide(row["hyper"][name]["values"], rows["reference"]["hyper"][name]["values"]))
    lr = rows["reference"]["hyper"]["lr"]["values"]
    assert lr[0] != lr[1]  # seeds differ in initialization, batches and samples
    assert (out / "bias.png").is_file()
    from shorthorizon.experiments import bias as experiment
    from shorthorizon.results import RunDir

    section = experiment.report(RunDir(out), prefix="bias/")
    assert task in section and "| reference |" in section and "(bias/bias.png)" in section


def test_a_fit_at_the_edge_of_the_box_is_flagged_with_the_key_that_widens_it(data, tmp_path, capsys):
    """A value within 0.05 decades of a bound is flagged, naming the bound and the key that
    widens the box; one well inside is not. End to end, a box narrower than that puts every
    fit at its edge: the summary, the report and stderr say so."""
    from shorthorizon.experiments import bias as experiment

    config = experiment.resolved(experiment.PRESETS["quick"])  # the heavy ball's box: lr in [1e-3, 10**-0.3]
    flags = experiment._edge(config, "K=5", 0, {"lr": 0.45, "decay_exponent": 3.0})
    assert len(flags) == 1 and "lr 0.45 is at the upper bound" in flags[0] and "--set lr0_range=LOW,HIGH" in flags[0]
    assert experiment._edge(config, "K=5", 0, {"lr": 0.03, "decay_exponent": 1e-2 * 1.05})[0].count("lower bound")
    assert experiment._edge(config, "K=5", 0, {"lr": 0.03, "decay_exponent": 3.0}) == []

    out = tmp_path / "edge"
    assert bias(data, out, "mlp", lr0_range="0.01,0.011", schedule="constant", seeds="1") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fitted"] == ["lr"]
    flags = [line for row in summary["rows"].values() for line in row["at_edge"]]
    assert len(flags) == 4 and all("--set lr0_range=" in line for line in flags)  # 2 fits x 2 bounds
    assert "--set lr0_range=" in capsys.readouterr().err
    assert "At the edge of the box" in experiment.report(__import__("shorthorizon.results").results.RunDir(out))


def test_a_model_with_the_wrong_output_width_is_one_line_before_any_training(data, tmp_path, capsys):
    assert bias(data, tmp_path / "bad", "example_tasks:too_few_logits") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(r"have shape \(\d+, 7\); wanted \(\d+, 10\)", err), err
    assert not (tmp_path / "bad").exists()


def test_bad_study_keys_name_the_key(data, tmp_path, capsys):
    for overrides, text in (({"short": "20"}, "config key 'short'"), ({"schedule": "cosine"}, "config key 'schedule'"),
                            ({"adapt": "weight_dacay"}, "config key 'adapt'")):
        assert bias(data, tmp_path / "x", "mlp", **overrides) == 2
        assert text in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("task", ["example_tasks:nnx_net", "example_tasks:equinox_net"])
def test_offline_runs_a_users_model(data, tmp_path, task):
    """`offline --task package.module:factory` (it read the built-in MLP's weights for their dtype)."""
    out = tmp_path / "offline"
    sets = {"data_dir": str(data), "verify": "false", "horizons": "5,10", "surface_samples": "4", "surface_chunk": "4",
            "init_lr0": "0.03", "init_decay_exponent": "1", "meta_steps": "2", "meta_chunk": "2", "eval_batches": "2",
            "warm_start_steps": "3", "curve_points": "2"}
    assert main(["offline", "--preset", "quick", "--dataset", "mnist", "--task", task, "--out", str(out),
                 *(a for k, v in sets.items() for a in ("--set", f"{k}={v}"))]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["horizons"]) == {"5", "10"} and (out / "figure6_long_runs.png").is_file()


def test_the_figure_shows_every_row_in_its_panels(tmp_path, figures_show_their_data):
    """The figure from a summary (plotting reads saved results only) whose two seeds' decay
    exponents, 0.5 and 60, are far apart, as two seeds of a tiny run (nnx_net) gave: the t
    interval of the two reaches below zero, and the log axis still spans the data, not 30 decades."""
    from shorthorizon.experiments import bias as experiment
    from shorthorizon.results import RunDir
    from shorthorizon.stats import interval

    def row(horizon, loss, lr, decay_exponent):
        return {"horizon": horizon, "train_loss_at_T": interval(loss),
                "hyper": {"lr": interval(lr), "decay_exponent": interval(decay_exponent)}}

    RunDir(tmp_path).write_summary({"horizon": 20, "seeds": 2, "fitted": ["lr", "decay_exponent"], "rows": {
        "reference": row(20, [1.2, 1.3], [0.1, 0.2], [1.0, 2.0]), "K=5": row(5, [1.5, 1.4], [0.3, 0.2], [0.5, 60.0])}})
    assert sorted(figures_show_their_data(experiment.plot, tmp_path)) == ["bias"]
