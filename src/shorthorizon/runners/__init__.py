"""Executors for units of work: in-process (default) or spread over a Ray cluster.

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
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence
from unittest import mock

import numpy as np
from tqdm.auto import tqdm

from shorthorizon.results import RunDir

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
    """Run every unit not yet stored in ``run_dir``; return all results, keyed by unit name."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    if not units:
        return {}  # no stage to show (e.g. offline's zoom when no horizon is zoomed)
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise ValueError(f"unit names must be unique, got {names}")
    pending = [u for u in units if not _stored(run_dir, u)]
    waiting = {u.name for u in pending}
    bar = CostBar(units, [name for name in names if name not in waiting], desc)
    try:
        if executor == "local":
            for unit in pending:
                run_dir.save_unit(unit.name, _to_numpy(fn(**unit.kwargs)), inputs(unit))
                bar.finished(unit.name)
        else:
            _run_ray(fn, pending, run_dir, ray_address, bar)
    finally:
        bar.close()
    return {name: run_dir.load_unit(name) for name in names}


class CostBar:
    """A progress bar over ``units`` whose length is the sum of their costs; its label counts
    the finished units."""

    def __init__(self, units: Sequence[Unit], done: Sequence[str], desc: str):
        self.cost = {u.name: float(u.cost) for u in units}
        self.done, self.desc = set(done), desc
        self.bar = tqdm(total=sum(self.cost.values()), initial=sum(self.cost[n] for n in self.done),
                        desc=self._label(), bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]", dynamic_ncols=True)

    def _label(self) -> str:
        return f"{self.desc} ({len(self.done)}/{len(self.cost)} units)"

    def finished(self, name: str) -> None:
        self.done.add(name)
        self.bar.set_description_str(self._label(), refresh=False)
        self.bar.update(self.cost[name])

    def close(self) -> None:
        self.bar.close()


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
    """Whether ``unit`` is stored, computed from its arguments. A stored unit of its name
    computed from others (the code that derives them changed since) is recomputed, and said so;
    one stored without a record (an older version's) is taken as it is."""
    if not run_dir.has_unit(unit.name):
        return False
    stored = run_dir.unit_inputs(unit.name)
    if stored is None or stored == inputs(unit):
        return True
    print(f"unit {unit.name!r} in {run_dir.path} was computed from other arguments than this run gives it; "
          "recomputing it", file=sys.stderr)
    return False


def _to_numpy(result: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in result.items()}


RAY_CONNECT_TIMEOUT_S = 5  # per attempt to reach a --ray-address (Ray's defaults retry for many minutes)
# Ray settings that bound joining a cluster (unless the environment sets them): the seconds per
# attempt (read when Ray is first imported) and the number of attempts (~1 s apart).
_RAY_JOIN_LIMITS = {"RAY_py_gcs_connect_timeout_s": str(RAY_CONNECT_TIMEOUT_S),
                    "RAY_gcs_server_port_wait_time_s": "1"}
_RAY_FIX = "check --ray-address (`ray start --head` prints it), or leave it out to start a local Ray instance"


def ensure_ray(address: str | None = None):
    """Join the Ray cluster at ``address``, or start a local one; return the ray module.

    An address that refuses connections or does not answer within RAY_CONNECT_TIMEOUT_S
    raises RuntimeError at once; one that answers but is no Ray cluster, after about 15 s
    (about 40 s when Ray was imported before this call). Ray's defaults would retry for many
    minutes."""
    if address:
        _check_reachable(address)
    limits = {k: v for k, v in _RAY_JOIN_LIMITS.items() if address and k not in os.environ}
    with mock.patch.dict(os.environ, limits):  # for joining only: a local start keeps Ray's defaults
        try:
            import ray
        except ImportError as err:
            raise RuntimeError(
                "--executor ray needs Ray: pip install 'shorthorizon[ray]' (or pip install ray)"
            ) from err
        if not ray.is_initialized():
            if address:
                try:
                    ray.init(address=address, log_to_driver=False)
                except ConnectionError as err:
                    raise RuntimeError(f"no Ray cluster answers at {address} ({err}); {_RAY_FIX}") from None
            else:
                ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


def _check_reachable(address: str) -> None:
    """Open (and close) a TCP connection to ``host:port`` (``ray://host:port`` too); ``auto``
    and other forms without a port are left to Ray."""
    host, sep, port = address.split("://")[-1].rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise RuntimeError(f"cannot reach the Ray cluster at {address} ({err.strerror or err}); "
                           f"{_RAY_FIX}") from None


def _run_ray(fn, pending, run_dir, address, bar) -> None:
    if not pending:
        return
    ray = ensure_ray(address)
    remote = ray.remote(lambda kwargs: _to_numpy(fn(**kwargs)))
    refs = {remote.remote(dict(u.kwargs)): u for u in pending}
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            unit = refs.pop(ref)
            run_dir.save_unit(unit.name, ray.get(ref), inputs(unit))
            bar.finished(unit.name)
