"""The results format shared by every experiment command.

A run directory receives ``config.json`` (the run's claim: the experiment's command name,
its resolved config and any extras, plus versions and device), ``summary.json`` (headline
numbers and ``wall_time_s``: the seconds of every process that worked on the folder, a killed
one's excepted), per-unit results under ``units/`` (what makes a run
resumable), curves as ``.npz`` and figures as ``.png`` + ``.pdf``.

Every file is written whole or not at all (a temporary file renamed into place), and a stored
unit carries a SHA-256 digest of its entries inside it: a unit that is unreadable or does not
match its digest is never taken for a result (a check against corruption and edits, not a
signature). A file that cannot be written (a full disk) raises :class:`RunDirError` naming it.

A folder belongs to one command and one resolved config: :meth:`RunDir.write_config` refuses
a different one, naming the keys that differ (``force=True`` deletes the old results and
starts over: the files runs wrote there, recorded in ``.written``, and no other). :meth:`RunDir.open` locks the folder against a second process for as long as
a run uses it (``fcntl.flock`` on ``.lock``, released by the OS when the process dies, so a
crashed run never leaves it stuck). JSON is strict: numbers that are not finite (a diverged
run's loss) are written as ``null``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from shorthorizon import __version__

LOCK = ".lock"  # the lock file inside a run folder; hidden names are not results
# seconds that earlier processes spent on a run folder (written as each one leaves it): a
# resumed run's wall_time_s counts every process, not the resume's alone
SPENT = ".spent"
# the names a folder's runs wrote at its top level besides the fixed ones (curves and figures, named
# by config): --force deletes these and the fixed ones, never a file a run did not write
WRITTEN = ".written"
OWN = ("config.json", "summary.json", "units", "report.md", "claims.json")  # what every run writes under these names


class RunDirError(ValueError):
    """A run folder that cannot be used as asked; the message says why and what to do."""


def _jsonable(obj: Any, non_finite: list[str] | None = None, path: str = "") -> Any:
    """Plain JSON values; floats that are not finite become None (JSON null), and their paths
    (``a.b[0]``) are appended to ``non_finite``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, non_finite, f"{path}.{k}" if path else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, non_finite, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        (non_finite if non_finite is not None else []).append(path)
        return None
    if isinstance(obj, (np.ndarray, np.generic)) or hasattr(obj, "dtype"):  # numpy and jax
        return _jsonable(np.asarray(obj).tolist(), non_finite, path)
    return obj


def to_json(obj: Any, indent: int | None = None) -> str:
    """``obj`` as strict JSON (no NaN or Infinity: non-finite numbers are null)."""
    return json.dumps(_jsonable(obj), indent=indent, allow_nan=False)


# the process's umask, read once (reading means setting it, process-wide: not safe to do while threads write)
_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: never half a file. The
    file gets the permissions of any new file (mkstemp's are owner-only). A file that cannot be
    written (a full disk, no permission) raises RunDirError naming it; the old one, if any,
    stays as it was."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _cannot_write(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _cannot_write(path, err) from None
        raise


def _cannot_write(path: Path, err: OSError) -> RunDirError:
    """The one-line error for a file of a run folder that could not be written."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # a full disk, a quota, a file size limit
        return RunDirError(f"cannot write {path}: no room for it in {path.parent} ({err.strerror}); "
                           "make room there, then run the same command again to resume")
    return RunDirError(f"cannot write {path} ({err.strerror or err}); make it writable, or choose another --out")


def write_json(path: Path, obj: Any) -> None:
    write_text(path, to_json(obj, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (see :func:`_atomic_write`)."""
    _atomic_write(Path(path), lambda f: f.write(text.encode()))


def fmt(x: float | None, spec: str = ".3g") -> str:
    """A summary number for a report: ``format(x, spec)``, or a dash for null."""
    return "—" if x is None else format(x, spec)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is corrupt, not valid JSON ({err})") from None


# `make venv` copies the lock (requirements/lock.txt) here, into the environment's prefix, once
# `pip install --require-hashes` has installed everything it pins: the lock as installed
INSTALLED_LOCK = "shorthorizon-lock.txt"
# installed beside a lock's pins without being pinned: the package itself and the venv's pip
_UNLOCKED = {"shorthorizon", "pip"}


def lock_record(prefix: str | os.PathLike | None = None, installed: Mapping[str, str] | None = None) -> dict:
    """``{"lock_sha256": HEX}`` where this environment is exactly the lock it was installed from.

    The lock is the copy ``make venv`` leaves in ``prefix`` (default ``sys.prefix``) after a
    hash-checked install. Its sha256 is recorded only when the installed distributions
    (``installed``: name -> version, default: what ``importlib.metadata`` finds) are exactly
    its pins; where a package has been added, removed or changed since, ``lock_sha256`` is
    ``None`` and ``lock_differs`` names each difference. Installed without the lock (from PyPI,
    ``pip install -e .``): ``{"lock_sha256": None}``.
    """
    import importlib.metadata
    import re
    import site

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    path = Path(sys.prefix if prefix is None else prefix) / INSTALLED_LOCK
    if not path.is_file():
        return {"lock_sha256": None}
    data = path.read_bytes()
    pins = {canonical(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+)", data.decode(), re.M)}
    if installed is None:  # the environment's own site-packages: not what a library vendors on sys.path
        installed = {dist.metadata["Name"]: dist.version  # (Ray adds its thirdparty_files, colorama's among them)
                     for dist in importlib.metadata.distributions(path=site.getsitepackages()) if dist.metadata["Name"]}
    installed = {canonical(name): version for name, version in installed.items()}
    differs = [f"{name} {installed.get(name, 'missing')} (lock: {version})"
               for name, version in sorted(pins.items()) if installed.get(name) != version]
    differs += [f"{name} {version} (not in the lock)"
                for name, version in sorted(installed.items()) if name not in pins and name not in _UNLOCKED]
    if differs:
        return {"lock_sha256": None, "lock_differs": differs}
    return {"lock_sha256": hashlib.sha256(data).hexdigest()}


def environment() -> dict:
    """Package, JAX and device versions recorded beside every config, and the lock installed."""
    import jax

    return {
        "shorthorizon": __version__,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "device": str(jax.devices()[0]),
        # the process's default float width; the NQM's units compute in float64 whatever it is
        "x64_default": bool(jax.config.jax_enable_x64),
        **lock_record(),
    }


def _command(config: Any) -> str:
    """The experiment a config belongs to: the ``NAME`` of the module defining its class."""
    return getattr(sys.modules.get(type(config).__module__), "NAME", type(config).__name__)


def _differences(stored: Any, new: Any, key: str = "") -> list[str]:
    """``"key: stored -> new"`` for every leaf where two JSON values differ."""
    if isinstance(stored, dict) and isinstance(new, dict):
        return [d for k in {**stored, **new}
                for d in _differences(stored.get(k), new.get(k), f"{key}.{k}" if key else k)]
    return [] if stored == new else [f"{key}: {json.dumps(stored)} -> {json.dumps(new)}"]


_INPUTS = "__inputs__"  # a stored unit's record of what it was computed from
# SHA-256 of a stored unit's other entries, inside the unit: written by the same rename
_DIGEST = "__digest__"


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over every entry's name, dtype, shape and bytes, in name order."""
    sha = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        sha.update(json.dumps([name, array.dtype.str, array.shape]).encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


class UnitError(RuntimeError):
    """A stored unit that is not to be trusted: unreadable, or not matching its digest.
    ``problem`` says which, after the path."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"stored unit {path} {problem}; run the same command again to recompute it")


class RunDir:
    """One experiment's output folder; units stored here are skipped when the run resumes.

    ``force``: the first :meth:`write_config` deletes what a previous run left here and
    starts over, instead of refusing a different config.
    """

    def __init__(self, path: str | os.PathLike, force: bool = False):
        self.path = Path(path)
        self.force = force
        self.started = time.perf_counter()
        self.claimed = False  # whether this run wrote the folder's first config.json
        self.accepted = False  # whether the folder took this run's config (a refused run leaves it as it was)
        self.spent_before: float | None = None  # seconds earlier processes spent here, once read

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | os.PathLike, force: bool = False) -> Iterator["RunDir"]:
        """The run folder ``path``, created if needed and locked against other processes for
        the ``with`` block. A second process is refused with a RunDirError. A block that fails
        having computed nothing (bad data, an interrupt before the first result) takes back the
        ``config.json`` it wrote, so that the corrected command may use the folder; a folder
        this call created is removed again when the block leaves nothing in it."""
        run_dir = cls(path, force)
        if run_dir.path.exists() and not run_dir.path.is_dir():
            raise RunDirError(f"{run_dir.path} is a file, not a folder; choose another --out")
        run_dir._check_not_foreign()  # before the lock file: such a folder is never written into
        created = next((p for p in reversed((run_dir.path, *run_dir.path.parents)) if not p.exists()), None)
        try:
            run_dir.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(run_dir.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # the folder, or its lock file (a folder in the lock's place: name it)
            lock = str(err.filename) == str(run_dir.path / LOCK) and run_dir.path.is_dir()
            raise RunDirError(f"cannot write to {run_dir.path / LOCK if lock else run_dir.path} ({err.strerror}); "
                              + (f"remove it (a run's lock file is {LOCK}, a plain file)" if lock
                                 else "choose a writable --out")) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise RunDirError(f"{run_dir.path} is in use by another run (process {holder}); "
                                  "wait for it to finish, or choose another --out") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield run_dir
            except BaseException:
                if run_dir.claimed and run_dir._results() == ["config.json"]:
                    (run_dir.path / "config.json").unlink()
                with contextlib.suppress(RunDirError):  # (a full disk) the error on its way out says more
                    run_dir._leave(created)
                raise
            run_dir._leave(created)
        finally:
            os.close(fd)  # releases the lock

    def _leave(self, created: Path | None) -> None:
        """Remove the folder ``created`` when nothing is in it, else record the seconds spent."""
        # still holding the lock: no other process can start in a folder being removed
        if created is not None and not self._results():
            shutil.rmtree(created, ignore_errors=True)
        elif self.accepted and (self.path / "config.json").exists():
            write_text(self.path / SPENT, f"{self.total_elapsed()!r}\n")

    def _check_not_foreign(self) -> None:
        """RunDirError when the folder holds files but no ``config.json``: not a run's."""
        if not (self.path / "config.json").exists() and self._results():
            raise RunDirError(f"{self.path} is not empty and holds no shorthorizon run (no config.json); "
                              "choose a new or empty --out")

    def _results(self) -> list[str]:
        """Names in the folder other than hidden ones (the lock, temporary files)."""
        return [p.name for p in self.path.iterdir() if not p.name.startswith(".")] if self.path.is_dir() else []

    # --- config and summary -------------------------------------------------------
    def write_config(self, config: Any, **extra: Any) -> None:
        """Claim the folder for ``config`` (and ``extra``, e.g. resolved dataset names) and
        write ``config.json``. Raises RunDirError when the folder holds another command's or
        another config's results, or files that are not a run's."""
        claim = _jsonable({"command": _command(config), "config": config, **extra})
        path = self.path / "config.json"
        forced = self.force and path.exists()
        if forced:
            self._start_over()
        if path.exists():
            self._check_claim(path, claim)
        else:
            if not forced:  # a forced folder was a run's: what it kept is the user's
                self._check_not_foreign()
            self.claimed = True
        write_json(path, {**claim, "environment": environment()})
        self.accepted = True

    def _start_over(self) -> None:
        """Delete what runs wrote here (:data:`OWN`, the names recorded in :data:`WRITTEN`, the
        seconds spent; in ``units/`` the stored units and their partial writes); say on stderr
        what stays: files no run wrote (a user's notes, in ``units/`` too), and curves and
        figures of a version that kept no record of them."""
        written = {*OWN, *self._written()}
        kept = []
        for name in self._results():
            target = self.path / name
            if name not in written:
                kept.append(name)
            elif name == "units" and target.is_dir() and not target.is_symlink():
                for entry in target.iterdir():
                    if entry.is_file() and entry.name.endswith((".npz", ".tmp")):
                        entry.unlink()
                    else:
                        kept.append(f"units/{entry.name}")
                if not any(target.iterdir()):
                    target.rmdir()
            elif target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        for name in (SPENT, WRITTEN):
            (self.path / name).unlink(missing_ok=True)
        self.force = False  # started over once; what this run writes stays
        if kept:
            print(f"{self.path}: --force deleted the results runs wrote and kept {len(kept)} other file(s): "
                  f"{', '.join(sorted(kept))}", file=sys.stderr)

    def _written(self) -> list[str]:
        """The top-level names runs recorded writing here (:data:`WRITTEN`)."""
        with contextlib.suppress(OSError, ValueError):  # none yet, or unreadable: the fixed names alone
            names = read_json(self.path / WRITTEN)
            if isinstance(names, list):
                return [n for n in names if isinstance(n, str)]
        return []

    def _write(self, name: str, write) -> Path:
        """Write the top-level file ``name`` (:func:`_atomic_write`), recorded in :data:`WRITTEN`
        first: a file on disk is always one --force may delete."""
        written = self._written()
        if name not in written:
            write_json(self.path / WRITTEN, sorted([*written, name]))
        _atomic_write(self.path / name, write)
        return self.path / name

    def _check_claim(self, path: Path, claim: dict) -> None:
        fix = "use a new --out, or --force to start over (deletes the results there)"
        try:
            stored = read_json(path)
        except ValueError as err:
            raise RunDirError(f"{err}; {fix}") from None
        if not isinstance(stored, dict) or "config" not in stored:
            raise RunDirError(f"{path} is not a shorthorizon run's config; {fix}")
        stored = {k: v for k, v in stored.items() if k != "environment"}
        stored.setdefault("command", claim["command"])  # folders written before commands were recorded
        if stored["command"] != claim["command"]:
            raise RunDirError(f"{self.path} holds results of `{stored['command']}`, not "
                              f"`{claim['command']}`; {fix}")
        # a run over more (or fewer) seeds resumes: seed k's units are the same at any count
        # (config.seeded gives each the single-seed run's config), and the summary covers the new count
        configs = [{k: v for k, v in c.items() if k != "seeds"} for c in (stored.pop("config"), claim["config"])]
        differ = _differences(*configs) + _differences(stored, {k: v for k, v in claim.items() if k != "config"})
        if differ:
            shown = "; ".join(differ[:4]) + (f"; and {len(differ) - 4} more" if len(differ) > 4 else "")
            raise RunDirError(f"{self.path} holds results of a different config ({shown}); {fix}")

    def write_summary(self, summary: Mapping[str, Any]) -> dict:
        """Write ``summary.json`` with the run's ``wall_time_s`` (:meth:`total_elapsed`) added, and
        ``non_finite``: the numbers that came out non-finite (null), said on stderr; return it."""
        summary, non_finite = {**summary, "wall_time_s": self.total_elapsed()}, []
        _jsonable(summary, non_finite)
        if non_finite:
            summary["non_finite"] = non_finite
            print(f"{self.path / 'summary.json'}: {len(non_finite)} number(s) came out non-finite (null there, "
                  f"listed in non_finite): {', '.join(non_finite[:5])}", file=sys.stderr)
        write_json(self.path / "summary.json", summary)
        return summary

    def read_summary(self) -> dict:
        return read_json(self.path / "summary.json")

    def read_config(self) -> dict:
        """The resolved config the folder was claimed for (as JSON values)."""
        return read_json(self.path / "config.json")["config"]

    def elapsed(self) -> float:
        """Seconds since this process opened the folder."""
        return time.perf_counter() - self.started

    def total_elapsed(self) -> float:
        """:meth:`elapsed` plus the seconds earlier processes spent on the folder."""
        return self._spent_before() + self.elapsed()

    def _spent_before(self) -> float:
        """The seconds earlier processes spent on the folder (:data:`SPENT`), read once. A record
        that is not a finite number of zero or more (edited, damaged: ``nan``, ``-1e9``) would make
        ``wall_time_s`` null or negative: it is named on stderr and counted as 0."""
        if self.spent_before is None:
            path = self.path / SPENT
            try:
                self.spent_before = float(path.read_text())
            except FileNotFoundError:
                self.spent_before = 0.0
            except (OSError, UnicodeDecodeError, ValueError):
                self.spent_before = math.nan
            if not (math.isfinite(self.spent_before) and self.spent_before >= 0):
                print(f"{path}: not a record of seconds spent (a finite number, 0 or more); counted as 0 in "
                      "wall_time_s", file=sys.stderr)
                self.spent_before = 0.0
        return self.spent_before

    # --- resumable units -----------------------------------------------------------
    def unit_path(self, name: str) -> Path:
        folder = self.path / "units"
        if folder.exists() and not folder.is_dir():
            raise RunDirError(f"{folder} is a file, not the folder of stored units; move it out of "
                              f"{self.path}, then run the same command again")
        if (folder / f"{name}.npz").is_dir():  # no unit can be read there nor written over it
            raise RunDirError(f"{folder / f'{name}.npz'} is a folder where a stored unit belongs; move it out of "
                              f"{folder}, then run the same command again")
        return folder / f"{name}.npz"

    def has_unit(self, name: str) -> bool:
        """Whether a unit of this name is stored (not whether it verifies: :meth:`load_unit`)."""
        return self.unit_path(name).exists()

    def save_unit(self, name: str, result: Mapping[str, Any], inputs: str | None = None) -> None:
        """Store a unit's arrays and, if given, the ``inputs`` it was computed from (any text;
        :func:`shorthorizon.runners.run_units` keeps the unit's arguments there), with the
        digest of both in the same file."""
        arrays = {k: np.asarray(v) for k, v in result.items()}
        if inputs is not None:
            arrays[_INPUTS] = np.asarray(inputs)
        objects = [k for k, v in arrays.items() if v.dtype.hasobject]  # their bytes are addresses: no digest
        if objects:
            raise TypeError(f"unit {name!r}: {', '.join(objects)} hold Python objects, not numbers or text")
        arrays[_DIGEST] = np.asarray(_digest(arrays))
        _atomic_write(self.unit_path(name), lambda f: np.savez(f, **arrays))

    def _read_unit(self, name: str) -> dict[str, np.ndarray]:
        """Every entry of a stored unit, its inputs included; UnitError unless it reads and
        matches its digest."""
        path = self.unit_path(name)
        try:
            with open(path, "rb") as f:
                if not zipfile.is_zipfile(f):  # else np.load would take other bytes for a pickle
                    raise ValueError("not a whole .npz archive: empty, truncated or other bytes")
                f.seek(0)
                with np.load(f, allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else " ".join(str(err).split())
            raise UnitError(path, f"is unreadable ({type(err).__name__}: {reason})") from None
        stored = arrays.pop(_DIGEST, None)
        if stored is None:
            raise UnitError(path, "carries no digest (an older version wrote it), so it cannot be verified")
        if str(stored) != _digest(arrays):
            raise UnitError(path, "does not match its digest (it changed after it was written)")
        return arrays

    def unit_inputs(self, name: str) -> str | None:
        """The ``inputs`` a stored unit was saved with (None: none recorded); UnitError when it
        does not verify."""
        inputs = self._read_unit(name).get(_INPUTS)
        return None if inputs is None else str(inputs)

    def load_unit(self, name: str) -> dict[str, np.ndarray]:
        """A stored unit's arrays, verified against its digest (UnitError otherwise)."""
        return {k: v for k, v in self._read_unit(name).items() if k != _INPUTS}

    # --- curves and figures --------------------------------------------------------
    def save_curves(self, name: str, **arrays: Any) -> Path:
        return self._write(f"{name}.npz", lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))

    def load_curves(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.path / f"{name}.npz") as data:
            return {k: data[k] for k in data.files}

    def save_figure(self, fig, name: str) -> Path:
        import matplotlib.pyplot as plt

        try:
            for ext in ("png", "pdf"):
                self._write(f"{name}.{ext}", lambda f: fig.savefig(f, format=ext, dpi=130, bbox_inches="tight"))
        finally:
            plt.close(fig)
        return self.path / f"{name}.png"
