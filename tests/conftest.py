"""Shared fixtures."""

import json
from pathlib import Path

import jax
import pytest


@pytest.fixture
def x64():
    """Run one test in float64, then restore the process-wide setting."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


@pytest.fixture(autouse=True)
def x64_does_not_leak():
    """No test (and no library call it makes) may leave float64 switched on process-wide:
    later tests would silently run in another precision."""
    before = jax.config.jax_enable_x64
    yield
    assert jax.config.jax_enable_x64 == before, "jax_enable_x64 was changed and not restored"


@pytest.fixture
def strict_json():
    """Parse JSON the project wrote with a strict parser (NaN and Infinity raise): a file gives
    its value, a folder a dict of every ``*.json`` under it, keyed by relative path."""
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    def parse(path):
        path = Path(path)
        if path.is_dir():
            return {str(p.relative_to(path)): parse(p) for p in sorted(path.rglob("*.json"))}
        return json.loads(path.read_text(), parse_constant=refuse)

    return parse


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for every test that needs one (its workers stay warm between
    tests); shut down at the end of the session."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
