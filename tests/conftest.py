"""Shared fixtures."""

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
