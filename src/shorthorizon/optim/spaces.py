"""Spaces where a meta-optimizer moves hyperparameters: coordinates, their maps to and from the
optimizer's values, and bounds (paper Section 3.3)."""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

from shorthorizon.optim.optimizers import Hyper
from shorthorizon.optim.schedules import Limits

def to_effective(lr: jax.Array, mu: jax.Array) -> dict:
    """(lr, momentum) -> {"log_lr_eff": log(lr / (1 - μ)), "log_one_minus_momentum": log(1 - μ)}."""
    return {"log_lr_eff": jnp.log(lr / (1 - mu)), "log_one_minus_momentum": jnp.log1p(-mu)}


def from_effective(raw: Mapping[str, jax.Array]) -> dict:
    """Inverse of :func:`to_effective`: returns {"lr": α, "momentum": μ}."""
    one_minus_mu = jnp.exp(raw["log_one_minus_momentum"])
    return {"lr": jnp.exp(raw["log_lr_eff"]) * one_minus_mu, "momentum": 1 - one_minus_mu}


# --- spaces: where a meta-optimizer moves hyperparameters ---------------------------------
class EffectiveSpace(NamedTuple):
    """The paper's space for the heavy ball (Section 3.3): ``log_lr_eff`` = log(lr / (1 - μ))
    and ``log_one_minus_momentum`` = log(1 - μ), each bounded in value (``lr_eff_bounds``,
    ``one_minus_momentum_bounds``). Meta-steps in it change the step's scale and its memory apart."""

    lr_eff_bounds: tuple[float, float] = (1e-4, 10.0)
    one_minus_momentum_bounds: tuple[float, float] = (1e-4, 1.0)

    @property
    def names(self) -> tuple[str, ...]:
        """The optimizer's hyperparameters this space moves."""
        return ("lr", "momentum")

    def to_raw(self, hyper: Hyper) -> dict:
        return to_effective(hyper["lr"], hyper["momentum"])

    def from_raw(self, raw: Mapping[str, jax.Array]) -> dict:
        return from_effective(raw)

    def bounds(self) -> dict:
        """Bounds in the meta-optimizer's (log) space, SMD's ``bounds``."""
        return {"log_lr_eff": _log_range(self.lr_eff_bounds),
                "log_one_minus_momentum": _log_range(self.one_minus_momentum_bounds)}

    def lr_eff(self, hyper: Hyper) -> jax.Array:
        """The step's scale: lr / (1 - μ), the long-run step of the heavy ball on a constant gradient."""
        return hyper["lr"] / (1 - hyper["momentum"])


class LogSpace(NamedTuple):
    """Positive hyperparameters, each in log space and bounded in value: ``ranges`` =
    ``(("lr", 1e-5, 1.0), ("weight_decay", 1e-6, 1.0))``, in natural units. A momentum (a name in
    :data:`COMPLEMENTED`, β1 for Adam) is held as log(1 − μ), as in the paper's space: its
    interesting values crowd against 1. For the heavy ball's lr and momentum together the paper
    moves the effective lr instead (:class:`EffectiveSpace`); Adam and its kin normalize the
    step, so ``lr`` is its scale (:meth:`lr_eff`)."""

    ranges: tuple[tuple[str, float, float], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.ranges)

    @property
    def coordinates(self) -> tuple[str, ...]:
        """The meta-optimizer's names for the hyperparameters, in the order of ``ranges``."""
        return tuple(_coordinate(name) for name in self.names)

    def to_raw(self, hyper: Hyper) -> dict:
        return {_coordinate(name): jnp.log1p(-hyper[name]) if name in COMPLEMENTED else jnp.log(hyper[name])
                for name in self.names}

    def from_raw(self, raw: Mapping[str, jax.Array]) -> dict:
        return {name: -jnp.expm1(raw[_coordinate(name)]) if name in COMPLEMENTED else jnp.exp(raw[_coordinate(name)])
                for name in self.names}

    def bounds(self) -> dict:
        """Bounds in the meta-optimizer's (log) space, SMD's ``bounds``."""
        return {_coordinate(name): (math.log1p(-high), math.log1p(-low)) if name in COMPLEMENTED
                else _log_range((low, high)) for name, low, high in self.ranges}

    def lr_eff(self, hyper: Hyper) -> jax.Array:
        return hyper["lr"]


COMPLEMENTED = ("momentum",)  # held as log(1 - value)
# The optimizers' hyperparameters that are not any positive number (a schedule's declare theirs:
# Hyperparameter.limits): a momentum or Adam's b2 is a decay per step, below 1 (a momentum of 0
# is the plain step; log(1 - value) holds it)
LIMITS = {"momentum": Limits(0.0, 1.0, (True, False)), "b2": Limits(0.0, 1.0)}


def _coordinate(name: str) -> str:
    return f"log_one_minus_{name}" if name in COMPLEMENTED else f"log_{name}"


def _log_range(bounds: tuple[float, float]) -> tuple[float, float]:
    return tuple(math.log(b) for b in bounds)


def log_space(entries, defaults: dict, limits: Mapping[str, Limits] = LIMITS) -> LogSpace:
    """A :class:`LogSpace` from command-line entries ``NAME`` (bounds from ``defaults``) or
    ``NAME:LOW:HIGH``; a name without bounds, or bounds out of order or outside the values it may
    take (``limits``: name -> :class:`~shorthorizon.optim.schedules.Limits`; any positive number
    for a name it lacks), is a ValueError naming the entry and the fix."""
    ranges = []
    for entry in entries:
        name, *bounds = entry.split(":")
        if not bounds and name in defaults:
            bounds = defaults[name]
        try:
            low, high = map(float, bounds)
        except ValueError:
            raise ValueError(f"give {name!r} its bounds as {name}:LOW:HIGH (0 < LOW < HIGH), got {entry!r}") from None
        limit = limits.get(name, Limits())
        if not (low < high and limit.holds(low) and limit.holds(high)):
            raise ValueError(f"the bounds of {name!r} must satisfy {limit}, got {entry!r}")
        ranges.append((name, low, high))
    return LogSpace(tuple(ranges))
