"""The ``shorthorizon nqm`` command end to end on a reduced problem, resume, and bad input."""

import json
import shutil

import pytest

from shorthorizon.cli import main
from shorthorizon.experiments import nqm as experiment
from shorthorizon.results import RunDir


# the paper's problem at a tenth of its size and a fifth of its horizon (the presets run the paper's)
REDUCED = [f"--set={kv}" for kv in ("dim=100", "horizon=50", "fit_steps=200", "fixed_fit_steps=100",
                                     "tail_dims=10", "fig1_steps=30", "fig2_horizons=1,10,50",
                                     "fig2_decay_steps=20")]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nqm")
    assert main(["nqm", "--out", str(out), *REDUCED]) == 0
    return out


def test_quick_preset_writes_results(quick_run):
    for name in ("config.json", "summary.json", "fig2.npz", "fig3_noisy.npz"):
        assert (quick_run / name).exists()
    for figure in ("fig1", "fig2", "fig3_noisy", "fig3_deterministic"):
        assert (quick_run / f"{figure}.png").stat().st_size > 0
        assert (quick_run / f"{figure}.pdf").exists()
    summary = json.loads((quick_run / "summary.json").read_text())
    for setting in ("noisy", "deterministic"):
        assert set(summary[setting]) >= {"greedy", "fixed", "optimized"}
        assert {"lr", "momentum", "final_loss"} <= set(summary[setting]["fixed"])
        assert summary[setting]["optimized"]["max_component_ratio"] <= 1.0
        # Fitting at the horizon beats the greedy (short-horizon) schedule on the noisy problem.
    noisy = summary["noisy"]
    assert noisy["optimized"]["final_loss"] < noisy["fixed"]["final_loss"] < noisy["greedy"]["final_loss"]
    assert "paper" not in summary  # a reduced problem is not the paper's
    assert summary["wall_time_s"] > 0


def test_report_shows_paper_numbers_beside_the_paper_problem_only(quick_run, tmp_path):
    text = experiment.report(RunDir(quick_run), prefix="nqm/")
    assert "nqm/fig3_noisy.png" in text and "nqm/fig1.png" in text
    assert "63.86" not in text and "paper's numbers are not shown" in text
    # the same saved results, stored as if computed on the paper's problem
    shutil.copytree(quick_run, tmp_path / "run")
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    paper = {k: getattr(experiment.PRESETS["paper"], k) for k in experiment.PAPER_KEYS}
    stored["config"].update(paper)
    (tmp_path / "run" / "config.json").write_text(json.dumps(stored))
    text = experiment.report(RunDir(tmp_path / "run"), prefix="nqm/")
    assert "63.86" in text and "4.25" in text and "not shown" not in text
    # the paper's problem, its schedules fitted with fewer meta-steps: not the paper's numbers
    stored["config"].update(fit_steps=1)
    (tmp_path / "run" / "config.json").write_text(json.dumps(stored))
    text = experiment.report(RunDir(tmp_path / "run"), prefix="nqm/")
    assert "63.86" not in text and "fit_steps 1, not 500" in text


def test_rerun_resumes_without_recomputing(quick_run, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a stored unit was recomputed")

    monkeypatch.setattr(experiment, "_dispatch", fail)
    before = json.loads((quick_run / "summary.json").read_text())
    assert main(["nqm", "--out", str(quick_run), *REDUCED]) == 0
    after = json.loads((quick_run / "summary.json").read_text())
    assert after["noisy"] == before["noisy"]


def test_another_config_is_refused_and_the_folder_left_as_it_was(quick_run, capsys, strict_json):
    before = {p: p.read_bytes() for p in quick_run.rglob("*") if p.is_file()}
    strict_json(quick_run)  # every JSON file parses strictly
    assert main(["nqm", "--out", str(quick_run), *REDUCED, "--set", "dim=40", "--set", "horizon=30"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"shorthorizon nqm: error: {quick_run} holds results of a different config (dim: 100 -> 40; "
        "horizon: 50 -> 30); use a new --out, or --force to start over (deletes the results there)"]
    assert {p: p.read_bytes() for p in quick_run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "nope"], "invalid choice"),
        (["--set", "no_such_key=1"], "unknown config key 'no_such_key'"),
        (["--set", "horizon=abc"], "bad value 'abc' for config key 'horizon'"),
        (["--set", "horizon=0"], "config key 'horizon' must be positive and finite, got 0"),
    ],
)
def test_cli_bad_input_gives_clear_error(tmp_path, capsys, argv, message):
    try:
        code = main(["nqm", "--out", str(tmp_path / "run"), *argv])
    except SystemExit as exit:  # argparse rejects unknown presets itself
        code = exit.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_every_figure_shows_its_data_and_every_claim_its_number(quick_run, figures_show_their_data,
                                                               claims_find_their_numbers):
    claims_find_their_numbers("nqm", quick_run)
    assert sorted(figures_show_their_data(experiment.plot_all, quick_run)) == ["fig1", "fig2", "fig3_deterministic",
                                                                         "fig3_noisy"]
