"""The results format shared by every experiment command.

A run directory receives ``config.json`` (resolved config plus versions and device),
``summary.json`` (headline numbers), per-unit results under ``units/`` (what makes a
run resumable), curves as ``.npz`` and figures as ``.png`` + ``.pdf``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from shorthorizon import __version__


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # jax arrays
        return np.asarray(obj).tolist()
    return obj


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n"
    _atomic_write(Path(path), lambda f: f.write(text.encode()))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def environment() -> dict:
    """Package, JAX and device versions recorded beside every config."""
    import jax

    return {
        "shorthorizon": __version__,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "device": str(jax.devices()[0]),
        "x64": bool(jax.config.jax_enable_x64),
    }


class RunDir:
    """One experiment's output folder; units stored here are skipped when the run resumes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()

    # --- config and summary -------------------------------------------------------
    def write_config(self, config: Any, **extra: Any) -> None:
        write_json(self.path / "config.json", {"config": config, **extra, "environment": environment()})

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        write_json(self.path / "summary.json", summary)

    def read_summary(self) -> dict:
        return read_json(self.path / "summary.json")

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    # --- resumable units -----------------------------------------------------------
    def unit_path(self, name: str) -> Path:
        return self.path / "units" / f"{name}.npz"

    def has_unit(self, name: str) -> bool:
        return self.unit_path(name).exists()

    def save_unit(self, name: str, result: Mapping[str, Any]) -> None:
        arrays = {k: np.asarray(v) for k, v in result.items()}
        _atomic_write(self.unit_path(name), lambda f: np.savez(f, **arrays))

    def load_unit(self, name: str) -> dict[str, np.ndarray]:
        path = self.unit_path(name)
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as err:
            raise RuntimeError(
                f"stored unit {path} is unreadable ({err}); delete it and run the same command "
                "again to recompute just that unit"
            ) from err

    # --- curves and figures --------------------------------------------------------
    def save_curves(self, name: str, **arrays: Any) -> Path:
        path = self.path / f"{name}.npz"
        _atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))
        return path

    def load_curves(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.path / f"{name}.npz") as data:
            return {k: data[k] for k in data.files}

    def save_figure(self, fig, name: str) -> Path:
        import matplotlib.pyplot as plt

        for ext in ("png", "pdf"):
            fig.savefig(self.path / f"{name}.{ext}", dpi=130, bbox_inches="tight")
        plt.close(fig)
        return self.path / f"{name}.png"
