"""Learning-rate schedules as objects: each family is a frozen dataclass whose call
``schedule(hyper, step)`` is the learning rate at ``step``, ``hyper["lr"]`` times a multiplier
that is an optax schedule of peak 1 (:meth:`Schedule.multiplier`).

What a schedule holds is split by what may vary inside a compiled program:

- **static shape fields** (``length``, ``warmup_fraction``, ``decay_fraction``, ``decay_steps``):
  plain Python numbers, part of the object's hash, because the optax schedules take their step
  boundaries as static numbers (``optax.join_schedules`` compares the step with each boundary,
  ``optax.linear_schedule`` and ``optax.cosine_decay_schedule`` clip it to their lengths);
  changing one compiles a new program;
- **hyperparameters** (``lr`` and those of :attr:`Schedule.hyperparameters`, e.g.
  ``decay_exponent``, ``final_fraction``): entries of the optimizer's ``hyper``, traced values a
  meta-optimizer may differentiate, vmap and fit. Each has a default (its value when it is not
  fitted) and a default box for fitting in log space.

Objects are hashable and equal by value, so a schedule may sit inside a static ``jit`` argument
(an :class:`~shorthorizon.optim.Optimizer`) and equal schedules share a compiled program.

    >>> from shorthorizon.optim import make_schedule
    >>> cosine = make_schedule("cosine", 100)
    >>> round(float(cosine({"lr": 0.5, "final_fraction": 0.1}, 100)), 6)  # at the end: final_fraction * lr
    0.05
    >>> cosine.over(1000).length
    1000
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, ClassVar, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

Hyper = Mapping[str, jax.Array]
LrSchedule = Callable[[Hyper, jax.Array], jax.Array]  # (hyper, step) -> lr: a Schedule, or any such function


class Limits(NamedTuple):
    """The values a hyperparameter may take, from ``low`` to ``high``, each bound included where
    ``closed`` says so: where the bounds of a box for fitting it may lie (beyond them the
    optimizer or schedule means something else: a final fraction above 1 grows the lr). The
    default: any positive finite number (a log coordinate holds no 0)."""

    low: float = 0.0
    high: float = math.inf
    closed: tuple[bool, bool] = (False, False)

    def holds(self, value: float) -> bool:
        return ((value >= self.low if self.closed[0] else value > self.low)
                and (value <= self.high if self.closed[1] else value < self.high))

    def __str__(self) -> str:
        """What a box's bounds must satisfy: ``0 < LOW < HIGH <= 1``."""
        high = f" {'<=' if self.closed[1] else '<'} {self.high:g}" if math.isfinite(self.high) else ", finite"
        return f"{self.low:g} {'<=' if self.closed[0] else '<'} LOW < HIGH{high}"


FRACTION_OF_LR = Limits(0.0, 1.0, (False, True))  # an lr over the schedule's first: 1 (no decay) at most


class Hyperparameter(NamedTuple):
    """A value a schedule reads from ``hyper`` besides ``lr``: its ``default`` (its value where
    it is not fitted), ``box``, (low, high) in natural units, its default bounds for fitting
    in log space, and the ``limits`` any box of it must keep."""

    default: float
    box: tuple[float, float]
    limits: Limits = Limits()


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """A learning-rate schedule: ``schedule(hyper, step)`` = ``hyper["lr"]`` times
    :meth:`multiplier` at ``step``, so ``lr`` is the schedule's peak (its initial value where
    there is no warmup).

    ``length``: the number of steps the shape is laid over (its end is the lr at step
    ``length``); ``None`` for a family whose shape does not depend on the run's length
    (:attr:`depends_on_length` false: ``inverse-time``, ``exponential``, ``constant``).
    """

    name: ClassVar[str]
    depends_on_length: ClassVar[bool] = True
    hyperparameters: ClassVar[Mapping[str, Hyperparameter]] = MappingProxyType({})
    length: int | None = None

    def __post_init__(self):
        if not self.depends_on_length:
            if self.length is not None:
                raise ValueError(f"{self.name}'s shape does not depend on the run's length; leave length out")
        elif not isinstance(self.length, numbers.Integral) or self.length < 1:
            raise ValueError(f"{self.name} needs a length of at least 1 step (an int), got {self.length!r}")

    def multiplier(self, hyper: Hyper) -> optax.Schedule:
        """The optax schedule (step -> lr_t / lr) of this shape with ``hyper``'s values."""
        raise NotImplementedError

    def __call__(self, hyper: Hyper, step: jax.Array) -> jax.Array:
        """The learning rate at ``step``."""
        return hyper["lr"] * self.multiplier(hyper)(step)

    def over(self, length: int) -> Schedule:
        """The same family and shape laid over ``length`` steps (this schedule itself where the
        shape does not depend on the length)."""
        return dataclasses.replace(self, length=length) if self.depends_on_length else self

    @property
    def reads(self) -> tuple[str, ...]:
        """The names it reads from ``hyper``: ``lr`` and its :attr:`hyperparameters`."""
        return ("lr", *self.hyperparameters)

    @property
    def defaults(self) -> dict[str, float]:
        """Its hyperparameters' default values (``lr`` has none)."""
        return {name: p.default for name, p in self.hyperparameters.items()}

    def ranges(self, lr: tuple[float, float]) -> tuple[tuple[str, float, float], ...]:
        """``lr``'s box and its hyperparameters' default boxes, as a
        :class:`~shorthorizon.optim.LogSpace`'s ``ranges``."""
        return (("lr", *lr), *((name, *p.box) for name, p in self.hyperparameters.items()))


def _fraction(schedule: Schedule, field: str) -> None:
    value = getattr(schedule, field)
    if not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{schedule.name}'s {field} must lie in [0, 1), got {value!r}")


def _on_float_steps(schedule: optax.Schedule) -> optax.Schedule:
    """``schedule`` of the step as a float of the default precision: optax divides the step by
    Python ints, which makes an int32 step's value float32 even where float64 is on."""
    return lambda step: schedule(jnp.asarray(step, float))


def _steps(length: int, fraction: float) -> int:
    """The whole steps of ``fraction`` of ``length`` (rounded down: below ``length`` for a
    fraction below 1)."""
    return int(fraction * length)


@dataclass(frozen=True, kw_only=True)
class Constant(Schedule):
    """lr_t = lr."""

    name: ClassVar[str] = "constant"
    depends_on_length: ClassVar[bool] = False

    def multiplier(self, hyper: Hyper) -> optax.Schedule:
        return optax.constant_schedule(1.0)


@dataclass(frozen=True, kw_only=True)
class _Decaying(Schedule):
    """A family whose shape is set by ``decay_steps`` (its time scale), whatever the run's length."""

    depends_on_length: ClassVar[bool] = False
    decay_steps: float = 5000.0

    def __post_init__(self):
        super().__post_init__()
        if not self.decay_steps > 0:
            raise ValueError(f"{self.name}'s decay_steps must be positive, got {self.decay_steps!r}")


@dataclass(frozen=True, kw_only=True)
class InverseTime(_Decaying):
    """lr_t = lr (1 + t / decay_steps) ** (-decay_exponent) (paper Section 3.2), whatever the
    run's length; ``decay_exponent``'s box is the paper's surface, [1e-2, 10^2.3]."""

    name: ClassVar[str] = "inverse-time"
    hyperparameters: ClassVar[Mapping[str, Hyperparameter]] = MappingProxyType(
        {"decay_exponent": Hyperparameter(1.0, (1e-2, 10**2.3))})

    def multiplier(self, hyper: Hyper) -> optax.Schedule:
        return lambda step: (1.0 + step / self.decay_steps) ** (-hyper["decay_exponent"])


@dataclass(frozen=True, kw_only=True)
class Exponential(_Decaying):
    """lr_t = lr * decay_rate ** (t / decay_steps), whatever the run's length (``decay_rate``
    is traced, which ``optax.exponential_decay`` does not allow: it tests it in Python)."""

    name: ClassVar[str] = "exponential"
    hyperparameters: ClassVar[Mapping[str, Hyperparameter]] = MappingProxyType(
        {"decay_rate": Hyperparameter(0.1, (1e-4, 1.0), FRACTION_OF_LR)})

    def multiplier(self, hyper: Hyper) -> optax.Schedule:
        return lambda step: hyper["decay_rate"] ** (step / self.decay_steps)


@dataclass(frozen=True, kw_only=True)
class Cosine(Schedule):
    """Cosine decay over ``length`` steps to ``final_fraction`` of lr, then flat
    (``optax.cosine_decay_schedule``): lr_t = lr (f + (1 − f) (1 + cos(π min(t, T) / T)) / 2)."""

    name: ClassVar[str] = "cosine"
    hyperparameters: ClassVar[Mapping[str, Hyperparameter]] = MappingProxyType(
        {"final_fraction": Hyperparameter(0.1, (1e-3, 1.0), FRACTION_OF_LR)})

    def multiplier(self, hyper: Hyper) -> optax.Schedule:
        return _on_float_steps(optax.cosine_decay_schedule(1.0, self.length, alpha=hyper["final_fraction"]))


@dataclass(frozen=True, kw_only=True)
class WarmupCosine(Schedule):
    """Linear warmup from 0 to lr over the first ``warmup_fraction`` of ``length`` (whole steps,
    rounded down), then cosine decay to ``final_fraction`` of lr at ``length``
    (``optax.warmup_cosine_decay_schedule``; its peak is 1 here and ``lr`` scales it, because
    optax tests ``peak_value == 0`` in Python, which a traced lr cannot answer)."""

    name: ClassVar[str] = "warmup-cosine"
    hyperparameters: ClassVar[Mapping[str, Hyperparameter]] = MappingProxyType(
        {"final_fraction": Hyperparameter(0.1, (1e-3, 1.0), FRACTION_OF_LR)})
    warmup_fraction: float = 0.05

    def __post_init__(self):
        super().__post_init__()
        _fraction(self, "warmup_fraction")

    def multiplier(self, hyper: Hyper) -> optax.Schedule:
        return _on_float_steps(optax.warmup_cosine_decay_schedule(
            0.0, 1.0, _steps(self.length, self.warmup_fraction), self.length, end_value=hyper["final_fraction"]))


@dataclass(frozen=True, kw_only=True)
class Linear(Schedule):
    """Linear decay from lr to zero at ``length`` (``optax.linear_schedule``):
    lr_t = lr (1 − min(t, T) / T)."""

    name: ClassVar[str] = "linear"

    def multiplier(self, hyper: Hyper) -> optax.Schedule:
        return _on_float_steps(optax.linear_schedule(1.0, 0.0, self.length))


@dataclass(frozen=True, kw_only=True)
class WSD(Schedule):
    """Warmup-stable-decay: linear warmup from 0 to lr over the first ``warmup_fraction`` of
    ``length``, lr until the last ``decay_fraction`` of it, then linear decay to zero at
    ``length`` (whole steps, rounded down; ``optax.join_schedules`` of ``linear_schedule``,
    ``constant_schedule``, ``linear_schedule``)."""

    name: ClassVar[str] = "wsd"
    warmup_fraction: float = 0.05
    decay_fraction: float = 0.2

    def __post_init__(self):
        super().__post_init__()
        _fraction(self, "warmup_fraction")
        _fraction(self, "decay_fraction")
        if self.warmup_fraction + self.decay_fraction > 1:
            raise ValueError(f"{self.name}'s warmup_fraction + decay_fraction must not exceed 1, got "
                             f"{self.warmup_fraction!r} + {self.decay_fraction!r}")

    def multiplier(self, hyper: Hyper) -> optax.Schedule:
        warmup, decay = _steps(self.length, self.warmup_fraction), _steps(self.length, self.decay_fraction)
        phases = [optax.linear_schedule(0.0, 1.0, warmup), optax.constant_schedule(1.0),
                  optax.linear_schedule(1.0, 0.0, decay)]
        return _on_float_steps(optax.join_schedules(phases, [warmup, self.length - decay]))


SCHEDULES: Mapping[str, type[Schedule]] = MappingProxyType(
    {cls.name: cls for cls in (InverseTime, Constant, Exponential, Cosine, WarmupCosine, Linear, WSD)})


def make_schedule(name: str, length: int | None = None, **static) -> Schedule:
    """The schedule of family ``name`` laid over ``length`` steps (ignored by families whose
    shape does not depend on it), with static shape fields ``static`` (e.g.
    ``warmup_fraction=0.1``); an unknown name or field, or a bad value, is a ValueError."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    cls = SCHEDULES[name]
    fields = [f.name for f in dataclasses.fields(cls) if f.name != "length"]
    unknown = sorted(set(static) - set(fields))
    if unknown:
        raise ValueError(f"schedule {name!r} has no field {unknown}; its static fields are {fields}")
    return cls(length=length if cls.depends_on_length else None, **static)


# the constructors of the package's first schedules, kept for their call sites
def constant() -> Constant:
    """lr_t = lr."""
    return Constant()


def inverse_time(decay_steps: float = 5000.0) -> InverseTime:
    """lr_t = lr (1 + t / decay_steps) ** (-decay_exponent) (paper Section 3.2)."""
    return InverseTime(decay_steps=decay_steps)


def exponential(decay_steps: float) -> Exponential:
    """lr_t = lr * decay_rate ** (t / decay_steps)."""
    return Exponential(decay_steps=decay_steps)
