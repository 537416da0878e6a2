"""Online meta-optimization: SMD direction, divergence handling, the decay schedule, CLI and resume."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shorthorizon import optim
from shorthorizon.data.formats import write_idx
from shorthorizon.data.registry import get_spec
from shorthorizon.hypergrad import Data, make_estimator
from shorthorizon.meta.online import Online, decay_hyper, decay_schedule
from shorthorizon.meta.smd import EVALUATION_COST
from shorthorizon.tasks import mlp


def _separable(key, n, shape=(4, 4, 1)):
    """Images whose class is the position of one bright pixel: learnable in a few steps."""
    labels = jax.random.randint(key, (n,), 0, 10)
    x = 0.1 * jax.random.uniform(jax.random.fold_in(key, 1), (n, *shape))
    x = x.reshape(n, -1).at[jnp.arange(n), labels].set(1.0).reshape(n, *shape)
    return Data(x, labels)


SPACES = {  # (optimizer, space, initial hyperparameters)
    "heavy ball, effective space": (optim.momentum(), optim.EffectiveSpace(), {"lr": 0.03, "momentum": 0.9}),
    "adamw, lr and weight decay": (optim.adamw(), optim.LogSpace((("lr", 1e-5, 1.0), ("weight_decay", 1e-6, 1.0))),
                                   {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("name", SPACES)
def test_smd_moves_hyperparameters_against_the_finite_difference_hypergradient(x64, name):
    optimizer, space, hyper = SPACES[name]
    data = _separable(jax.random.key(0), 64)
    task = mlp((4, 4, 1), hidden=(8,))
    online = Online(task, lookahead="stochastic", batch_size=16, optimizer=optimizer, space=space)
    params = task.init(jax.random.key(1))
    state = optimizer.init(params, hyper)
    raw = space.to_raw(state.hyper)
    smd = online.smd(params, state, data)
    key = jax.random.key(3)
    new, (value, grad, _) = jax.jit(smd.step)(smd.init(raw), key)
    objective = jax.jit(smd.objective)
    for name in raw:
        h = 1e-5
        fd = (objective({**raw, name: raw[name] + h}, key) - objective({**raw, name: raw[name] - h}, key)) / (2 * h)
        assert abs(fd) > 1e-6, "degenerate test: the hypergradient vanishes"
        np.testing.assert_allclose(grad[name], fd, rtol=1e-4)
        # Adam's first step moves each coordinate by meta_lr against the gradient's sign
        assert np.sign(new.raw[name] - raw[name]) == -np.sign(fd)
        np.testing.assert_allclose(abs(new.raw[name] - raw[name]), smd.meta_lr, rtol=1e-3)


def test_adamw_online_adapts_lr_and_weight_decay_then_decays_lr():
    """With a log space, every adapted hyperparameter follows its SMD state during the first
    half and is frozen in the second, but lr, which ends at final_lr_eff."""
    optimizer, space, hyper = SPACES["adamw, lr and weight decay"]
    online = Online(mlp((4, 4, 1), hidden=(16,)), batch_size=16, meta_steps=2, interval=5, chunks=2,
                    meta_lr=0.05, optimizer=optimizer, space=space)
    out = online.run(_separable(jax.random.key(0), 256), jax.random.key(1), hyper, adapt_steps=20, decay_steps=10)
    assert set(out.curves) == {"loss", "lr", "weight_decay"} and set(out.at_stop) == {"lr", "weight_decay"}
    for name in ("lr", "weight_decay"):
        values = out.curves[name]
        # four intervals of two meta-steps, each moving the log value by at most meta_lr
        assert len(np.unique(values[:20])) > 1
        assert np.all(np.abs(np.log(values[:20] / hyper[name])) <= 8 * 0.05 * (1 + 1e-3))
        assert values[19] == pytest.approx(out.at_stop[name])
    np.testing.assert_allclose(out.curves["weight_decay"][20:], out.at_stop["weight_decay"])
    np.testing.assert_allclose(out.curves["lr"][-1], online.final_lr_eff, rtol=1e-4)


def test_an_optax_optimizer_with_optax_names_runs_online_as_the_packages_own():
    """optax.adamw through inject_hyperparams (its learning rate named learning_rate, its
    momentum b1): its lr is the package's lr, so SMD adapts it and the decay half sets it; the
    run is the one with optim.adamw(), curve for curve and weight for weight."""
    import optax

    _, space, hyper = SPACES["adamw, lr and weight decay"]
    tx = optax.inject_hyperparams(optax.adamw)(learning_rate=0.0, weight_decay=0.0, eps_root=1e-30)
    data = _separable(jax.random.key(0), 256)
    runs = {}
    for name, optimizer in (("optax", optim.Optimizer("optax adamw", tx)), ("package", optim.adamw())):
        online = Online(mlp((4, 4, 1), hidden=(16,)), batch_size=16, meta_steps=2, interval=5, chunks=1,
                        meta_lr=0.05, optimizer=optimizer, space=space)
        given = hyper if name == "package" else {k: v for k, v in hyper.items() if k != "momentum"}  # b1 is 0.9
        runs[name] = online.run(data, jax.random.key(1), given, adapt_steps=10, decay_steps=10)
    optax_run, own = runs["optax"], runs["package"]
    assert set(optax_run.at_stop) == {"lr", "weight_decay"} and optax_run.at_stop["lr"] != hyper["lr"]
    np.testing.assert_allclose(optax_run.curves["lr"][-1], 1e-4, rtol=1e-4)  # the decay half set it
    for name in ("loss", "lr", "weight_decay"):
        np.testing.assert_allclose(optax_run.curves[name], own.curves[name], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), optax_run.params, own.params)


def test_a_hyperparameter_the_optimizer_lacks_or_misses_is_named():
    online = Online(mlp((4, 4, 1), hidden=(8,)), optimizer=optim.sgd(), space=optim.EffectiveSpace())
    data = _separable(jax.random.key(0), 32)
    with pytest.raises(ValueError, match=r"'sgd' has no hyperparameter \['momentum'\] to adapt"):
        online.run(data, jax.random.key(1), {"lr": 0.1}, 10, 10)
    online = online._replace(optimizer=optim.adamw(), space=optim.LogSpace((("weight_decay", 1e-6, 1.0),)))
    with pytest.raises(ValueError, match=r"initial value of the adapted hyperparameters \['weight_decay'\]"):
        online.run(data, jax.random.key(1), {"lr": 0.1, "momentum": 0.9}, 10, 10)
    with pytest.raises(ValueError, match="learning rate named lr and no schedule"):
        online._replace(optimizer=optim.adamw(optim.constant())).run(data, jax.random.key(1), {"lr": 0.1}, 10, 10)


def test_decay_ends_exactly_at_final_lr():
    hyper = {"lr": jnp.float32(0.02), "momentum": jnp.float32(0.8)}
    decayed = decay_hyper(hyper, start=300, steps=200, final_lr=1e-4)
    lr = np.asarray(decay_schedule(decayed, 300 + jnp.arange(200)))
    np.testing.assert_allclose(lr[0], 0.02, rtol=1e-6)
    np.testing.assert_allclose(lr[-1], 1e-4, rtol=1e-5)
    assert np.all(np.diff(lr) < 0)
    np.testing.assert_allclose(np.diff(np.log(lr)), np.log(lr[1] / lr[0]), rtol=1e-3)  # exponential


def test_online_run_curves():
    data = _separable(jax.random.key(0), 256)
    online = Online(mlp((4, 4, 1), hidden=(16,)), batch_size=16, meta_steps=2, interval=5, chunks=4)
    chance = math.log(10)
    costs = []
    ok = online.run(data, jax.random.key(1), {"lr": 0.05, "momentum": 0.9}, adapt_steps=40, decay_steps=40,
                    chance_loss=chance, progress=costs.append)
    assert not ok.diverged and ok.steps_done == 80
    # progress: cost per chunk (4 per half); a bar of length online.cost ends full, and it is at
    # the adaptation half's share of the cost model when that half ends
    assert len(costs) == 8 and sum(costs) == pytest.approx(online.cost(40, 40))
    meta_step = 2 * 2 * (online.horizon + EVALUATION_COST)  # forward mode: one jvp (~2 steps) per hyperparameter
    assert sum(costs[:4]) == pytest.approx(40 / 5 * (2 * meta_step + 5)) and sum(costs[4:]) == 40
    assert online._replace(meta_steps=0).cost(40, 40) == 80  # the baseline's bar counts steps
    assert all(len(ok.curves[k]) == 80 for k in ("loss", "lr", "momentum"))
    np.testing.assert_allclose(ok.curves["lr"][-1] / (1 - ok.curves["momentum"][-1]), 1e-4, rtol=1e-4)
    assert ok.curves["momentum"][40] == pytest.approx(ok.at_stop["momentum"])  # frozen after the midpoint
    assert ok.curves["lr"][39] == pytest.approx(ok.at_stop["lr"])


def test_a_run_near_chance_goes_on_and_a_diverging_one_stops():
    """A net that learns slowly stays near chance for a while (BatchNorm at init); only a loss
    that explodes, or is not finite, stops the run."""
    data = _separable(jax.random.key(0), 256)
    online = Online(mlp((4, 4, 1), hidden=(16,)), batch_size=16, meta_steps=0, interval=5, chunks=4)
    slow = online.run(data, jax.random.key(1), {"lr": 1e-6, "momentum": 0.9}, 40, 40, chance_loss=0.95 * math.log(10))
    assert np.all(slow.curves["loss"] > 0.95 * math.log(10))  # every chunk above the chance_loss given ...
    assert not slow.diverged and slow.steps_done == 80  # ... but not twice it
    fast = online.run(data, jax.random.key(1), {"lr": 50.0, "momentum": 0.9}, 40, 40, chance_loss=math.log(10))
    assert fast.diverged and fast.steps_done < 80


@pytest.mark.parametrize("name", ["pes", "nres"])
def test_persistent_particles_train_beside_the_run_from_its_start(name):
    """Online PES (NRES): every interval, one meta-step from the particles' window estimate. The
    first one equals the estimator's first-window estimate from the run's initial weights (Adam's
    first step moves each coordinate by meta_lr against its sign), and the lr changes at interval
    starts only."""
    data = _separable(jax.random.key(0), 256)
    task = mlp((4, 4, 1), hidden=(16,))
    online = Online(task, batch_size=16, meta_steps=1, interval=5, chunks=2, meta_lr=0.05,
                    estimator=make_estimator(name, particles=3, sigma=0.1))
    assert online.persistent
    out = online.run(data, jax.random.key(1), {"lr": 0.05, "momentum": 0.9}, adapt_steps=20, decay_steps=10)
    init_key, adapt_key, _ = jax.random.split(jax.random.key(1), 3)  # Online.run's keys
    params = task.init(init_key)
    raw = optim.to_effective(jnp.float32(0.05), jnp.float32(0.9))
    state = optim.momentum().init(params, optim.from_effective(raw))
    particles = online.particles((params, state, task.init_state(init_key)), data, 20)
    # _adapt's first meta key: chunk 0 holds 2 of the 4 intervals; each interval splits (meta, train)
    first_key = jax.random.split(jax.random.split(jax.random.fold_in(adapt_key, 0), 2)[0])[0]
    _, grad, _ = jax.jit(particles.estimate)(particles.init(raw, jax.random.fold_in(init_key, 1)), raw, first_key)
    moved = optim.to_effective(out.curves["lr"][0], out.curves["momentum"][0])
    for coordinate in raw:
        assert abs(grad[coordinate]) > 0
        np.testing.assert_allclose(moved[coordinate] - raw[coordinate], -0.05 * np.sign(grad[coordinate]), rtol=1e-3)
    lr = out.curves["lr"][:20]
    assert np.all(lr.reshape(4, 5) == lr.reshape(4, 5)[:, :1]) and len(np.unique(lr)) == 4


def _write_learnable(folder, name, n_train, n_test, seed=0):
    """A tiny dataset in the real IDX format whose labels an MLP can learn."""
    spec = get_spec(name)
    target = folder / name
    target.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for members, n in ((spec.train, n_train), (spec.test, n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
        images[np.arange(n), 2 * labels + 3, 5:20] = 255
        write_idx(target / f"{members[0]}.gz", images)
        write_idx(target / f"{members[1]}.gz", labels)


def test_cli_end_to_end_and_resume(tmp_path, monkeypatch, capsys, strict_json, figures_show_their_data,
                                   claims_find_their_numbers):
    from shorthorizon import cli
    from shorthorizon.experiments import online

    _write_learnable(tmp_path / "data", "fashion-mnist", 400, 100)
    monkeypatch.delenv("SHORTHORIZON_DATA", raising=False)
    out = tmp_path / "run"
    args = ["online", "--preset", "quick", "--task", "mlp", "--out", str(out),
            "--set", f"data_dir={tmp_path / 'data'}", "--set", "verify=false", "--set", "mlp_steps=40", "--set", "meta_steps=2",
            "--set", "interval=5", "--set", "chunks=2", "--set", "mlp_batch_size=20",
            "--set", "mlp_init_lrs=0.05", "--set", "lookaheads=stochastic", "--set", "mlp_baseline_lr=50",
            "--set", "eval_examples=400"]
    assert cli.main(args) == 0
    for name in ("config.json", "summary.json", "figure7_mlp.png", "figure7_mlp.pdf"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"mlp", "wall_time_s", "seeds", "intervals"} and summary["seeds"] == 1
    s = summary["mlp"]
    assert s["task"] == "mlp" and s["dataset"] == "fashion-mnist"
    assert {"lr", "momentum", "final_train_loss", "final_test_accuracy"} <= set(s["baseline"])
    assert s["baseline"]["lr"] == 50 and s["baseline"]["diverged"]  # lr 50 diverges, stops early ...
    assert s["baseline"]["steps_done"] < 40  # stopped early
    (run,) = s["runs"]  # ... and the SMD run still finishes
    assert {"init_lr", "lookahead", "lr_at_stop", "momentum_at_stop", "final_train_loss",
            "final_test_accuracy", "diverged"} <= set(run)
    assert run["lookahead"] == "stochastic" and not run["diverged"] and run["steps_done"] == 40
    assert "Figure 7" in online.report(online.RunDir(out))
    assert sorted(figures_show_their_data(online.plot, out)) == ["figure7_mlp"]  # the diverged baseline too
    claims_find_their_numbers("online", out, absent=("Online, deterministic",))  # (lookaheads=stochastic)

    assert strict_json(out)  # the diverged baseline's numbers are null, not NaN

    # another config into the same folder is refused, naming the keys; the folder stays as it was
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert cli.main([*args, "--set", "seed=1", "--set", "mlp_steps=20"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"shorthorizon online: error: {out} holds results of a different config (seed: 0 -> 1; "
        "mlp_steps: 40 -> 20); use a new --out, or --force to start over (deletes the results there)"]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    # resume: finished units are not recomputed
    with monkeypatch.context() as m:
        m.setattr(online, "run_unit", lambda **kw: pytest.fail(f"recomputed {kw}"))
        assert cli.main(args) == 0
    assert json.loads((out / "summary.json").read_text())["mlp"]["runs"] == s["runs"]

    # --force starts over with the other config
    assert cli.main([*args, "--set", "seed=1", "--force"]) == 0
    assert strict_json(out / "config.json")["config"]["seed"] == 1
    assert json.loads((out / "summary.json").read_text())["mlp"]["runs"] != s["runs"]


def test_ray_and_local_executors_agree(tmp_path, ray_cluster):
    """Each (task, initial lr, lookahead) run is a unit that a Ray worker computes exactly as
    the local executor does: same curves, same summary."""
    from shorthorizon.experiments import online
    from shorthorizon.results import RunDir

    _write_learnable(tmp_path / "data", "fashion-mnist", 400, 100)
    config = dataclasses.replace(
        online.PRESETS["quick"], task=("mlp",), data_dir=str(tmp_path / "data"), verify=False, mlp_steps=40,
        meta_steps=2, interval=5, chunks=2, mlp_batch_size=20, mlp_init_lrs=(0.05,), eval_examples=100)
    local = online.run(config, RunDir(tmp_path / "local"))
    remote = online.run(config, RunDir(tmp_path / "ray"), executor="ray")
    assert remote["mlp"]["runs"] == local["mlp"]["runs"] and remote["mlp"]["baseline"] == local["mlp"]["baseline"]
    assert len(local["mlp"]["runs"]) == 2  # stochastic and deterministic
    for unit in ("mlp_baseline", "mlp_stochastic_lr0.05", "mlp_deterministic_lr0.05"):
        a, b = RunDir(tmp_path / "local").load_unit(unit), RunDir(tmp_path / "ray").load_unit(unit)
        for key in ("loss", "lr", "momentum"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{unit}/{key}")


def test_cli_adapts_adamw_lr_and_weight_decay(tmp_path, monkeypatch, capsys):
    """`--set optimizer=adamw --set adapt=lr,weight_decay`: the summary and the report carry
    every adapted hyperparameter at stop; a bad adapt or hyper entry is named before any run."""
    from shorthorizon import cli
    from shorthorizon.experiments import online

    _write_learnable(tmp_path / "data", "fashion-mnist", 400, 100)
    monkeypatch.delenv("SHORTHORIZON_DATA", raising=False)
    args = ["online", "--preset", "quick", "--task", "mlp",
            "--set", f"data_dir={tmp_path / 'data'}", "--set", "verify=false", "--set", "mlp_steps=20",
            "--set", "meta_steps=2", "--set", "interval=5", "--set", "chunks=1", "--set", "mlp_batch_size=20",
            "--set", "mlp_init_lrs=0.003", "--set", "mlp_baseline_lr=0.003", "--set", "lookaheads=stochastic",
            "--set", "eval_examples=100", "--set", "optimizer=adamw"]
    for extra, problem in ((["--set", "adapt=lr,b2"], "give 'b2' its bounds as b2:LOW:HIGH"),
                           (["--set", "adapt=lr,b2:0.9:0.9999", "--set", "hyper=weight_decay=1e-4"],
                            "give the initial value of the adapted hyperparameters ['b2']: set config keys 'adapt' and "
                            "'hyper'"),
                           # a misspelt name is named first, with the optimizer's list, whatever else is wrong
                           (["--set", "adapt=lr,weight_dacay"], "config key 'adapt': optimizer 'adamw' has no "
                                                                "hyperparameter ['weight_dacay'] to adapt; it has b2, "
                                                                "eps, lr, momentum, weight_decay"),
                           (["--set", "adapt=lr,weight_decay", "--set", "hyper=wd=1e-4"],
                            "optimizer 'adamw' has no hyperparameter ['wd']"),
                           (["--set", "adapt=lr,weight_decay:1:0.1"], "0 < LOW < HIGH"),
                           (["--set", "adapt=lr,weight_decay"], "needs a value for "
                                                                 "['weight_decay']"),
                           (["--set", "adapt=lr,weight_decay", "--set", "hyper=weight_decay"], "NAME=VALUE"),
                           ([], "'adapt' defaults to lr,momentum, the heavy ball's"),
                           (["--set", "adapt=lr,weight_decay", "--set", "hyper=weight_decay=abc"],
                            "the value of weight_decay must be a number, got 'abc'"),
                           (["--set", "adapt=lr,weight_decay", "--set", "hyper=weight_decay=-1"],
                            "the initial weight_decay -1 lies outside its bounds [1e-06, 1]"),
                           (["--set", "adapt=lr,weight_decay", "--set", "hyper=weight_decay=1e-4,foo=1"],
                            "no hyperparameter ['foo']"),
                           (["--set", "adapt=lr", "--set", "hyper=weight_decay=1e-4", "--set", "eval_examples=1000000"],
                            "config key 'eval_examples' is 1000000, more than the 400 training examples of")):
        capsys.readouterr()
        assert cli.main([*args, "--out", str(tmp_path / "bad"), *extra]) == 2
        assert problem in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
    assert cli.main([*args, "--out", str(tmp_path / "run"), "--set", "adapt=lr,weight_decay",
                     "--set", "hyper=weight_decay=1e-3"]) == 0
    s = json.loads((tmp_path / "run" / "summary.json").read_text())["mlp"]
    assert s["baseline"]["weight_decay"] == 1e-3 and s["baseline"]["momentum"] == 0.9
    (run,) = s["runs"]
    assert run["weight_decay_at_stop"] != 1e-3 and run["lr_at_stop"] != 0.003 and not run["diverged"]
    assert "| run | lr₀ | lr at stop | weight_decay at stop |" in online.report(online.RunDir(tmp_path / "run"))
    assert (tmp_path / "run" / "figure7_mlp.png").exists()


def test_checks_are_undecided_where_a_run_has_no_lr_at_the_stop():
    from shorthorizon.experiments.online import _checks

    baseline = {"lr": 0.1, "final_train_loss": 0.3}

    def run(lr, diverged=False):
        return {"lookahead": "stochastic", "lr_at_stop": lr, "diverged": diverged, "final_train_loss": 0.5}

    assert _checks(baseline, [run(0.005), run(0.009)])["stochastic_lr_at_most_tenth_of_baseline"] is True
    assert _checks(baseline, [run(0.005), run(0.02)])["stochastic_lr_at_most_tenth_of_baseline"] is False
    assert _checks(baseline, [run(0.005), run(None, True)])["stochastic_lr_at_most_tenth_of_baseline"] is None


def test_seeds_are_independent_units_summarised_by_their_intervals(tmp_path, monkeypatch, figures_show_their_data):
    """seeds=2: seed 0 is the single-seed run (same units, same summary); seed 1 is another draw;
    the intervals are shorthorizon.stats' of the seeds' headline numbers (the ratio to the tuned
    lr taken within each seed); deleting seed 1's last unit recomputes it alone; the figure shows
    every seed in its panels and the report gives each headline number's interval."""
    from shorthorizon import stats
    from shorthorizon.experiments import online
    from shorthorizon.results import RunDir

    _write_learnable(tmp_path / "data", "fashion-mnist", 400, 100)
    config = dataclasses.replace(
        online.PRESETS["quick"], task=("mlp",), data_dir=str(tmp_path / "data"), verify=False, mlp_steps=40,
        meta_steps=2, interval=5, chunks=2, mlp_batch_size=20, mlp_init_lrs=(0.05,), eval_examples=100,
        lookaheads=("stochastic",))  # test_ray_and_local_executors_agree's shapes: its compiled programs serve
    one = online.run(config, RunDir(tmp_path / "one"))
    two = online.run(dataclasses.replace(config, seeds=2), RunDir(tmp_path / "two"))
    assert one["seeds"] == 1 and "per_seed" not in one and two["seeds"] == 2
    assert two["mlp"] == one["mlp"] and two["per_seed"][0]["mlp"] == one["mlp"]
    seed1 = two["per_seed"][1]["mlp"]
    assert [r["unit"] for r in seed1["runs"]] == ["mlp_stochastic_lr0.05_s1"]
    for a, b in zip(one["mlp"]["runs"], seed1["runs"]):
        assert a["lr_at_stop"] != b["lr_at_stop"] and a["final_train_loss"] != b["final_train_loss"]

    runs = {(r["lookahead"], k): r for k, s in enumerate(two["per_seed"]) for r in s["mlp"]["runs"]}
    lrs = [runs["stochastic", k]["lr_at_stop"] for k in (0, 1)]
    losses = [runs["stochastic", k]["final_train_loss"] for k in (0, 1)]
    assert two["intervals"]["mlp.stochastic.lr_at_stop"] == stats.log_interval(lrs)
    assert two["intervals"]["mlp.stochastic.lr_ratio"] == stats.log_interval(np.divide(lrs, 0.1))
    assert two["intervals"]["mlp.stochastic.final_train_loss"] == stats.interval(losses)
    assert two["intervals"]["mlp.stochastic.loss_ratio"] == stats.log_interval(
        np.divide(losses, [s["mlp"]["baseline"]["final_train_loss"] for s in two["per_seed"]]))
    assert two["intervals"]["mlp.baseline.diverged"] == stats.interval([0.0, 0.0])
    assert set(one["intervals"]) == set(two["intervals"])
    assert one["intervals"]["mlp.stochastic.lr_at_stop"]["low"] is None  # one seed: no spread

    assert sorted(figures_show_their_data(online.plot, tmp_path / "two")) == ["figure7_mlp"]
    section = online.report(RunDir(tmp_path / "two"))
    low, high = (two["intervals"]["mlp.stochastic.lr_ratio"][k] for k in ("low", "high"))
    assert f"[{low:.3g}, {high:.3g}] (2 seeds)" in section and "Seed 0:" in section

    (tmp_path / "two" / "units" / "mlp_stochastic_lr0.05_s1.npz").unlink()
    computed = []
    run_unit = online.run_unit
    monkeypatch.setattr(online, "run_unit", lambda **kw: computed.append(kw) or run_unit(**kw))
    again = online.run(dataclasses.replace(config, seeds=2), RunDir(tmp_path / "two"))
    assert [(kw["lookahead"], kw["config"].seed) for kw in computed] == [("stochastic", 1)]
    again.pop("wall_time_s"), two.pop("wall_time_s")
    assert again == two


def test_figure7_shows_the_runs_beside_one_whose_loss_reached_658(tmp_path, figures_show_their_data):
    """Issue 25's Figure 7: the deterministic lookahead's loss climbs to 658 and the run is
    stopped while the baseline and the stochastic run stay below 2.7. The loss panel spans the
    runs that did not diverge (from the initial loss down), and the diverged run is drawn until
    it leaves the panel, marked there with ×, and named in the legend."""
    from shorthorizon.experiments import online
    from shorthorizon.results import RunDir

    steps, stopped = 2000, 600
    t = np.arange(steps)
    curves = {"mlp_baseline": 0.2 + 2.1 * np.exp(-t / 300), "mlp_stochastic_lr0.1": 0.3 + 2.0 * np.exp(-t / 200),
              "mlp_deterministic_lr0.1": np.geomspace(2.3, 658, stopped)}
    run_dir = RunDir(tmp_path)
    for unit, loss in curves.items():
        run_dir.save_unit(unit, {"loss": loss, "lr": np.full(len(loss), 0.1), "momentum": np.full(len(loss), 0.9)})
    row = {"init_lr": 0.1, "lr_at_stop": 0.01, "momentum_at_stop": 0.9, "final_train_loss": 0.3}
    run_dir.write_summary({"mlp": {"task": "mlp", "dataset": "mnist", "steps": steps,
                                   "baseline": {"lr": 0.1, "momentum": 0.9, "diverged": False},
                                   "runs": [{**row, "lookahead": "stochastic", "unit": "mlp_stochastic_lr0.1",
                                             "diverged": False},
                                            {**row, "lookahead": "deterministic", "unit": "mlp_deterministic_lr0.1",
                                             "diverged": True}]}})
    figure = figures_show_their_data(online.plot, tmp_path)["figure7_mlp"]
    loss = figure.axes[0]
    bottom, top = loss.get_ylim()
    assert top == pytest.approx(1.25 * 2.3, rel=0.01) and bottom < 0.2  # the finished runs' range
    lines = {line.get_label(): line.get_ydata() for line in loss.lines}
    drawn = lines["deterministic lr0=0.1 (diverged)"]
    assert 2 < len(drawn) < stopped and drawn.max() <= top  # up to where it leaves the panel ...
    assert [tuple(line.get_ydata()) for line in loss.lines if line.get_marker() == "x"] == [(top,)]  # ... marked
    assert {"baseline lr=0.1", "stochastic lr0=0.1"} <= set(lines)


def test_a_run_keeps_its_lookahead_and_its_estimator_apart():
    """A lookahead run has both; a persistent estimator's run (PES) has no lookahead, and its
    stored name (the summary's ``lookahead`` column, the unit) is the estimator's, as it was."""
    from shorthorizon.experiments import online

    config = online.PRESETS["quick"]
    base, *adapted = online.task_runs(config, online.settings(config, "mlp"))
    assert base == online.Run(0.1) and base.mode is None
    assert [(r.lookahead, r.estimator) for r in adapted] == [("stochastic", "forward"), ("deterministic", "forward")]
    pes = dataclasses.replace(config, estimator="pes")
    _, run = online.task_runs(pes, online.settings(pes, "mlp"))
    assert (run.lookahead, run.estimator, run.mode) == (None, "pes", "pes")
    assert online.unit_name("mlp", run.init_lr, run.mode, 1) == "mlp_pes_lr0.1_s1"


def test_a_users_task_runs_with_its_own_settings_or_names_the_keys_to_set(tmp_path, capsys):
    """`online --task package.module:factory` never takes the MLP's settings: without the user_*
    keys it stops with one line naming those unset, before any folder is made; with them it runs."""
    from shorthorizon import cli
    from shorthorizon.data import make_fake_dataset

    make_fake_dataset(tmp_path / "data", "mnist", n_train=100, n_test=20, seed=0)
    out = tmp_path / "run"
    sets = {"data_dir": tmp_path / "data", "verify": "false", "eval_examples": 100, "meta_steps": 1, "interval": 5,
            "chunks": 1, "lookaheads": "stochastic"}
    args = ["online", "--dataset", "mnist", "--task", "example_tasks:nnx_net", "--out", str(out),
            *(a for k, v in sets.items() for a in ("--set", f"{k}={v}"))]
    for given, unset in (([], "user_steps, user_init_lrs, user_baseline_lr, user_batch_size"),
                         (["--set", "user_steps=20", "--set", "user_init_lrs=0.1"],
                          "user_baseline_lr, user_batch_size")):
        capsys.readouterr()
        assert cli.main([*args, *given]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"task 'example_tasks:nnx_net' has no settings of its own: set config keys {unset} (" in err
        assert not out.exists()
    assert cli.main([*args, "--set", "user_steps=20", "--set", "user_init_lrs=0.1", "--set", "user_baseline_lr=0.05",
                     "--set", "user_batch_size=20"]) == 0
    s = json.loads((out / "summary.json").read_text())["example_tasks:nnx_net"]
    assert s["steps"] == 20 and s["baseline"]["lr"] == 0.05 and [r["init_lr"] for r in s["runs"]] == [0.1]
    assert sorted(p.name for p in (out / "units").glob("*.npz")) == ["example_tasks_nnx_net_baseline.npz",
                                                                  "example_tasks_nnx_net_stochastic_lr0.1.npz"]


def test_a_run_where_every_lr_diverges_is_diverged_and_its_claims_read_that(tmp_path, monkeypatch, capsys):
    """Every run diverges (lr 50, the baseline's too): the command finishes, every run is marked
    diverged with no loss to take a ratio of, and the claims read the state: a claim that an
    instability supports holds, the others are not comparable (never decided on a diverged number)."""
    from shorthorizon import cli
    from shorthorizon.report import claims

    _write_learnable(tmp_path / "data", "fashion-mnist", 400, 100)
    monkeypatch.delenv("SHORTHORIZON_DATA", raising=False)
    out = tmp_path / "run"
    assert cli.main(["online", "--preset", "quick", "--task", "mlp", "--out", str(out),
                     "--set", f"data_dir={tmp_path / 'data'}", "--set", "verify=false", "--set", "mlp_steps=40",
                     "--set", "meta_steps=2", "--set", "interval=5", "--set", "chunks=2", "--set", "mlp_batch_size=20",
                     "--set", "mlp_init_lrs=50", "--set", "mlp_baseline_lr=50", "--set", "eval_examples=400"]) == 0
    s = json.loads((out / "summary.json").read_text())["mlp"]
    assert s["baseline"]["diverged"] and all(r["diverged"] for r in s["runs"])
    rows = {r["claim"]: r for r in json.loads((out / "claims.json").read_text())["claims"]}
    unstable = rows["Online, deterministic lookahead: lr at stop above the tuned one, or unstable (lr ratio)"]
    assert unstable["verdict"] == claims.HOLDS and unstable["ours"].startswith("diverged")
    others = [r for name, r in rows.items() if r["source"] == "online" and r is not unstable]
    assert others and all(r["verdict"] == claims.NOT_COMPARABLE and r["ours"] == "diverged (100% of runs)"
                          for r in others)
