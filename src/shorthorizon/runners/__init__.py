"""Executors for units of work: in-process (default) or spread over a Ray cluster.

A *unit* is a named, pure computation ``fn(**kwargs) -> dict of arrays``. Finished units are
stored in the run directory and skipped on the next run, so an interrupted sweep resumes,
and the same seeds give the same numbers on either executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from shorthorizon.results import RunDir

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Unit:
    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def run_units(
    fn: Callable[..., Mapping[str, Any]],
    units: Sequence[Unit],
    run_dir: RunDir,
    executor: str = "local",
    ray_address: str | None = None,
    desc: str = "units",
) -> dict[str, dict[str, np.ndarray]]:
    """Run every unit not yet stored in ``run_dir``; return all results, keyed by unit name."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise ValueError(f"unit names must be unique, got {names}")
    pending = [u for u in units if not run_dir.has_unit(u.name)]
    done = len(units) - len(pending)
    bar = tqdm(total=len(units), initial=done, desc=desc, unit="unit", dynamic_ncols=True)
    try:
        if executor == "local":
            for unit in pending:
                run_dir.save_unit(unit.name, _to_numpy(fn(**unit.kwargs)))
                bar.update()
        else:
            _run_ray(fn, pending, run_dir, ray_address, bar)
    finally:
        bar.close()
    return {name: run_dir.load_unit(name) for name in names}


def _to_numpy(result: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in result.items()}


def ensure_ray(address: str | None = None):
    """Join the Ray cluster at ``address``, or start a local one; return the ray module."""
    try:
        import ray
    except ImportError as err:
        raise RuntimeError(
            "--executor ray needs Ray: pip install 'shorthorizon[ray]' (or pip install ray)"
        ) from err
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


def _run_ray(fn, pending, run_dir, address, bar) -> None:
    if not pending:
        return
    ray = ensure_ray(address)
    remote = ray.remote(lambda kwargs: _to_numpy(fn(**kwargs)))
    refs = {remote.remote(dict(u.kwargs)): u.name for u in pending}
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            run_dir.save_unit(refs.pop(ref), ray.get(ref))
            bar.update()
