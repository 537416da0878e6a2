"""Configs, the results folder and the executors' resume behaviour."""

import dataclasses
import os

import numpy as np
import pytest

from shorthorizon.config import parse_overrides, resolve
from shorthorizon.results import RunDir
from shorthorizon.runners import Unit, run_units


@dataclasses.dataclass(frozen=True)
class Demo:
    steps: int = 10
    lr: float = 0.1
    horizons: tuple[int, ...] = (1, 2)
    x64: bool = False


PRESETS = {"quick": Demo(), "paper": Demo(steps=1000)}


def test_resolve_applies_typed_overrides():
    config = resolve(PRESETS, "paper", parse_overrides(["lr=0.5", "horizons=3,4,5", "x64=true"]))
    assert config == Demo(steps=1000, lr=0.5, horizons=(3, 4, 5), x64=True)
    assert resolve(PRESETS, "quick", {"horizons": "[7, 8]"}).horizons == (7, 8)


@pytest.mark.parametrize("preset,overrides,message", [
    ("huge", {}, "unknown preset 'huge'; choose one of: quick, paper"),
    ("quick", {"stpes": "3"}, "unknown config key 'stpes'"),
    ("quick", {"steps": "ten"}, "bad value 'ten' for config key 'steps'"),
    ("quick", {"x64": "maybe"}, "takes true or false"),
])
def test_resolve_rejects_bad_input(preset, overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve(PRESETS, preset, overrides)


def test_parse_overrides_needs_key_value_and_the_last_of_a_key_wins():
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["steps"])
    assert parse_overrides(["seeds=2", "lr=1", "seeds=1"]) == {"seeds": "1", "lr": "1"}


def test_a_flag_and_a_set_of_the_same_key_are_refused(tmp_path, capsys):
    from shorthorizon.cli import main

    assert main(["bias", "--out", str(tmp_path / "x"), "--seeds", "2", "--set", "seeds=1"]) == 2
    assert "--seeds and --set seeds= both give config key 'seeds'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def square(x):
    square.calls += 1
    return {"value": np.array(x * x), "x": np.array(x)}


def test_run_units_resumes_and_skips_finished(tmp_path):
    run_dir = RunDir(tmp_path)
    units = [Unit(f"u{i}", {"x": i}) for i in range(4)]
    square.calls = 0
    first = run_units(square, units[:2], run_dir)
    assert square.calls == 2
    # an interrupted sweep: the first two are stored; a re-run computes only the rest
    results = run_units(square, units, run_dir)
    assert square.calls == 4
    assert {k: int(v["value"]) for k, v in results.items()} == {"u0": 0, "u1": 1, "u2": 4, "u3": 9}
    assert int(first["u1"]["value"]) == int(results["u1"]["value"])


def test_a_stored_unit_computed_from_other_arguments_is_recomputed(tmp_path, capsys):
    """A unit is stored with its arguments: resuming with the same ones reuses it; a unit of
    the same name whose arguments changed (code that derives them changed) is recomputed and
    said so; a unit stored without a record of its arguments is reused, but one without a
    digest (an older version's: it cannot be verified) is recomputed."""
    run_dir = RunDir(tmp_path)
    square.calls = 0
    run_units(square, [Unit("u", {"x": 3})], run_dir)
    assert int(run_units(square, [Unit("u", {"x": 3})], run_dir)["u"]["value"]) == 9 and square.calls == 1
    capsys.readouterr()
    assert int(run_units(square, [Unit("u", {"x": 4})], run_dir)["u"]["value"]) == 16 and square.calls == 2
    assert "'u'" in capsys.readouterr().err and set(run_dir.load_unit("u")) == {"value", "x"}
    run_dir.save_unit("bare", {"value": np.array(25)})  # no record of its arguments
    assert int(run_units(square, [Unit("bare", {"x": 5})], run_dir)["bare"]["value"]) == 25 and square.calls == 2
    np.savez(run_dir.unit_path("old"), value=np.array(0), __inputs__=np.asarray('{"x": 6}'))  # no digest
    capsys.readouterr()
    assert int(run_units(square, [Unit("old", {"x": 6})], run_dir)["old"]["value"]) == 36 and square.calls == 3
    assert capsys.readouterr().err.startswith(f"stored unit {run_dir.unit_path('old')} carries no digest")


def test_progress_advances_by_cost_from_the_stored_units(tmp_path, monkeypatch):
    """Units of different cost: the bar's length is their sum, a resumed sweep starts at the
    stored units' cost, and each finished unit moves it by its own cost."""
    import shorthorizon.runners.units as runners

    bars = []

    class Recorder:
        def __init__(self, total, initial, **kwargs):
            self.total, self.n = total, initial
            self.start = initial
            self.seen = []
            bars.append(self)

        def update(self, n):
            self.n += n
            self.seen.append(self.n)

        def set_description_str(self, text, refresh=True):
            self.label = text

        def close(self):
            pass

    monkeypatch.setattr(runners, "tqdm", Recorder)
    run_dir = RunDir(tmp_path)
    units = [Unit(f"u{i}", {"x": i}, cost=10.0**i) for i in range(4)]
    run_units(square, units[1:2], run_dir)
    run_units(square, units, run_dir)
    bar = bars[-1]
    assert bar.total == 1111 and bar.start == 10
    assert bar.seen == [11, 111, 1111] and bar.label == "units (4/4 units)"


def test_failing_unit_keeps_the_finished_ones(tmp_path):
    run_dir = RunDir(tmp_path)

    def flaky(x):
        if x == 2:
            raise RuntimeError("boom")
        return {"x": np.array(x)}

    with pytest.raises(RuntimeError, match="boom"):
        run_units(flaky, [Unit(f"u{i}", {"x": i}) for i in range(4)], run_dir)
    assert run_dir.has_unit("u0") and run_dir.has_unit("u1") and not run_dir.has_unit("u2")
    assert not list((tmp_path / "units").glob(".*tmp"))  # no half-written file


def test_corrupt_unit_names_the_file_and_the_fix(tmp_path):
    run_dir = RunDir(tmp_path)
    run_dir.save_unit("a", {"x": np.arange(3)})
    run_dir.unit_path("a").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match=r"a\.npz is unreadable .*run the same command again to recompute it"):
        run_dir.load_unit("a")


def test_run_units_rejects_unknown_executor_and_duplicate_names(tmp_path):
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        run_units(square, [Unit("a", {"x": 1})], RunDir(tmp_path), executor="dask")
    with pytest.raises(ValueError, match="unique"):
        run_units(square, [Unit("a", {"x": 1}), Unit("a", {"x": 2})], RunDir(tmp_path))


def test_config_and_summary_round_trip(tmp_path):
    run_dir = RunDir(tmp_path)
    run_dir.write_config(Demo(), preset="quick")
    written = run_dir.write_summary({"loss": np.float32(0.5), "curve": np.arange(2)})
    assert run_dir.read_summary() == {"loss": 0.5, "curve": [0, 1], "wall_time_s": written["wall_time_s"]}
    assert written["wall_time_s"] > 0
    config = (tmp_path / "config.json").read_text()
    assert '"horizons": [' in config and '"jax":' in config and '"device":' in config


def test_ray_join_limits_are_set_for_the_block_only(monkeypatch):
    """ensure_ray sets Ray's join limits in the environment while it joins; afterwards a key
    it set is gone and a key the environment had holds its value again, even when joining fails."""
    from shorthorizon.runners.ray import _temporary_env

    monkeypatch.setenv("SHORTHORIZON_TEST_KEPT", "mine")
    monkeypatch.delenv("SHORTHORIZON_TEST_NEW", raising=False)
    with pytest.raises(ConnectionError), _temporary_env({"SHORTHORIZON_TEST_KEPT": "1", "SHORTHORIZON_TEST_NEW": "2"}):
        assert (os.environ["SHORTHORIZON_TEST_KEPT"], os.environ["SHORTHORIZON_TEST_NEW"]) == ("1", "2")
        raise ConnectionError
    assert os.environ["SHORTHORIZON_TEST_KEPT"] == "mine" and "SHORTHORIZON_TEST_NEW" not in os.environ


def test_a_cluster_that_refuses_the_join_is_not_called_absent(monkeypatch):
    """A Ray cluster that answers but refuses this process (authentication) was reported as "no
    Ray cluster answers"; the line now says the join failed and carries Ray's own reason."""
    import ray

    from shorthorizon.runners import ray as runner

    def refuse(**kwargs):
        raise ConnectionError("Authentication failed: the cluster requires a token")

    monkeypatch.setattr(runner, "_check_reachable", lambda address: None)  # it answers
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(RuntimeError, match=r"^cannot join the Ray cluster at 127\.0\.0\.1:6379: Authentication "
                                           r"failed: the cluster requires a token; check --ray-address") as err:
        runner.ensure_ray("127.0.0.1:6379")
    assert "no Ray cluster answers" not in str(err.value)
