"""Never silently wrong (issue 32): the dataset the user named or an error, ``--force`` deleting
only what runs wrote, config values that are what they say, and a user's task that raises as
one line naming it. Each case goes through the real command line where it has one: exit
status 2 and one line on stderr naming the file, key, flag or task."""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np
import pytest

from shorthorizon import config as configlib
from shorthorizon.cli import main
from shorthorizon.config import POSITIVE, items, key
from shorthorizon.data import make_fake_dataset
from shorthorizon.results import RunDir


def _one_line(capsys, command: str) -> str:
    """The single line a refused command left on stderr, past its prefix."""
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    prefix = f"shorthorizon {command}: error: "
    assert lines[0].startswith(prefix), lines
    return lines[0][len(prefix):]


# --- config values ------------------------------------------------------------------------

# an int tuple key of each kind of experiment: an overflowing, a fractional and a boolean value
INT_KEYS = [("offline", "horizons"), ("nqm", "fig2_horizons"), ("estimators", "truncations"), ("bias", "short")]
NOT_INTEGERS = ["[1e999]", "[1.5]", "[true]", "1.5", "[-1e999]", "[NaN]"]


@pytest.mark.parametrize("command, name", INT_KEYS)
@pytest.mark.parametrize("value", NOT_INTEGERS)
def test_an_int_key_takes_integers_only_in_one_line(tmp_path, capsys, command, name, value):
    # [1e999] was an OverflowError traceback; [1.5] and [true] were silently read as 1
    out = tmp_path / "run"
    assert main([command, "--out", str(out), "--set", f"{name}={value}"]) == 2
    line = _one_line(capsys, command)
    assert line.startswith(f"bad value {value!r} for config key {name!r}: takes integers, not "), line
    assert not out.exists()


@pytest.mark.parametrize("command, name", INT_KEYS)
def test_an_empty_tuple_is_refused_naming_the_key_before_the_experiment_reads_it(tmp_path, capsys, command, name):
    # offline's validate took max() of it first: "max() arg is an empty sequence"
    assert main([command, "--out", str(tmp_path / "run"), "--set", f"{name}="]) == 2
    line = _one_line(capsys, command)
    assert line.startswith(f"config key {name!r} must be one or more distinct values, each positive"), line
    assert line.endswith("got ()")


def test_integral_floats_and_huge_integers_are_read_as_what_they_are():
    @dataclasses.dataclass(frozen=True)
    class Demo:
        horizons: tuple[int, ...] = key((1,), items(POSITIVE))
        scale: tuple[float, ...] = key((1.0,), items(POSITIVE))

    presets = {"quick": Demo()}
    assert configlib.resolve(presets, "quick", {"horizons": "[1e3, 20]"}).horizons == (1000, 20)
    huge = configlib.resolve(presets, "quick", {"horizons": str(10 ** 400)})
    configlib.check(huge)  # an int past float's range is finite: no OverflowError from the rule
    with pytest.raises(ValueError, match=r"bad value '\[true\]' for config key 'scale': takes numbers, not True"):
        configlib.resolve(presets, "quick", {"scale": "[true]"})


# --- seeds --------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [str(2 ** 64), str(2 ** 32), "-1"])
def test_unroll_seed_follows_the_configs_seed_rule(tmp_path, capsys, seed):
    make_fake_dataset(tmp_path, "mnist", n_train=100, n_test=20)
    assert main(["unroll", "--dataset", "mnist", "--data-dir", str(tmp_path), "--no-verify", "--lr", "0.1",
                 "--momentum", "0.9", "--steps", "1", "--batch-size", "8", "--seed", seed]) == 2
    assert _one_line(capsys, "unroll") == f"--seed must be {configlib.SEED.wanted}, got {seed}"
    assert configlib.SEED.wanted == "in [0, 2**32)" and not configlib.SEED.test(2 ** 32)


# --- wall time --------------------------------------------------------------------------------

@pytest.mark.parametrize("spent", ["nan\n", "-1e9\n", "inf\n", "3 s\n"])
def test_an_unreadable_spent_record_counts_as_zero_and_is_named(tmp_path, capsys, spent):
    @dataclasses.dataclass(frozen=True)
    class Demo:
        steps: int = 10

    with RunDir.open(tmp_path / "run") as run_dir:
        run_dir.write_config(Demo())
    (tmp_path / "run" / ".spent").write_text(spent)
    capsys.readouterr()
    with RunDir.open(tmp_path / "run") as run_dir:
        run_dir.write_config(Demo())
        wall = run_dir.write_summary({})["wall_time_s"]
    assert 0 <= wall < 60  # not null (nan), not negative, not an error
    err = capsys.readouterr().err
    assert f"{tmp_path / 'run' / '.spent'}" in err and "counted as 0" in err, err


# --- --force -----------------------------------------------------------------------------------

NQM_MAP = ["nqm-map", "--set", "dim=8", "--set", "horizon=5", "--set", "fit_steps=2", "--set", "kappas=1,1000",
           "--set", "noises=0,1"]  # the paper's cell (kappa 1000, noise 1) on the grid


def test_force_deletes_what_runs_wrote_and_keeps_the_rest_saying_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*NQM_MAP, "--out", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert {"config.json", "summary.json", "units", "map.png", "map.pdf"} <= set(written), written
    (out / "my_notes.txt").write_text("what I saw")
    (out / "mine").mkdir()
    (out / "mine" / "plot.png").write_bytes(b"not the run's")
    (out / "old_fig.png").write_bytes(b"a user's figure, named like a run's")
    (out / "units" / "why.txt").write_text("a note beside the units")
    capsys.readouterr()
    assert main([*NQM_MAP, "--set", "penalty=999", "--out", str(out), "--force"]) == 0
    assert (out / "my_notes.txt").read_text() == "what I saw"
    assert (out / "mine" / "plot.png").read_bytes() == b"not the run's"
    assert (out / "old_fig.png").read_bytes() == b"a user's figure, named like a run's"
    assert (out / "units" / "why.txt").read_text() == "a note beside the units"
    assert "\"penalty\": 999" in (out / "config.json").read_text()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        [*written, "mine", "my_notes.txt", "old_fig.png"])
    kept = [line for line in capsys.readouterr().err.splitlines() if "--force" in line]
    assert kept == [f"{out}: --force deleted the results runs wrote and kept 4 other file(s): mine, my_notes.txt, "
                    "old_fig.png, units/why.txt"]


def test_force_in_the_library_deletes_recorded_curves_and_figures_only(tmp_path, capsys):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    @dataclasses.dataclass(frozen=True)
    class Demo:
        steps: int = 10

    run = RunDir(tmp_path)
    run.write_config(Demo())
    run.save_curves("curve_a", x=[1, 2])
    run.save_figure(plt.figure(), "fig_a")
    run.save_unit("u", {"x": [1]})
    run.write_summary({"loss": 1.0})
    (tmp_path / "notes.npz").write_bytes(b"mine")
    forced = RunDir(tmp_path, force=True)
    forced.write_config(Demo(steps=3))
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert names == ["config.json", "notes.npz"] and not forced.has_unit("u")
    assert "kept 1 other file(s): notes.npz" in capsys.readouterr().err


# --- the dataset the user named ---------------------------------------------------------------

@pytest.fixture
def data_roots(tmp_path, monkeypatch):
    """A complete Fashion-MNIST and MNIST in the system folder (the fallback that must not be
    taken), HOME and $SHORTHORIZON_DATA kept out; the user's folder ``tmp_path / "mine"``."""
    from shorthorizon.data import store

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(store.ENV_VAR, raising=False)
    monkeypatch.setattr(store, "SYSTEM_ROOT", tmp_path / "system")
    for name in ("fashion-mnist", "mnist"):
        make_fake_dataset(tmp_path / "system", name, n_train=100, n_test=20, seed=1)
    return tmp_path / "mine"


def _unroll(data_dir, dataset="fashion-mnist", *extra):
    return main(["unroll", "--dataset", dataset, "--data-dir", str(data_dir), "--no-verify", "--lr", "0.1",
                 "--momentum", "0.9", "--steps", "1", "--batch-size", "8", "--eval-batches", "1", *extra])


@pytest.mark.parametrize("dataset", ["fashion-mnist", "auto"])
def test_a_data_dir_lacking_a_file_is_an_error_not_the_system_copy(data_roots, capsys, dataset):
    folder = make_fake_dataset(data_roots, "fashion-mnist" if dataset != "auto" else "mnist", n_train=100, n_test=20)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert _unroll(data_roots, dataset) == 2
    line = _one_line(capsys, "unroll")
    assert f"{folder} lacks t10k-labels-idx1-ubyte(.gz)" in line, line


def test_a_folder_in_a_files_place_is_named_not_passed_over_even_unverified(data_roots, capsys):
    folder = make_fake_dataset(data_roots, "fashion-mnist", n_train=100, n_test=20)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    (folder / "train-labels-idx1-ubyte.gz").mkdir()
    assert _unroll(data_roots) == 2  # with --no-verify
    line = _one_line(capsys, "unroll")
    assert f"{folder} lacks train-labels-idx1-ubyte(.gz) ({folder / 'train-labels-idx1-ubyte.gz'} is not a " \
           "file)" in line, line


def test_a_data_dir_holding_the_dataset_is_used(data_roots, capsys):
    make_fake_dataset(data_roots, "fashion-mnist", n_train=100, n_test=20)
    assert _unroll(data_roots) == 0


def _swap_labels(path):
    """Swap two different labels of an uncompressed IDX labels file in place: the same size, and
    the modification time put back."""
    import numpy as np

    stat = path.stat()
    data = bytearray(path.read_bytes())
    labels = np.frombuffer(bytes(data[8:]), np.uint8)
    i, j = 0, int(np.flatnonzero(labels != labels[0])[0])
    data[8 + i], data[8 + j] = data[8 + j], data[8 + i]
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_verification_is_keyed_by_content_not_size_and_time(data_roots, monkeypatch):
    import gzip

    from shorthorizon.data import ChecksumError, load_dataset, registry, store

    folder = make_fake_dataset(data_roots, "mnist", n_train=100, n_test=20)
    for f in folder.iterdir():  # gunzipped: a swap keeps the size
        (folder / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
        f.unlink()
    spec = registry.get_spec("mnist")
    digests = {m: f"sha256:{store.hashlib.sha256((folder / m).read_bytes()).hexdigest()}" for m in spec.members}
    monkeypatch.setitem(registry.SPECS, "mnist", dataclasses.replace(spec, digests=digests))
    assert store.dataset_status("mnist", data_roots).verified
    load_dataset("mnist", data_roots)
    _swap_labels(folder / "train-labels-idx1-ubyte")
    status = store.dataset_status("mnist", data_roots)
    assert not status.verified and "train-labels-idx1-ubyte" in status.problem
    with pytest.raises(ChecksumError, match="train-labels-idx1-ubyte: SHA256 .* does not match"):
        load_dataset("mnist", data_roots)


def test_a_verified_gzip_file_is_not_decompressed_again(data_roots, monkeypatch):
    import gzip

    from shorthorizon.data import registry, store

    folder = make_fake_dataset(data_roots, "mnist", n_train=100, n_test=20)
    spec = registry.get_spec("mnist")
    digests = {m: f"sha256:{store.hashlib.sha256(gzip.decompress((folder / f'{m}.gz').read_bytes())).hexdigest()}"
               for m in spec.members}
    monkeypatch.setitem(registry.SPECS, "mnist", dataclasses.replace(spec, digests=digests))
    assert store.dataset_status("mnist", data_roots).verified
    calls = []
    monkeypatch.setattr(gzip, "decompress", lambda data: calls.append(1))
    assert store.dataset_status("mnist", data_roots).verified and calls == []


# --- a user's task that raises ----------------------------------------------------------------

USER_TASKS = '''
import jax
import jax.numpy as jnp
from shorthorizon.tasks import mlp


def exits(input_shape, num_classes):
    import sys
    sys.exit(7)


def _base(input_shape, num_classes):
    return mlp(input_shape, hidden=(8,), num_classes=num_classes)


def key_error(input_shape, num_classes):
    return {}["width"]


def two_lines(input_shape, num_classes):
    raise RuntimeError("no device\\nsecond line of the message")


def zero_division(input_shape, num_classes):
    return _base(input_shape, num_classes)._replace(loss=lambda p, s, b, k: 1 / 0)


def assertion(input_shape, num_classes):
    def loss(p, s, b, k):
        assert b[0].ndim == 2, "wants flat images"
    return _base(input_shape, num_classes)._replace(loss=loss)


def per_example(input_shape, num_classes):
    task = _base(input_shape, num_classes)

    def loss(p, s, b, k):
        value, aux = task.loss(p, s, b, k)
        return value * jnp.ones(b[0].shape[0]), aux
    return task._replace(loss=loss)


def bare_loss(input_shape, num_classes):
    task = _base(input_shape, num_classes)
    return task._replace(loss=lambda p, s, b, k: task.loss(p, s, b, k)[0])


def python_float(input_shape, num_classes):
    return _base(input_shape, num_classes)._replace(loss=lambda p, s, b, k: (2.5, (s, {})))


def integer_params(input_shape, num_classes):
    task = _base(input_shape, num_classes)
    return task._replace(init=lambda key: jax.tree.map(lambda a: a.astype(jnp.int32), task.init(key)))
'''

# task spec -> the one line's text after "task SPEC" (and a colon, but for the factory's)
USER_ERRORS = {
    "user_tasks:key_error": r"for images of shape \(28, 28, 1\), 10 classes: KeyError: 'width'$",
    "user_tasks:two_lines": r"for images of shape \(28, 28, 1\), 10 classes: RuntimeError: no device$",
    "user_tasks:zero_division": r"its loss on a batch of 2 images of shape \(28, 28, 1\) fails: ZeroDivisionError: "
                                r"division by zero$",
    "user_tasks:assertion": r"its loss on a batch of 2 images of shape \(28, 28, 1\) fails: AssertionError: "
                            r"wants flat images$",
    "user_tasks:per_example": r"its loss on a batch of 2 images of shape \(28, 28, 1\) has shape \(2,\), not a "
                              r"scalar; return the mean over the batch",
    "user_tasks:bare_loss": r"its loss on a batch of 2 images of shape \(28, 28, 1\) gives a float32 array, not "
                            r"\(loss, \(model_state, metrics\)\)",
    "user_tasks:python_float": r"its loss on a batch of 2 images of shape \(28, 28, 1\) is a Python number, not "
                               r"computed from the parameters",
    "user_tasks:integer_params": r"init gives int32 parameters \(.*\); training differentiates every "
                                 r"parameter: make them floating-point",
    "broken_import:net": r"importing module 'broken_import' fails: KeyError: 'width'$",
    # sys.exit in a factory or at import: a SystemExit, not an Exception (it exited 7 or 5 without a word)
    "user_tasks:exits": r"for images of shape \(28, 28, 1\), 10 classes: SystemExit: 7$",
    "exits_at_import:net": r"importing module 'exits_at_import' fails: SystemExit: 5$",
}


@pytest.fixture
def user_tasks(tmp_path, monkeypatch):
    (tmp_path / "user_tasks.py").write_text(USER_TASKS)
    (tmp_path / "broken_import.py").write_text('SETTINGS = {}\nWIDTH = SETTINGS["width"]\n\n\n'
                                               'def net(input_shape, num_classes):\n    pass\n')
    (tmp_path / "exits_at_import.py").write_text('import sys\nsys.exit(5)\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("user_tasks", "broken_import", "exits_at_import"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("spec", USER_ERRORS)
def test_a_users_task_that_raises_is_one_line_naming_it_before_any_work(user_tasks, tmp_path, capsys, spec):
    from shorthorizon.tasks import make_task
    from shorthorizon.tasks.registry import TaskError

    sep = " " if USER_ERRORS[spec].startswith("for images") else ": "
    with pytest.raises(TaskError, match=f"^task {spec}{sep}{USER_ERRORS[spec]}") as err:
        make_task(spec, (28, 28, 1), 10)
    assert "\n" not in str(err.value) and isinstance(err.value, ValueError)
    make_fake_dataset(tmp_path / "data", "mnist", n_train=100, n_test=20)
    assert _unroll(tmp_path / "data", "mnist", "--task", spec) == 2
    assert _one_line(capsys, "unroll").startswith(f"task {spec}{sep}")


def test_a_data_dir_that_is_not_a_folder_breaks_its_rule_before_any_experiment(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class Demo:
        data_dir: str = key("", configlib.DATA_DIR)

    presets = {"quick": Demo()}
    configlib.check(configlib.resolve(presets, "quick", {"data_dir": str(tmp_path)}))
    configlib.check(Demo())
    with pytest.raises(ValueError, match=r"^config key 'data_dir' must be an existing folder, or empty \(the usual "
                                         r"places\), got '/nonexistent'$"):
        configlib.resolve(presets, "quick", {"data_dir": "/nonexistent"})


def test_no_warm_start_poses_the_problem_from_the_initial_weights(tmp_path):
    """``warm_start_steps=0`` (its rule allows 0) was an IndexError while tracing a scan of no
    steps; now the problem starts from the task's initial weights, untouched, at step 0."""
    import jax

    from shorthorizon.data import make_fake_dataset
    from shorthorizon.offline_problem import OfflineConfig, OfflineFit

    make_fake_dataset(tmp_path, "mnist", n_train=300, n_test=200, seed=0)
    fit = OfflineFit.from_config(OfflineConfig(dataset="mnist", data_dir=str(tmp_path), verify=False,
                                               warm_start_steps=0, eval_batches=2))
    init_key, _ = jax.random.split(fit.keys["warm_start"])
    for got, want in zip(jax.tree.leaves(fit.problem.params), jax.tree.leaves(fit.offline.task.init(init_key))):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)  # jit's rounding of the draw, not a step of 0.1
    assert int(fit.problem.state.step) == 0 and fit.start_loss() > 0


@pytest.mark.parametrize("change, error", [({"schedule": "bogus"}, "config key 'schedule' must be one of inverse-time"),
                                           ({"eval_batches": 0}, "config key 'eval_batches' must be positive"),
                                           ({"optimizer": "sgd", "momentum": 0.5}, "config key 'momentum' is not read")])
def test_the_python_api_checks_its_config_as_the_command_line_does(tmp_path, change, error):
    """``OfflineFit.from_config`` read its config unchecked: ``schedule="bogus"`` was a bare
    KeyError, ``eval_batches=0`` a problem posed on no batches. Its check is the commands' own,
    before any data is read (the folder here holds none)."""
    from shorthorizon.offline_problem import OfflineConfig, OfflineFit

    with pytest.raises(ValueError, match=f"^{error}"):
        OfflineFit.from_config(OfflineConfig(dataset="mnist", data_dir=str(tmp_path), verify=False, **change))


def test_a_folder_in_the_locks_place_is_named_not_the_run_folder(tmp_path):
    """``.lock`` replaced by a folder: the error names the lock and what to do, not "choose a
    writable --out" for a folder that is writable (the probe's case)."""
    from shorthorizon.results import LOCK, RunDirError

    (tmp_path / "run" / LOCK).mkdir(parents=True)
    with pytest.raises(RunDirError, match=rf"^cannot write to {tmp_path / 'run' / LOCK} \(Is a directory\); remove it"):
        with RunDir.open(tmp_path / "run"):
            pass
    with pytest.raises(RunDirError, match="choose a writable --out"):  # a folder that cannot be made
        (tmp_path / "file").write_text("")
        with RunDir.open(tmp_path / "file" / "run"):
            pass


def test_unroll_with_stdout_closed_says_so_instead_of_losing_its_result(tmp_path):
    """``unroll ... >&-``: Python starts with ``sys.stdout`` None and drops what is printed, so the
    JSON result vanished with exit 0 (the probe's case); now one line and exit 2."""
    import subprocess

    make_fake_dataset(tmp_path, "mnist", n_train=100, n_test=20)
    args = ["unroll", "--dataset", "mnist", "--data-dir", str(tmp_path), "--no-verify", "--lr", "0.1",
            "--momentum", "0.9", "--steps", "1", "--batch-size", "8", "--eval-batches", "1"]
    closed = subprocess.run(f"{sys.executable} -m shorthorizon.cli {' '.join(args)} >&-", shell=True,
                            stderr=subprocess.PIPE, text=True)
    assert closed.returncode == 2 and closed.stderr.strip().splitlines() == [
        "shorthorizon unroll: error: standard output is closed, and the result is printed there: redirect it to a "
        "file (> result.json) instead of closing it"]


def test_a_folder_in_a_stored_units_place_is_named_before_anything_runs(tmp_path):
    """A stored unit replaced by a folder: it was said to be "recomputed", then writing it failed
    (the probe's case). Neither can be done there: one line names it and the fix, up front."""
    from shorthorizon.results import RunDirError
    from shorthorizon.runners import Unit, run_units

    run_dir = RunDir(tmp_path)
    (tmp_path / "units" / "square.npz").mkdir(parents=True)
    with pytest.raises(RunDirError, match=r"square\.npz is a folder where a stored unit belongs; move it out"):
        run_units(lambda x: {"value": np.array(x * x)}, [Unit("square", {"x": 3})], run_dir)
