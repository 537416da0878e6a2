"""The Ray executor: join a cluster (or start a local one) and run units on it."""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any, Callable, Iterator, Mapping, Sequence

RAY_CONNECT_TIMEOUT_S = 5  # per attempt to reach a --ray-address (Ray's defaults retry for many minutes)
# Ray settings that bound joining a cluster (unless the environment sets them): the seconds per
# attempt (read when Ray is first imported) and the number of attempts (~1 s apart).
_RAY_JOIN_LIMITS = {"RAY_py_gcs_connect_timeout_s": str(RAY_CONNECT_TIMEOUT_S),
                    "RAY_gcs_server_port_wait_time_s": "1"}
_RAY_FIX = "check --ray-address (`ray start --head` prints it), or leave it out to start a local Ray instance"


@contextlib.contextmanager
def _temporary_env(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set for the block; what was there before comes back after."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def ensure_ray(address: str | None = None):
    """Join the Ray cluster at ``address``, or start a local one; return the ray module.

    An address that refuses connections or does not answer within RAY_CONNECT_TIMEOUT_S
    raises RuntimeError at once; one that answers but is no Ray cluster, after about 15 s
    (about 40 s when Ray was imported before this call). Ray's defaults would retry for many
    minutes."""
    if address:
        _check_reachable(address)
    limits = {k: v for k, v in _RAY_JOIN_LIMITS.items() if address and k not in os.environ}
    with _temporary_env(limits):  # for joining only: a local start keeps Ray's defaults
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
                except ConnectionError as err:  # no cluster there, or one that refuses the join (authentication)
                    raise RuntimeError(f"cannot join the Ray cluster at {address}: {err}; {_RAY_FIX}") from None
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


def run_ray(work: Callable[[Mapping[str, Any]], Any], pending: Sequence, address: str | None,
            finished: Callable[[Any, Any], None]) -> None:
    """``work(unit.kwargs)`` for every unit of ``pending`` on Ray; ``finished(unit, result)`` in
    this process as each one returns, in the order they finish."""
    if not pending:
        return
    ray = ensure_ray(address)
    remote = ray.remote(work)
    refs = {remote.remote(dict(u.kwargs)): u for u in pending}
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            finished(refs.pop(ref), ray.get(ref))
