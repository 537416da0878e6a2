"""Units of work and the sweep that runs them, in-process or on Ray.

A *unit* is a named, pure computation ``fn(**kwargs) -> dict of arrays``. Finished units are
stored in the run directory and skipped on the next run, so an interrupted sweep resumes,
and the same seeds give the same numbers on either executor.

Units of one sweep may differ in cost (an SMD fit at T = 20,000 against one at T = 100). Each
unit carries an estimate of its ``cost`` in any unit shared by the sweep; the progress bar
advances by cost, not by count, so its time left is right when the costs are.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from shorthorizon.results import RunDir, UnitError
from shorthorizon.runners.ray import run_ray

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Unit:
    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    cost: float = 1.0  # relative to the other units of the sweep: the progress bar's weight


def run_units(
    fn: Callable[..., Mapping[str, Any]],
    units: Sequence[Unit],
    run_dir: RunDir,
    executor: str = "local",
    ray_address: str | None = None,
    desc: str = "units",
) -> dict[str, dict[str, np.ndarray]]:
    """Run every unit not yet stored in ``run_dir`` (or stored but failing its check: see
    :func:`_stored`); return all results, read back verified, keyed by unit name."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    if not units:
        return {}  # no stage to show (e.g. offline's zoom when no horizon is zoomed)
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise ValueError(f"unit names must be unique, got {names}")
    pending = [u for u in units if not _stored(run_dir, u)]
    # the bar's length is the units' cost, its label counts them
    cost, done = {u.name: float(u.cost) for u in units}, len(units) - len(pending)
    bar = tqdm(total=sum(cost.values()), initial=sum(cost.values()) - sum(cost[u.name] for u in pending),
               desc=f"{desc} ({done}/{len(units)} units)", bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]",
               dynamic_ncols=True)

    def work(kwargs):
        return {k: np.asarray(v) for k, v in fn(**kwargs).items()}

    def finished(unit, result):
        nonlocal done
        run_dir.save_unit(unit.name, result, inputs(unit))
        done += 1
        bar.set_description_str(f"{desc} ({done}/{len(units)} units)", refresh=False)
        bar.update(cost[unit.name])

    try:
        if executor == "local":
            for unit in pending:
                finished(unit, work(unit.kwargs))
        else:
            run_ray(work, pending, ray_address, finished)
    finally:
        bar.close()
    return {name: run_dir.load_unit(name) for name in names}


def seed_name(name: str, seed: int) -> str:
    """Seed ``seed``'s unit (or curve file) ``name`` in a run over seeds: seed 0's is ``name``
    itself, so a single-seed run is named as before seeds existed; seed k > 0 adds ``_s{k}``."""
    return f"{name}_s{seed}" if seed else name


def run_seeded(fn: Callable[..., Mapping[str, Any]], units: Sequence[Sequence[Unit]], run_dir: RunDir,
               executor: str = "local", ray_address: str | None = None, desc: str = "units") -> list[dict]:
    """:func:`run_units` of every seed's units in one sweep (``units[k]``: seed k's, named as in a
    single-seed run; stored under :func:`seed_name`), so the executor spreads all seeds' units
    of a stage; per seed, its results keyed by the names given."""
    out = run_units(fn, [dataclasses.replace(u, name=seed_name(u.name, k)) for k, us in enumerate(units) for u in us],
                    run_dir, executor, ray_address, desc)
    return [{u.name: out[seed_name(u.name, k)] for u in us} for k, us in enumerate(units)]


def inputs(unit: Unit) -> str:
    """A unit's arguments as canonical JSON (configs as their fields): what it is stored with,
    so that a unit of the same name computed from other arguments is never taken for it."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {"type": type(value).__name__, **dataclasses.asdict(value)}
        if isinstance(value, (np.ndarray, np.generic)):
            return value.tolist()
        raise TypeError(f"unit {unit.name!r}: an argument of type {type(value).__name__} cannot be recorded")

    return json.dumps(dict(unit.kwargs), sort_keys=True, default=plain)


def _stored(run_dir: RunDir, unit: Unit) -> bool:
    """Whether ``unit`` is stored, verified, and computed from its arguments. A stored unit
    that is unreadable or does not match its digest, or one of its name computed from other
    arguments (the code that derives them changed since), is recomputed, and said so in one
    line; one stored without a record of its arguments is taken as it is."""
    if not run_dir.has_unit(unit.name):
        return False
    try:
        stored = run_dir.unit_inputs(unit.name)
    except UnitError as err:
        print(f"stored unit {err.path} {err.problem}; recomputing it", file=sys.stderr)
        return False
    if stored is None or stored == inputs(unit):
        return True
    print(f"unit {unit.name!r} in {run_dir.path} was computed from other arguments than this run gives it; "
          "recomputing it", file=sys.stderr)
    return False
