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


@pytest.mark.parametrize("task, schedule, protocols", [("example_tasks:nnx_net", "cosine", {"rerun", "rung"}),
                                                       ("example_tasks:equinox_net", "inverse-time", {"meta", "rung"})])
def test_bias_on_a_users_model_under_every_protocol(data, tmp_path, task, schedule, protocols, strict_json):
    """A Flax NNX and an Equinox model (BatchNorm, dropout) through every protocol that applies to
    the schedule: every fit holds each seed's fitted values, its loss and test error at T, its
    identified span, its rank agreement and its ratios to the reference, consistent with each
    other; the seeds really differ; the figure and the report (every table row with its numbers)
    are written."""
    out = tmp_path / "run"
    assert bias(data, out, task, schedule=schedule) == 0
    summary = strict_json(out / "summary.json")
    assert summary["task"] == task and set(summary["protocols"]) == protocols
    assert summary["fitted"] == (["lr", "decay_exponent"] if schedule == "inverse-time" else ["lr"])
    fits = summary["fits"]
    assert set(fits) == {"reference", *(f"{p}_K5" for p in protocols)}
    for label, row in fits.items():
        for stat in (*row["hyper"].values(), row["train_loss_at_T"], row["test_error_at_T"]):
            assert len(stat["values"]) == 2 and stat["n"] == 2
            assert stat["low"] <= stat["mean"] <= stat["high"]
        for name in summary["fitted"]:  # ratios are per seed, the short fit's over the reference's
            np.testing.assert_allclose(row["ratio_to_reference"][name]["values"],
                                       np.divide(row["hyper"][name]["values"], fits["reference"]["hyper"][name]["values"]))
            span = row["identified"][name]  # the pick lies in its own identified span
            for low, high, value in zip(span["low"], span["high"], row["hyper"][name]["values"]):
                assert low <= value * (1 + 1e-6) and value <= high * (1 + 1e-6)
            assert row["verdict"][name] in (("reference", "not identified") if label == "reference" else
                                            ("larger", "smaller", "inconclusive", "not identified"))
        if label != "reference":
            assert -1 <= row["rank_agreement"]["spearman"]["mean"] <= 1
    lr = fits["reference"]["hyper"]["lr"]["values"]
    assert lr[0] != lr[1]  # seeds differ in initialization, batches and samples
    assert (out / "bias.png").is_file()
    from shorthorizon.experiments import bias as experiment
    from shorthorizon.results import RunDir

    section = experiment.report(RunDir(out), prefix="bias/")
    assert task in section and "(bias/bias.png)" in section
    written = (out / "report.md").read_text()  # the command's own report: its section, the figure beside it
    assert "(bias.png)" in written and all(f"K = 5" in line for line in written.splitlines()
                                           if line.startswith("- Tuned "))
    assert sum(line.startswith("- Tuned ") for line in written.splitlines()) == len(protocols)
    table = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| fit")]
    assert len(table) == len(fits)
    for line in table:  # every cell of every row holds a number (the reference has no rank agreement with itself)
        cells = line.strip("|").split("|")
        assert all(re.search(r"\d", cell) for i, cell in enumerate(cells) if i and not (i == len(cells) - 2
                                                                                 and "reference" in cells[0])), line


def test_rung_scores_are_the_reference_unrolls_prefix_and_rerun_at_T_is_the_reference(data, tmp_path):
    """``rung`` trains nothing of its own: its candidates are the reference surface's row at K
    (no unit but its long run), and its objective is that row's minimum. ``rerun`` at K = T (the
    schedule laid over T, scored at T) gives the reference's own scores."""
    from shorthorizon.config import seeded
    from shorthorizon.experiments import bias as experiment
    from shorthorizon.experiments import pipeline
    from shorthorizon.offline_problem import with_family
    from shorthorizon.results import RunDir

    out = tmp_path / "run"
    assert bias(data, out, "mlp", schedule="cosine", seeds="1") == 0
    run, summary = RunDir(out), json.loads((out / "summary.json").read_text())
    assert sorted(p.stem for p in (out / "units").glob("*rung*")) == ["long_rung_K5"]
    rows = run.load_unit("surface_c0")["loss"]  # rows: K = 5, T = 20
    assert summary["fits"]["rung_K5"]["objective"]["values"] == [pytest.approx(float(np.nanmin(rows[0])), rel=1e-6)]

    stored = json.loads((out / "config.json").read_text())["config"]
    config = with_family(seeded(experiment.Config(**{k: tuple(v) if isinstance(v, list) else v
                                                      for k, v in stored.items()}), 0))
    rerun_at_t = pipeline.surface_unit(config, 0, (20,), 20)["loss"][0]
    np.testing.assert_allclose(rerun_at_t, rows[1], rtol=1e-5)
    rerun_at_k = run.load_unit("rerun_K5_c0")["loss"][0]
    assert not np.allclose(rerun_at_k, rows[0])  # at K < T the cosine is laid over K: other scores


def test_a_box_where_every_lr_diverges_is_diverged_not_a_fit(data, tmp_path, strict_json, capsys):
    """Every sample of the box diverges: no fit, no long run, every verdict "diverged", said on
    stderr and in the report's sentences, no crash."""
    out = tmp_path / "run"
    assert bias(data, out, "mlp", lr0_range="1000,100000", seeds="2") == 0
    assert "every sample diverged" in capsys.readouterr().err
    assert "lr: every fit diverged" in (out / "report.md").read_text()
    summary = strict_json(out / "summary.json")
    for row in summary["fits"].values():
        assert row["train_loss_at_T"]["values"] == [None, None] and row["train_loss_at_T"]["diverged"] == 2
        assert row["verdict"]["train_loss_at_T"] == "diverged"
    assert not list((out / "units").glob("long_*"))


def test_a_model_whose_loss_is_nan_is_diverged_not_a_crash(data, tmp_path, strict_json):
    """Issue 32: a model whose loss is NaN crashed ``zoom_unit`` (its center None) and every rerun
    of the folder; now every fit is diverged, no zoom or long run is attempted, and a rerun of
    the same folder gives the same summary."""
    out = tmp_path / "run"
    for _ in range(2):  # the second: a rerun of the folder it left
        assert bias(data, out, "example_tasks:nan_loss", seeds="1") == 0
        summary = strict_json(out / "summary.json")
        assert all(row["verdict"]["train_loss_at_T"] == "diverged" for row in summary["fits"].values())
    assert not list((out / "units").glob("zoom_*")) and not list((out / "units").glob("long_*"))


def test_the_identified_span_of_a_bowl_in_one_coordinate_flat_in_the_other():
    """Candidates on a grid: the objective is a bowl in log lr (minimum at 0.01) and flat in the
    momentum. Within 1% of the best lie the lrs with (log10 lr + 2)^2 <= 0.01 * best, i.e. a
    narrow span around 0.01, while every momentum sampled is in: its span covers the whole box
    in the log(1 - mu) coordinate."""
    from shorthorizon import optim
    from shorthorizon.experiments.pipeline import Candidates

    lr, mu = np.meshgrid(np.logspace(-3, -1, 21), 1 - np.logspace(-3, 0, 13)[::-1] + 0.0, indexing="ij")
    mu = np.clip(mu, 0.0, 0.999)
    loss = 1.0 + (np.log10(lr) + 2) ** 2  # best 1.0 at lr = 0.01; within 1%: |log10 lr + 2| <= 0.1
    fitted = optim.LogSpace((("lr", 1e-3, 1e-1), ("momentum", 0.0, 0.999)))
    spans = Candidates({"lr": lr.ravel(), "momentum": mu.ravel()}, loss.ravel()).identified(fitted, 0.01)
    assert spans["lr"].low == pytest.approx(10**-2.1) and spans["lr"].high == pytest.approx(10**-1.9)
    assert spans["lr"].fraction == pytest.approx(0.2 / 2)
    assert spans["momentum"].low == pytest.approx(0.0) and spans["momentum"].high == pytest.approx(0.999)
    assert spans["momentum"].fraction == pytest.approx(1.0)


def test_sparse_samples_of_a_diagonal_valley_identify_neither_value():
    """A valley along log10 lr = log10 decay / 2 - 1.5 across the paper's box, nearly flat along
    it (f = 1 + (x - y/2 + 1.5)^2 + 1e-4 (y - 1)^2): a larger lr0 with a faster decay scores the
    same. Of 48 log-uniform samples (and the optimum), the few inside the 1% band span under half
    of either box, but the profile (worked by hand: (H^-1)_yy = 1 / (2e-4), a half-width of
    sqrt(0.02 / 2e-4) = 10 decades; x's 5), cut to the reach of the 12 best samples it is fitted
    to, spans most of both: neither is identified."""
    from shorthorizon import optim
    from shorthorizon.experiments.pipeline import Candidates
    from shorthorizon.stats import MOST_OF_THE_BOX, identified_range

    rng = np.random.default_rng(0)
    x = np.concatenate([[-1.0], rng.uniform(-3, -0.3, 48)])
    y = np.concatenate([[1.0], rng.uniform(-2, 2.3, 48)])
    loss = 1 + (x - y / 2 + 1.5) ** 2 + 1e-4 * (y - 1) ** 2
    fitted = optim.LogSpace((("lr", 1e-3, 10**-0.3), ("decay_exponent", 1e-2, 10**2.3)))
    spans = Candidates({"lr": 10**x, "decay_exponent": 10**y}, loss).identified(fitted, 0.01)
    assert identified_range(10**y, loss, 0.01, box=(1e-2, 10**2.3)).fraction < MOST_OF_THE_BOX
    assert identified_range(10**x, loss, 0.01, box=(1e-3, 10**-0.3)).fraction < MOST_OF_THE_BOX
    assert all(span.fraction >= MOST_OF_THE_BOX for span in spans.values()), spans


def test_a_fit_at_the_edge_of_the_box_is_flagged_with_the_key_that_widens_it(data, tmp_path, capsys):
    """A value within 0.05 decades of a bound is flagged, naming the bound and the key that
    widens the box; one well inside is not. End to end, a box narrower than that puts every
    fit at its edge: the summary, the report and stderr say so."""
    from shorthorizon.experiments import bias as experiment
    from shorthorizon.experiments import pipeline
    from shorthorizon.offline_problem import with_family

    config = with_family(experiment.PRESETS["quick"])  # the heavy ball's box: lr in [1e-3, 10**-0.3]
    flags = pipeline.edge_lines(config, "K=5", 0, {"lr": 0.45, "decay_exponent": 3.0})
    assert len(flags) == 1 and "lr 0.45 is at the upper bound" in flags[0] and "--set lr0_range=LOW,HIGH" in flags[0]
    assert pipeline.edge_lines(config, "K=5", 0, {"lr": 0.03, "decay_exponent": 1e-2 * 1.05})[0].count("lower bound")
    assert pipeline.edge_lines(config, "K=5", 0, {"lr": 0.03, "decay_exponent": 3.0}) == []

    out = tmp_path / "edge"
    assert bias(data, out, "mlp", lr0_range="0.01,0.011", schedule="constant", seeds="1", widen="0") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fitted"] == ["lr"]
    flags = [line for row in summary["fits"].values() for line in row["at_edge"]]
    assert len(flags) == 6 and all("--set lr0_range=" in line for line in flags)  # 3 fits x 2 bounds
    assert "--set lr0_range=" in capsys.readouterr().err
    assert "At the edge of the box" in experiment.report(__import__("shorthorizon.results").results.RunDir(out))


def test_a_fit_at_the_edge_widens_its_box_and_searches_again(data, tmp_path, capsys):
    """A bound a fitted value sits at moves zoom_width decades out (a momentum's upper bound: 1 - mu
    divided by 10^width), the others stay (worked by hand); end to end, a box too narrow for the
    optimum is widened and zoomed again for every searched fit (not rung's), said on stderr and in
    the summary, and the new samples lie outside the original box."""
    import dataclasses

    from shorthorizon.experiments import bias as experiment
    from shorthorizon.experiments import pipeline
    from shorthorizon.offline_problem import with_family

    config = dataclasses.replace(with_family(experiment.PRESETS["quick"]), adapt=("momentum:0:0.999",))
    wider = pipeline.widened(config, {"lr": 0.49, "decay_exponent": 1.05e-2, "momentum": 0.9989})
    assert wider.lr0_range == pytest.approx((1e-3, 10**-0.3 * 10**0.3), rel=1e-6)  # the paper's 10^-0.3, 0.3 decades out
    assert wider.decay_exponent_range == pytest.approx((1e-2 / 10**0.3, 10**2.3), rel=1e-6)
    assert wider.adapt[0].split(":")[:2] == ["momentum", "0.0"]
    assert float(wider.adapt[0].split(":")[2]) == pytest.approx(1 - 1e-3 / 10**0.3)
    assert pipeline.widened(config, {"lr": 0.03, "decay_exponent": 3.0, "momentum": 0.9}) is None

    out = tmp_path / "edge"
    assert bias(data, out, "mlp", lr0_range="0.01,0.011", schedule="constant", seeds="1", widen="1") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fits"]["reference"]["widened"] and summary["fits"]["meta_K5"]["widened"]
    assert summary["fits"]["rung_K5"]["widened"] == []
    assert "zooming again" in capsys.readouterr().err
    from shorthorizon.results import RunDir

    lr = RunDir(out).load_unit("widen1_reference")["lr"]
    assert ((lr < 0.01) | (lr > 0.011)).any()


def test_a_model_with_the_wrong_output_width_is_one_line_before_any_training(data, tmp_path, capsys):
    assert bias(data, tmp_path / "bad", "example_tasks:too_few_logits") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(r"have shape \(\d+, 7\); wanted \(\d+, 10\)", err), err
    assert not (tmp_path / "bad").exists()


def test_bad_study_keys_name_the_key(data, tmp_path, capsys):
    for overrides, text in (({"short": "20"}, "config key 'short'"), ({"schedule": "cosin"}, "config key 'schedule'"),
                            ({"schedule": "cosine", "protocol": "meta"}, "config key 'protocol'"),
                            ({"schedule": "cosine", "protocol": "meta,rung"}, "'protocol': meta does not apply"),
                            ({"adapt": "decay_exponent"}, "lr and decay_exponent always fitted"),
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


def test_the_figure_shows_every_fit_in_its_panels(tmp_path, figures_show_their_data):
    """The figure from a summary (plotting reads saved results only) whose two seeds' decay
    exponent ratios, 0.5 and 60, are far apart, as two seeds of a tiny run (nnx_net) gave, one
    fit's decay exponent not identified: every panel shows its data."""
    from shorthorizon.experiments import bias as experiment
    from shorthorizon.results import RunDir
    from shorthorizon.stats import interval, log_interval

    def row(protocol, horizon, cost, lr, decay_exponent, spearman, not_identified=()):
        return {"protocol": protocol, "horizon": horizon, "not_identified": list(not_identified),
                "ratio_to_reference": {"lr": log_interval(lr), "decay_exponent": log_interval(decay_exponent),
                                       "train_loss_at_T": log_interval(cost)},
                "rank_agreement": {"spearman": interval(spearman)}}

    RunDir(tmp_path).write_summary({
        "task": "nnx_net", "optimizer": "momentum", "schedule": "inverse-time", "horizon": 20, "seeds": 2,
        "budget": 0.01, "fitted": ["lr", "decay_exponent"], "protocols": ["meta", "rung"], "fits": {
            "reference": row("reference", 20, [1, 1], [1, 1], [1, 1], [1, 1]),
            "meta_K5": row("meta", 5, [1.2, 1.1], [0.3, 0.2], [0.5, 60.0], [0.4, 0.6], ["decay_exponent"]),
            "rung_K5": row("rung", 5, [1.05, 1.3], [1.5, 2.0], [3.0, 2.0], [0.2, 0.5])}})
    assert sorted(figures_show_their_data(experiment.plot, tmp_path)) == ["bias"]


def test_no_ratio_is_read_where_either_end_cannot_identify_its_value():
    """The findings from a summary whose reference (T = 20) cannot identify the decay exponent:
    the meta fit's decay exponent is "not identified at T = 20" (no ratio), its lr a ratio; a ratio
    of exactly [1, 1] has no direction; a diverged cost is said as such, never a percentage."""
    from shorthorizon.report.bias import findings
    from shorthorizon.stats import finding, log_interval

    def row(protocol, horizon, lr, cost, not_identified=(), verdicts=("smaller", "within budget")):
        return {"protocol": protocol, "horizon": horizon, "not_identified": list(not_identified),
                "identified": {n: {"fraction_of_box": [0.9, 0.8]} for n in ("lr", "decay_exponent")},
                "ratio_to_reference": {"lr": log_interval(lr), "decay_exponent": log_interval([3.0, 5.0]),
                                       "train_loss_at_T": log_interval(cost)},
                "verdict": {"lr": verdicts[0], "decay_exponent": "not identified", "train_loss_at_T": verdicts[1]}}

    summary = {"horizon": 20, "seeds": 2, "tolerance": 0.01, "fitted": ["lr", "decay_exponent"],
               "protocols": ["meta"], "fits": {
                   "reference": row("reference", 20, [1.0, 1.0], [1.0, 1.0], ["decay_exponent"]),
                   "meta_K5": row("meta", 5, [0.5, 0.6], [1.1, np.nan], verdicts=("smaller", "diverged"))}}
    (text,) = findings(summary)
    assert "decay_exponent is **not identified** at T = 20: the values within 1% of the best span 90%, 80%" in text
    assert "lr comes out 0.5" in text and "no cost at T: a long run (its or the reference's) diverged in 1 of 2" in text
    assert "%  training" not in text and "decay_exponent comes out" not in text
    same = log_interval([1.0, 1.0])
    assert finding(same, 1.0, ("larger", "smaller")) == "inconclusive"
    assert finding(same, 1.0, ("costs more", "within budget"), at_or_below=True) == "within budget"


def test_the_adaptive_search_replaces_the_zoom_and_only_improves_on_the_surface(data, tmp_path):
    """With ``generations``, each searched fit (reference, meta; not rung) takes generations of the
    adaptive search from the surface instead of a zoom: its units are stored (resumable), and its
    objective is the best of the surface and every generation, so never above the surface's."""
    from shorthorizon.results import RunDir

    out = tmp_path / "run"
    assert bias(data, out, "mlp", seeds="1", generations="2", population="3") == 0
    stored = sorted(p.stem for p in (out / "units").glob("*.npz"))
    assert {"gen0_reference", "gen1_reference", "gen0_meta_K5", "gen1_meta_K5"} <= set(stored)
    assert not [name for name in stored if name.startswith(("zoom_", "gen0_rung", "gen1_rung"))]
    summary, run = json.loads((out / "summary.json").read_text()), RunDir(out)
    rows = run.load_unit("surface_c0")["loss"]  # rows: K = 5, T = 20
    for label, row in (("meta_K5", 0), ("reference", 1)):
        searched = [run.load_unit(f"gen{g}_{label}")["loss"] for g in range(2)]
        best = summary["fits"][label]["objective"]["values"][0]
        assert best <= float(np.nanmin(rows[row])) + 1e-7
        assert best == pytest.approx(float(np.nanmin(np.concatenate([rows[row], *searched]))), rel=1e-6)
