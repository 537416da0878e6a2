"""Every config key declares its rule, and every bad value is refused before any work.

Issue 24, class 2: the probe's cases, through the real command line. Each ends with exit status
2 and one line on stderr naming the key and what it takes; the --out folder is never made.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from shorthorizon import config as configlib
from shorthorizon import experiments, optim
from shorthorizon.cli import main
from shorthorizon.config import POSITIVE, key
from shorthorizon.data import make_fake_dataset
from shorthorizon.experiments import pipeline
from shorthorizon.offline_problem import ADAPT_RANGES, validate_problem
from shorthorizon.results import RunDir

# (command, --set KEY=VALUE, the key named, what the line says it takes)
PROBES = [
    ("estimators", "init=0.3,0.3", "init", "lr,decay_exponent,momentum with lr and decay_exponent positive"),
    ("estimators", "init=nan,0.3,0.5", "init", "lr,decay_exponent,momentum with lr and decay_exponent positive"),
    ("estimators", "settings=-1,0.5,0.5", "settings", "lr,decay_exponent,momentum triples, flattened"),
    ("estimators", "truncations=5,5,10", "truncations", "one or more distinct values, each positive"),
    ("estimators", "estimators=forward,forward", "estimators", "distinct values, each one of forward, reverse"),
    ("estimators", "estimators=", "estimators", "one or more distinct values, each one of forward"),
    ("estimators", "momentum_range=0.9,0.1", "momentum_range", "LOW,HIGH with LOW < HIGH, each in [0, 1)"),
    ("estimators", "momentum_range=0.5,1.5", "momentum_range", "LOW,HIGH with LOW < HIGH, each in [0, 1)"),
    ("estimators", "lr_range=2.0,0.01", "lr_range", "LOW,HIGH with LOW < HIGH, each positive and finite"),
    ("estimators", "init=3,0.3,0.5", "init", "must lie within lr_range=[0.01, 2]"),
    ("estimators", "truncations=7,100", "truncations", "7 must divide the horizon 100"),
    ("nqm-map", "tolerance=nan", "tolerance", "positive and finite"),
    ("nqm-map", "tolerance=-1", "tolerance", "positive and finite"),
    ("nqm-map", "adam_lr=nan", "adam_lr", "positive and below 709.78"),
    ("nqm-map", "adam_lr=1e300", "adam_lr", "positive and below 709.78"),
    ("nqm-map", "adam_lr=-1", "adam_lr", "positive and below 709.78"),
    ("nqm-map", "kappas=1,1000,inf", "kappas", "each 1 or more, and finite"),
    ("nqm-map", "kappas=1,1,1000", "kappas", "distinct values"),
    ("nqm-map", "margin=2", "margin", "in [0, 1)"),
    ("nqm-map", "penalty=-5", "penalty", "positive and finite"),
    ("nqm-map", "fit_steps=0", "fit_steps", "positive and finite"),
    ("nqm", "adam_lr=1e300", "adam_lr", "positive and below 709.78"),
    ("nqm", "seed=-1", "seed", "in [0, 2**32)"),
    ("nqm", "fig1_trajectories=100000000000", "fig1_trajectories", "more than this machine's"),  # it ran out of memory
    ("nqm-map", "mean0=1e300", "mean0", "keep the initial loss dim * mean0^2 finite"),  # computed, then failed in matplotlib
    ("offline", "horizons=10,10,20", "horizons", "distinct values, each positive"),
    ("offline", "init_lr0=0.03,0.1,0.01", "init_lr0", "as many values as init_decay_exponent"),
    ("offline", "lr0_range=0.5,0.001", "lr0_range", "LOW,HIGH with LOW < HIGH"),
    ("offline", "estimator=fd", "estimator", "fd (central differences) needs float64"),  # it failed after the surface
    ("truncated", "estimators=forward,forward", "estimators", "distinct values, each one of forward"),
    ("truncated", "estimators=forward,fd", "estimators", "fd (central differences) needs float64"),
    ("offline", "hyper=momentum=0.5", "hyper", "momentum has config keys of its own (--set momentum=VALUE)"),
    ("offline", "hyper=lr=0.3", "hyper", "lr has config keys of its own"),  # it set the warm start's lr unsaid
    ("bias", "adapt=decay_exponent", "adapt", "lr and decay_exponent always fitted"),  # it was fitted twice
    ("bias", "adapt=momentum:0:1", "adapt", "0 <= LOW < HIGH < 1"),  # it failed later, not naming the key
    ("online", "lookaheads=", "lookaheads", "one or more distinct values, each one of stochastic, deterministic"),
    ("online", "lookaheads=stochastic,stochastic", "lookaheads", "distinct values"),
    ("online", "mlp_init_lrs=0.1,0.1", "mlp_init_lrs", "distinct values, each positive"),
    ("online", "task=mlp,mlp", "task", "distinct values, each a task name or package.module:factory"),
    ("online", "adapt=lr,lr", "adapt", "one or more distinct values"),
    ("bias", "short=100,100", "short", "distinct values"),
    ("bias", "warm_start_lr=-1", "warm_start_lr", "zero or more"),
]


@pytest.mark.parametrize("command, setting, name, wanted", PROBES, ids=[f"{c}:{s}" for c, s, _, _ in PROBES])
def test_a_bad_value_is_one_line_naming_the_key_and_leaves_no_folder(tmp_path, capsys, command, setting, name,
                                                                      wanted):
    out = tmp_path / "run"
    assert main([command, "--out", str(out), "--set", setting]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"shorthorizon {command}: error: config key {name!r}"), lines
    assert wanted in lines[0], lines
    assert not out.exists()


@pytest.mark.parametrize("flag, value, what", [("--batch-size", "1000000", "--batch-size is 1000000"),
                                               ("--eval-batches", "100000", "--eval-batches x --batch-size is "
                                                                            "10000000")])
def test_unroll_checks_its_batches_against_the_training_set_before_compiling(tmp_path, capsys, flag, value, what):
    make_fake_dataset(tmp_path, "mnist", n_train=300, n_test=50)
    argv = ["unroll", "--dataset", "mnist", "--data-dir", str(tmp_path), "--no-verify", "--lr", "0.1",
            "--momentum", "0.9", "--steps", "2", flag, value]
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"shorthorizon unroll: error: {what}, more than the 300 training examples of mnist"]


def test_every_key_of_every_experiment_declares_a_rule_its_presets_keep():
    for name in experiments.names():
        module = experiments.get(name)
        for preset, config in module.PRESETS.items():
            missing = [f.name for f in dataclasses.fields(config) if configlib.rule_of(config, f.name) is None]
            assert not missing, f"{name}: keys without a rule: {missing}"
            module.validate(config)  # a preset breaks no rule


# (command, --set KEY=VALUE: a family, then a key of another family's; the key named, the family that reads it)
UNREAD = [
    ("offline", ("schedule=cosine", "decay_exponent_range=0.1,10"), "decay_exponent_range", "inverse-time"),
    ("offline", ("optimizer=sgd", "momentum=0.5"), "momentum", "momentum, adam, adamw"),
    ("truncated", ("schedule=linear", "init_decay_exponent=3"), "init_decay_exponent", "inverse-time"),
    ("bias", ("schedule=constant", "decay_steps=100"), "decay_steps", "inverse-time, exponential"),
    ("bias", ("optimizer=sgd", "momentum=0.5"), "momentum", "momentum, adam, adamw"),
]


@pytest.mark.parametrize("command, settings, name, readers", UNREAD, ids=[f"{c}:{s[1]}" for c, s, _, _ in UNREAD])
def test_a_key_the_chosen_family_does_not_read_is_refused(command, settings, name, readers):
    """A key set away from its default under a schedule or optimizer that never reads it was
    silently ignored: the run went on without it. (The command line prints the error as the
    probes above show; here the config alone, so that a missing check fails fast, not by running.)"""
    module = experiments.get(command)
    config = configlib.resolve(module.PRESETS, "quick", configlib.parse_overrides(list(settings)))
    with pytest.raises(ValueError) as error:
        module.validate(config)
    family = settings[0].replace("=", " '") + "'"
    assert str(error.value) == (f"config key {name!r} is not read: {family} has no "
                                f"{name.removeprefix('init_').removesuffix('_range')}; drop it, or set "
                                f"{family.split()[0]} to one that has ({readers})")


def test_every_preset_passes_under_every_schedule_and_optimizer():
    """The unread-key check compares a key with its class default: a user who changes only the
    family of a preset is never refused for a value the preset set; and a key the family reads
    may take any value."""
    for name in ("offline", "truncated", "bias"):
        module = experiments.get(name)
        for config in module.PRESETS.values():
            for schedule in optim.SCHEDULES:
                for optimizer in optim.OPTIMIZERS:
                    validate_problem(dataclasses.replace(config, schedule=schedule, optimizer=optimizer), 10**6)
    validate_problem(dataclasses.replace(experiments.get("offline").PRESETS["quick"], schedule="exponential",
                                         decay_steps=100.0, optimizer="adam", momentum=0.5), 3000)


@pytest.mark.parametrize("settings, entry, wanted", [
    (("schedule=cosine",), "final_fraction:0.5:2", "0 < LOW < HIGH <= 1"),  # above 1 the lr grows: no decay
    (("schedule=exponential",), "decay_rate:0.01:1.5", "0 < LOW < HIGH <= 1"),
    (("optimizer=adam",), "b2:0.9:1", "0 < LOW < HIGH < 1"),  # b2 = 1: the second moment never moves from 0
    (("optimizer=adam",), "momentum:0.5:1", "0 <= LOW < HIGH < 1"),
])
def test_an_adapted_box_past_the_values_its_hyperparameter_takes_is_refused(settings, entry, wanted):
    """``adapt=final_fraction:0.5:2`` was accepted: a box of values the schedule does not mean."""
    module = experiments.get("offline")
    config = configlib.resolve(module.PRESETS, "quick", configlib.parse_overrides([*settings, f"adapt={entry}"]))
    with pytest.raises(ValueError) as error:
        module.validate(config)
    assert str(error.value) == f"config key 'adapt': the bounds of {entry.split(':')[0]!r} must satisfy {wanted}, " \
                               f"got {entry!r}"


def test_every_default_box_keeps_its_limits_and_a_widened_box_stops_there():
    """A box's default lies within the values its hyperparameter may take, and moving out a bound
    that a fit sits at (pipeline.widened) stops at them: a final fraction's box at 1 stays."""
    for cls in optim.SCHEDULES.values():
        for name, p in cls.hyperparameters.items():
            assert p.limits.holds(p.box[0]) and p.limits.holds(p.box[1]), (cls.name, name)
    for name, (low, high) in ADAPT_RANGES.items():
        assert optim.LIMITS.get(name, optim.Limits()).holds(low) and optim.LIMITS.get(name, optim.Limits()).holds(high)
    config = dataclasses.replace(experiments.get("offline").PRESETS["quick"], schedule="cosine",
                                 adapt=("final_fraction",), horizons=(100, 300))
    assert pipeline.widened(config, {"lr": 0.01, "final_fraction": 1.0}) is None
    wider = pipeline.widened(config, {"lr": 0.01, "final_fraction": 1e-3})
    assert wider.adapt == (f"final_fraction:{1e-3 / 10 ** config.zoom_width!r}:1.0",)


def test_a_key_without_a_rule_is_refused_and_a_new_default_keeps_the_rule():
    @dataclasses.dataclass(frozen=True)
    class Base:
        steps: int = key(10, POSITIVE)

    @dataclasses.dataclass(frozen=True)
    class Longer(Base):
        steps: int = 20

    @dataclasses.dataclass(frozen=True)
    class Bare(Base):
        lr: float = 0.1

    configlib.check(Longer())
    with pytest.raises(ValueError, match=r"config key 'steps' must be positive and finite, got 0"):
        configlib.check(Longer(steps=0))
    with pytest.raises(ValueError, match=r"config key 'steps' takes int values, got 2.5"):
        configlib.check(Longer(steps=2.5))
    with pytest.raises(TypeError, match="config key 'lr' of Bare declares no rule"):
        configlib.check(Bare())


def test_a_summary_with_non_finite_numbers_flags_them_and_says_so(tmp_path, capsys):
    summary = RunDir(tmp_path).write_summary({"fixed": {"final_loss": math.nan, "lr": 0.5}, "curve": [1.0, math.inf]})
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored["fixed"] == {"final_loss": None, "lr": 0.5} and stored["curve"] == [1.0, None]
    assert stored["non_finite"] == summary["non_finite"] == ["fixed.final_loss", "curve[1]"]
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path / 'summary.json'}: 2 number(s) came out non-finite (null there, listed in non_finite): "
        "fixed.final_loss, curve[1]"]
    assert "non_finite" not in RunDir(tmp_path / "finite").write_summary({"loss": 1.0})


def test_reproduce_with_a_bad_value_prints_its_error_line_alone(tmp_path, capsys):
    """``reproduce --set dim=abc`` said which experiments the key applies to, then the error: two
    lines (the probe's case). The note on where a key applies comes once every value is good."""
    out = tmp_path / "reproduction"
    assert main(["reproduce", "--out", str(out), "--set", "dim=abc"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "config key 'dim'" in lines[0], lines
    assert not out.exists()
