"""Run folders never mix, lose or fake results; every bad input is one clear line.

The folder's claim (command + resolved config), its lock, strict JSON, the command line's
refusals (exit status 2, one line, the folder as it was), what is on disk (a stored unit that
fails its check is named and recomputed; a full disk leaves no half-written file), Ctrl-C from
the first instant, and fault injection: SIGKILL at random points, resume, and compare with an
uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shorthorizon.cli import main
from shorthorizon.data import make_fake_dataset
from shorthorizon.experiments import nqm, nqm_map, offline
from shorthorizon.results import RunDir, RunDirError, write_json


@dataclasses.dataclass(frozen=True)
class Demo:
    steps: int = 10
    lr: float = 0.1


def _files(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (the lock aside) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != ".lock"}


# --- the claim and the lock (library) ------------------------------------------------------

def test_claim_refuses_another_config_naming_the_keys_and_force_starts_over(tmp_path):
    RunDir(tmp_path).write_config(Demo(), datasets={"mlp": "mnist"})
    RunDir(tmp_path).save_unit("u", {"x": np.arange(3)})
    before = _files(tmp_path)
    RunDir(tmp_path).write_config(Demo(), datasets={"mlp": "mnist"})  # the same claim resumes
    with pytest.raises(RunDirError, match=r'different config \(steps: 10 -> 3; datasets.mlp: "mnist" -> '
                                          r'"cifar10"\); use a new --out, or --force to start over'):
        RunDir(tmp_path).write_config(Demo(steps=3), datasets={"mlp": "cifar10"})
    assert _files(tmp_path) == before
    forced = RunDir(tmp_path, force=True)
    forced.write_config(Demo(steps=3))
    assert not forced.has_unit("u") and '"steps": 3' in (tmp_path / "config.json").read_text()


def test_claim_refuses_another_command_a_corrupt_config_and_a_foreign_folder(tmp_path):
    RunDir(tmp_path / "a").write_config(nqm.PRESETS["quick"])
    with pytest.raises(RunDirError, match=r"holds results of `nqm`, not `offline`; use a new --out"):
        RunDir(tmp_path / "a").write_config(offline.PRESETS["quick"])
    (tmp_path / "a" / "config.json").write_text('{"config": ')
    with pytest.raises(RunDirError, match=r"a/config\.json is corrupt, not valid JSON .*--force to start over"):
        RunDir(tmp_path / "a").write_config(nqm.PRESETS["quick"])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty and holds no shorthorizon run"):
        RunDir(tmp_path / "b", force=True).write_config(Demo())
    assert (tmp_path / "b" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("command", ["nqm", "reproduce"])
def test_a_folder_that_is_not_the_commands_is_refused_and_left_as_it_was(tmp_path, capsys, command):
    """A folder of other files gets nothing written into it, not even the lock file; a finished
    run of another command is no reproduction either (reproduce wrote its experiments' folders
    and report.md into it)."""
    foreign, finished = tmp_path / "foreign", tmp_path / "offline"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with RunDir.open(finished) as run_dir:
        run_dir.write_config(offline.PRESETS["quick"])
        run_dir.save_unit("u", {"x": np.arange(3)})
        run_dir.write_summary({"loss": 0.5})
    argv = [command, *NQM[1:]] + (["--only", "nqm"] if command == "reproduce" else [])
    for out, message in [(foreign, f"{foreign} is not empty and holds no shorthorizon "),
                         (finished, f"{finished} holds results of `offline`, not ")]:
        before = {p.name for p in out.iterdir()}, _files(out)
        assert main([*argv, "--out", str(out)]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"shorthorizon {command}: error: {message}"), lines
        assert ({p.name for p in out.iterdir()}, _files(out)) == before


def test_reproduce_takes_its_own_folder(tmp_path):
    """A folder holding a reproduction's report.md and an experiment's folder is its own."""
    out = tmp_path / "reproduction"
    (out / "nqm").mkdir(parents=True)
    (out / "report.md").write_text("an earlier report")
    assert main(["reproduce", *NQM[1:], "--only", "nqm", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["nqm", "report.md", "summary.json"]
    assert "nqm/config.json" in (out / "report.md").read_text()


HOLD_LOCK = """
import sys
from shorthorizon.results import RunDir
with RunDir.open(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_second_process_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["nqm", "--out", str(out)]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"shorthorizon nqm: error: {out} is in use by another run (process {holder.pid}); "
            "wait for it to finish, or choose another --out"]
    finally:
        holder.kill()
        holder.wait()
    with RunDir.open(out) as run_dir:  # the OS released the dead process's lock
        run_dir.write_config(Demo())
        with pytest.raises(RunDirError, match="in use"), RunDir.open(out):
            pass  # another open of a held folder is refused within one process too


def test_a_refused_run_leaves_no_folder_behind(tmp_path):
    with pytest.raises(ValueError, match="refused"), RunDir.open(tmp_path / "new" / "run"):
        raise ValueError("refused")
    assert not (tmp_path / "new").exists()


def test_a_run_that_fails_before_any_result_takes_back_its_claim(tmp_path, capsys, data):
    """A dataset found but unreadable fails once the folder is claimed, before anything is
    computed: the run takes back its config.json (and removes the folder it made), so the
    corrected command is not refused as another config's run."""
    corrupt = tmp_path / "corrupt"
    shutil.copytree(data, corrupt)
    images = next(corrupt.rglob("train-images*"))
    images.write_bytes(images.read_bytes()[:100])
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new", tmp_path / "empty"):
        assert main([*_online(corrupt), "--out", str(out)]) == 2
        assert "error" in capsys.readouterr().err
        assert (out.name == "empty" or not out.exists()) and not (out / "config.json").exists()
    assert main([*_online(data), "--set", "mlp_steps=10", "--out", str(out)]) == 0  # not refused


def test_wall_time_counts_every_process_a_refused_one_aside_and_force_starts_it_over(tmp_path):
    out = tmp_path / "run"
    with RunDir.open(out) as run_dir:
        run_dir.write_config(Demo())
        first = run_dir.write_summary({})["wall_time_s"]
    assert float((out / ".spent").read_text()) >= first  # what this process spent, for the next one
    (out / ".spent").write_text("1000.0\n")  # as if earlier processes had spent 1000 s
    with RunDir.open(out) as run_dir:  # a resume
        run_dir.write_config(Demo())
        assert 1000 < run_dir.write_summary({})["wall_time_s"] < 1001
    spent = (out / ".spent").read_text()
    with pytest.raises(RunDirError, match="different config"), RunDir.open(out) as run_dir:
        run_dir.write_config(Demo(steps=2))
    assert (out / ".spent").read_text() == spent  # a refused run leaves the folder as it was
    with RunDir.open(out, force=True) as run_dir:
        run_dir.write_config(Demo(steps=2))
        assert run_dir.write_summary({})["wall_time_s"] < 1


def test_json_is_strict_with_non_finite_numbers_as_null(tmp_path, strict_json):
    write_json(tmp_path / "a.json", {"loss": float("nan"), "curve": np.array([1.0, np.inf]),
                                     "low": np.float32("-inf"), "ok": 2.5, "n": np.int64(3)})
    assert strict_json(tmp_path / "a.json") == {"loss": None, "curve": [1.0, None], "low": None, "ok": 2.5, "n": 3}
    # written atomically, yet with a new file's permissions (as the figures), not the temporary file's 0600
    (tmp_path / "plain").touch()
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


# --- the command line: bad input is one line, exit status 2, and the folder as it was -------

@pytest.mark.parametrize("argv, message", [
    # issue 12, case 4: an unreachable Ray address
    (["nqm", "--out", "{out}", "--executor", "ray", "--ray-address", "127.0.0.1:1"],
     "cannot reach the Ray cluster at 127.0.0.1:1 (Connection refused)"),
    # case 5: NaN or out-of-range values
    (["unroll", "--lr", "nan", "--momentum", "0.9", "--steps", "5"], "--lr must be positive and finite, got nan"),
    (["unroll", "--lr", "inf", "--momentum", "0.9", "--steps", "5"], "--lr must be positive and finite, got inf"),
    (["unroll", "--lr", "-0.1", "--momentum", "0.9", "--steps", "5"], "--lr must be positive and finite, got -0.1"),
    (["unroll", "--lr", "0.1", "--momentum", "1.5", "--steps", "5"], "--momentum must be in [0, 1), got 1.5"),
    (["unroll", "--lr", "0.1", "--momentum", "0.9", "--steps", "5", "--eval-batches", "0"],
     "--eval-batches must be positive and finite, got 0"),
    (["online", "--out", "{out}", "--set", "mlp_init_lrs=nan"], "config key 'mlp_init_lrs' must be one or more distinct values, each positive and finite"),
    (["online", "--out", "{out}", "--set", "momentum=1"], "config key 'momentum' must be in [0, 1), got 1.0"),
    # case 7: tracebacks before
    (["nqm", "--out", "{file}"], "{file} is a file, not a folder; choose another --out"),
    (["nqm", "--out", "/sys/shorthorizon-test/run"], "cannot write to /sys/shorthorizon-test/run"),
    (["unroll", "--lr", "0.1", "--momentum", "0.9", "--steps", "5", "--batch-size", "0"],
     "--batch-size must be positive and finite, got 0"),
    (["online", "--out", "{out}", "--set", "meta_steps=-2"], "config key 'meta_steps' must be positive and finite, got -2"),
    (["offline", "--out", "{out}", "--set", "horizons=0,20"], "config key 'horizons' must be one or more distinct values, each positive and finite, got (0, 20)"),
    # case 8: messages that did not name the key
    (["online", "--out", "{out}", "--set", "mlp_steps=0"], "config key 'mlp_steps' must be positive and finite, got 0"),
    (["online", "--out", "{out}", "--set", "meta_steps=0"], "config key 'meta_steps' must be positive and finite, got 0"),
    (["nqm", "--out", "{out}", "--set", "fixed_fit_steps=0"], "config key 'fixed_fit_steps' must be positive and finite"),
    # found by trying the tool as a new user: flags that were passed over in silence
    (["nqm", "--out", "{out}", "--ray-address", "127.0.0.1:1"], "--ray-address joins a Ray cluster for --executor ray"),
    (["unroll", "--lr", "0.1", "--momentum", "0.9", "--steps", "5", "--data-dir", "{out}"],
     "the data folder {out} does not exist"),
    # case 9: late validation
    (["offline", "--out", "{out}", "--dataset", "foo"], "unknown dataset 'foo'; choose one of: auto, mnist"),
    (["reproduce", "--out", "{out}", "--only", "nqm", "online", "--set", "dimm=200"],
     "unknown config key 'dimm': no experiment of the reproduction has it (nqm, online)"),
])
def test_bad_input_is_one_line_with_status_2_and_leaves_nothing(tmp_path, capsys, argv, message):
    places = {"{out}": str(tmp_path / "run"), "{file}": str(tmp_path / "file")}
    (tmp_path / "file").write_text("keep")
    argv = [places.get(a, a) for a in argv]
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"shorthorizon {argv[0]}: error: "), lines
    assert message.replace("{file}", places["{file}"]).replace("{out}", places["{out}"]) in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and (tmp_path / "file").read_text() == "keep"


@pytest.mark.parametrize("dataset", ["mnist", "auto"])
def test_missing_data_is_one_line_and_refused_before_the_folder_is_made(tmp_path, capsys, monkeypatch, dataset):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SHORTHORIZON_DATA", raising=False)
    monkeypatch.setattr("shorthorizon.data.store.SYSTEM_ROOT", tmp_path / "system")
    assert main(["offline", "--out", str(tmp_path / "run"), "--dataset", dataset]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shorthorizon offline: error: No dataset among mnist")
    assert "shorthorizon data download mnist" in lines[0] and lines[0].endswith("shorthorizon data --help")
    assert not (tmp_path / "run").exists()


# --- what is on disk: verified before it is trusted, never half-written ---------------------

MAP = ["nqm-map", "--set", "dim=8", "--set", "horizon=20", "--set", "fit_steps=20", "--set", "kappas=1,1000",
       "--set", "noises=0,1"]  # four units; the paper's cell (kappa 1000, noise 1) on the grid


@pytest.fixture(scope="module")
def finished_map(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("map") / "run"
    assert main([*MAP, "--out", str(out)]) == 0
    return out


def _set_every_float(path: Path, value: float) -> None:
    """Rewrite a stored unit with every float entry set to ``value``, its other entries kept."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(path, **{k: np.full_like(v, value) if v.dtype.kind == "f" else v for k, v in arrays.items()})


CORRUPTIONS = {  # unit -> what happened to it
    "momentum-kappa1000": lambda path: _set_every_float(path, 12345.0),  # the paper's cell, edited
    "momentum-kappa1": lambda path: path.write_bytes(path.read_bytes()[:500]),  # truncated
    "sgd-kappa1": lambda path: path.write_bytes(b""),
    "sgd-kappa1000": lambda path: path.write_bytes(random.Random(0).randbytes(4000)),
}


def test_a_stored_unit_that_fails_its_check_is_named_and_recomputed(tmp_path, finished_map, capsys, strict_json):
    """Edited numbers (inputs kept), a truncated file, an empty one, random bytes: each unit is
    named in one line and recomputed, and the summary is the uninterrupted run's."""
    out = tmp_path / "run"
    shutil.copytree(finished_map, out)
    for name, corrupt in CORRUPTIONS.items():
        corrupt(out / "units" / f"{name}.npz")
    capsys.readouterr()
    assert main([*MAP, "--out", str(out)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("stored unit ")]
    assert len(said) == len(CORRUPTIONS)
    for name in CORRUPTIONS:
        (line,) = [s for s in said if s.startswith(f"stored unit {out / 'units' / name}.npz ")]
        assert line.endswith("; recomputing it")
        for key, value in RunDir(finished_map).load_unit(name).items():
            np.testing.assert_array_equal(RunDir(out).load_unit(name)[key], value)
    assert _summary(out, strict_json) == _summary(finished_map, strict_json)


def test_units_replaced_by_a_file_is_refused_before_anything_is_computed(tmp_path, finished_map, capsys,
                                                                         monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(finished_map, out)
    shutil.rmtree(out / "units")
    (out / "units").write_text("not a folder")
    before = {k: v for k, v in _files(out).items() if k != ".spent"}

    def fail(**kwargs):
        raise AssertionError("a unit was computed")

    monkeypatch.setattr(nqm_map, "row_unit", fail)
    capsys.readouterr()
    assert main([*MAP, "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"shorthorizon nqm-map: error: {out / 'units'} is a file, not the folder of stored units; "
        f"move it out of {out}, then run the same command again"]
    assert {k: v for k, v in _files(out).items() if k != ".spent"} == before


def test_a_full_disk_names_the_file_and_leaves_nothing_half_written(tmp_path, finished_map, strict_json):
    """The run's files may grow to half the size of its largest figure (RLIMIT_FSIZE: a write
    past it fails as on a full disk): exit status 2, one line naming the file and its folder;
    the figure is not there at all, no temporary file is left, every unit and JSON file that
    is there reads whole; the next run, with room again, finishes as an uninterrupted one."""
    out = tmp_path / "run"
    shutil.copytree(finished_map, out)
    for figure in [*out.glob("*.png"), *out.glob("*.pdf")]:
        figure.unlink()
    limit = (finished_map / "map.png").stat().st_size // 2
    limited = f"import resource; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
    done = subprocess.run([sys.executable, "-c", limited + _AS_FROM_A_TERMINAL, *MAP, "--out", str(out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"shorthorizon nqm-map: error: cannot write {out / 'map.png'}: ") and f"no room for it in {out} (" in last
    assert "Traceback" not in done.stderr and not (out / "map.png").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    for unit in out.glob("units/*.npz"):
        RunDir(out).load_unit(unit.stem)
    strict_json(out)
    if (out / ".spent").exists():
        float((out / ".spent").read_text())
    assert main([*MAP, "--out", str(out)]) == 0
    assert _summary(out, strict_json) == _summary(finished_map, strict_json)
    assert (out / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- interruptions: Ctrl-C and SIGKILL at random points, then resume ------------------------

def _shorthorizon(argv, compiled: Path | None = None) -> subprocess.Popen:
    """``shorthorizon ARGV`` in a new process; ``compiled``: a folder where processes share
    compiled programs (JAX's persistent cache), so a resumed process does not compile again."""
    cache = {"JAX_COMPILATION_CACHE_DIR": str(compiled), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
             "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"} if compiled else {}
    return subprocess.Popen([sys.executable, "-c", _AS_FROM_A_TERMINAL, *argv], env={**os.environ, **cache},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# The CLI as a terminal starts it: with Ctrl-C raising KeyboardInterrupt. A process started in the
# background of a non-interactive shell (as CI may be) inherits SIGINT ignored, and Python then
# leaves it ignored, so the child would never see the test's interrupt.
_AS_FROM_A_TERMINAL = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                       "from shorthorizon.cli import entry; entry()")


def _stop_after(process: subprocess.Popen, out: Path, units: int, delay: float, sig=signal.SIGKILL) -> str:
    """Send ``sig`` once ``units`` units are stored in ``out`` and ``delay`` seconds passed."""
    deadline = time.monotonic() + 300
    while len(list(out.glob("units/*.npz"))) < units and process.poll() is None:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    time.sleep(delay)
    assert process.poll() is None, f"the run finished before it could be stopped ({units} units, {delay:.2f} s)"
    process.send_signal(sig)
    return process.communicate()[1]


def _summary(out: Path, strict_json) -> dict:
    summary = strict_json(out)["summary.json"]  # every JSON file of the folder parses strictly
    assert summary.pop("wall_time_s") > 0
    return summary


NQM = ["nqm", "--set", "dim=12", "--set", "horizon=12", "--set", "fit_steps=4", "--set", "fixed_fit_steps=4",
       "--set", "tail_dims=2", "--set", "fig1_steps=4", "--set", "fig2_horizons=1,2", "--set", "fig2_decay_steps=2"]


@pytest.mark.parametrize("experiment", ["nqm", "online"])
def test_ctrl_c_says_how_to_resume_and_keeps_finished_units(tmp_path, data, experiment):
    """The interrupt lands mid-run: in the NQM's long 'optimized' fit (seconds) after the first
    units, or while an online run's training is in flight (XLA still running work dispatched
    before it: the interpreter's teardown crashed such a process, exit -11, intermittently, so
    this can miss a regression)."""
    out = tmp_path / "run"
    argv, delay = {"nqm": ([*NQM, "--set", "fit_steps=300000"], 0.0),
                   "online": ([*_online(data), "--set", "mlp_steps=3000"], 3.0)}[experiment]
    process = _shorthorizon([*argv, "--out", str(out)])
    err = _stop_after(process, out, units=1, delay=delay, sig=signal.SIGINT)
    assert process.returncode == 130
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"shorthorizon {experiment}: interrupted; run the same command with --out {out} to resume"
    assert list(out.glob("units/*.npz")) and not (out / "summary.json").exists()


def _mapped(process: subprocess.Popen, library: str) -> None:
    """Wait until ``process`` has loaded a shared library whose file name holds ``library``."""
    maps, deadline = Path(f"/proc/{process.pid}/maps"), time.monotonic() + 120
    while library not in maps.read_text():
        assert process.poll() is None and time.monotonic() < deadline, "the program did not start"
        time.sleep(0.002)


@pytest.mark.parametrize("delay", [0.0, 0.2, 0.5, 1.0])
def test_ctrl_c_while_the_program_starts_exits_130_with_the_resume_line(tmp_path, delay):
    """Ctrl-C while the program starts (NumPy, JAX and the experiments loading, the parser
    built): no traceback, no interrupt swallowed (it was, in JAX's garbage-collection callback,
    and the run went on to exit 0), status 130 and the resume line; no folder left behind
    without a stored unit in it. The delay counts from NumPy's loading: before it, the
    interpreter starts (no Python code can take Ctrl-C over sooner) and the console script
    takes it over."""
    out = tmp_path / "run"
    process = _shorthorizon([*NQM, "--set", "fit_steps=300000", "--out", str(out)])
    _mapped(process, "_multiarray_umath")
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.splitlines()[-1] == f"shorthorizon nqm: interrupted; run the same command with --out {out} to resume"
    assert not out.exists() or list(out.glob("units/*.npz"))


SWALLOWED = """
import argparse, gc, signal
from shorthorizon import cli
cli._CtrlC([]).args = argparse.Namespace(command="nqm", out="run")  # as the console script, once a run works
def swallow(phase, info):  # Ctrl-C while a garbage-collection callback runs: raised there, ignored
    gc.callbacks.remove(swallow)
    signal.raise_signal(signal.SIGINT)
    return None
gc.callbacks.append(swallow)
try:
    gc.collect()
    sum(range(100_000_000))
    print("the run went on")
except KeyboardInterrupt:
    print("the run was interrupted")
"""


def test_an_interrupt_swallowed_by_a_callback_still_stops_the_run():
    done = subprocess.run([sys.executable, "-c", SWALLOWED], capture_output=True, text=True, timeout=60)
    assert (done.stdout, done.stderr) == ("the run was interrupted\n", "")


def _online(data: Path) -> list[str]:
    return ["online", "--task", "mlp", "--dataset", "mnist", "--set", f"data_dir={data}", "--set", "verify=false",
            "--set", "mlp_steps=20", "--set", "meta_steps=2", "--set", "interval=5", "--set", "chunks=2",
            "--set", "mlp_batch_size=20", "--set", "mlp_init_lrs=0.05", "--set", "lookaheads=stochastic",
            "--set", "eval_examples=100"]


def _offline(data: Path) -> list[str]:
    return ["offline", "--dataset", "mnist", "--set", f"data_dir={data}", "--set", "verify=false",
            "--set", "horizons=10", "--set", "warm_start_steps=5", "--set", "eval_batches=2",
            "--set", "surface_samples=4", "--set", "surface_chunk=2", "--set", "init_lr0=0.01,0.1",
            "--set", "init_decay_exponent=1,10", "--set", "meta_steps=4", "--set", "meta_chunk=2",
            "--set", "curve_points=2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    make_fake_dataset(folder, "mnist", n_train=300, n_test=100, seed=0)
    return folder


@pytest.mark.parametrize("experiment, units, seeds", [("nqm", 5, (0, 1)), ("offline", 5, (2, 3)),
                                                      ("online", 2, (4, 5))])
def test_killed_runs_resume_to_the_uninterrupted_summary(tmp_path, data, strict_json, experiment, units, seeds):
    """SIGKILL at a random point (after a random number of stored units plus a random delay),
    several times in a row, then resume: the summary equals an uninterrupted run's. The killed
    runs are new processes (sharing compiled programs); the others run in this one."""
    argv = {"nqm": NQM, "offline": _offline(data), "online": _online(data)}[experiment]
    compiled = tmp_path / "compiled"
    assert main([*argv, "--out", str(tmp_path / "clean")]) == 0
    out = tmp_path / "killed"
    for seed in seeds:
        rng = random.Random(seed)
        stored = min(len(list(out.glob("units/*.npz"))), units - 1)
        _stop_after(_shorthorizon([*argv, "--out", str(out)], compiled), out, rng.randint(stored, units - 1),
                    rng.uniform(0, 0.3))
    assert main([*argv, "--out", str(out)]) == 0
    assert _summary(out, strict_json) == _summary(tmp_path / "clean", strict_json)


@pytest.mark.parametrize("command", ["nqm", "online", "offline", "estimators", "truncated", "nqm-map"])
def test_help_lists_every_config_key_with_its_preset_value(capsys, command):
    from shorthorizon import experiments

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # as one line (the list is wrapped)
    config = experiments.get(command).PRESETS["quick"]
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        assert f"{field.name}={','.join(map(str, value)) if isinstance(value, tuple) else value}" in text
