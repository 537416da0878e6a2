"""Experiment configs: frozen dataclasses, named presets, and checked overrides."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, TypeVar

C = TypeVar("C")


_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}


def _kind(field: dataclasses.Field) -> tuple[bool, type]:
    """Whether ``field`` holds a tuple, and the type of its value or items from its annotation
    (``tuple[int, ...]`` -> ``(True, int)``)."""
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    many = kind.startswith("tuple")
    inner = kind[kind.find("[") + 1:].split(",")[0].strip(" ]") if many else kind
    return many, _SCALARS.get(inner, float)


def _item(kind: type, value: Any) -> Any:
    """One value of type ``kind`` from a command-line string or a JSON item. An int is an integer,
    or a float with nothing after the point (``1e3``); a bool is never a number (JSON's ``true``
    would otherwise be read as 1), and a number is never a bool."""
    if kind is str:
        return str(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"takes true or false, not {value!r}")
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            value = float(value)  # "1e3", "nan"; a ValueError for what is no number at all
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"takes {'integers' if kind is int else 'numbers'}, not {value!r}")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():  # 1.5, and inf and nan (1e999 is inf)
            raise ValueError(f"takes integers, not {value!r}")
        return int(value)
    return float(value)


def _coerce(field: dataclasses.Field, value: Any) -> Any:
    """Turn a command-line string into the field's type (tuples from JSON lists or commas)."""
    if not isinstance(value, str):
        return value
    many, kind = _kind(field)
    if many:
        text = value.strip()
        items = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v]
        if not isinstance(items, list):
            raise ValueError(f"takes a JSON list or comma-separated values, not {text!r}")
        return tuple(_item(kind, v) for v in items)
    return _item(kind, value)


def resolve(presets: Mapping[str, C], preset: str, overrides: Mapping[str, Any] | None = None) -> C:
    """Return ``presets[preset]`` with ``overrides`` applied; unknown names raise ValueError."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(presets)}")
    config = presets[preset]
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes = {}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise ValueError(
                f"unknown config key {key!r} for {type(config).__name__}; "
                f"known keys: {', '.join(fields)}"
            )
        try:
            changes[key] = _coerce(fields[key], value)
        except (TypeError, ValueError, OverflowError) as err:  # OverflowError: an int past float's range
            raise ValueError(f"bad value {value!r} for config key {key!r}: {err}") from None
    config = dataclasses.replace(config, **changes)
    for name in changes:  # before an experiment's validate reads them (max() of an empty tuple)
        if rule_of(config, name) is not None:
            _check_field(config, fields[name])
    return config


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (the CLI's ``--set`` flags; a later one of a
    key replaces an earlier one, so a script may append to a command line)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


class Rule(NamedTuple):
    """A check on one config value (``test``: true, or a ValueError saying what is wrong) and what
    it asks for, for messages (``wanted``)."""

    test: Callable[[Any], bool]
    wanted: str


def _number(value: Any) -> bool:
    """A finite int or float, not a bool (an int is finite however large: ``math.isfinite`` of
    one past float's range raises OverflowError)."""
    return isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and math.isfinite(value)


def at_least(low: float) -> Rule:
    return Rule(lambda v: _number(v) and v >= low, f"{low:g} or more, and finite")


def one_of(names) -> Rule:
    return Rule(lambda v: v in names, f"one of {', '.join(names)}")


ANY = Rule(lambda v: True, "any value of its type")  # free text, or checked with the keys it depends on
POSITIVE = Rule(lambda v: _number(v) and v > 0, "positive and finite")
NONNEGATIVE = Rule(lambda v: _number(v) and v >= 0, "zero or more, and finite")
FRACTION = Rule(lambda v: _number(v) and 0 <= v < 1, "in [0, 1)")  # a momentum
DIM = at_least(2)  # an NQM's dimension: Chebyshev points cos(j pi / (d - 1)) need d >= 2
# JAX's 32-bit keys keep a seed's low 32 bits (2**32 gives seed 0's key); NumPy refuses a negative one
SEED = Rule(lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32, "in [0, 2**32)")
# a folder searched first for the datasets: "" (the usual places) or a folder that is there; a
# mistyped one would pass validation and fail once an experiment that loads data starts
DATA_DIR = Rule(lambda v: v == "" or Path(v).expanduser().is_dir(), "an existing folder, or empty (the usual places)")
# An Adam step moves a log-space hyperparameter by up to its step size (exactly that much at the
# first step): past log(largest float64) ~ 709.8, one unbounded step overflows exp() to inf or 0
LOG_STEP = Rule(lambda v: _number(v) and 0 < v < math.log(sys.float_info.max), "positive and below 709.78")


def items(*rules: Rule, distinct: bool = False, repeat: bool = True, wanted: str = "") -> Rule:
    """A non-empty tuple whose items follow ``rules`` in turn (item i: ``rules[i % len(rules)]``),
    as many items as rules or (``repeat``) any multiple of that; ``distinct``: no item twice."""
    def test(value) -> bool:
        count = len(value) if repeat else len(rules)
        return (len(value) == count and count % len(rules) == 0 and count > 0
                and all(rules[i % len(rules)].test(v) for i, v in enumerate(value))
                and not (distinct and len(set(value)) < len(value)))

    return Rule(test, wanted or f"one or more {'distinct ' if distinct else ''}values, each {rules[0].wanted}")


def low_high(rule: Rule) -> Rule:
    """LOW,HIGH with LOW < HIGH, both following ``rule`` (a box of a fit)."""
    pair = items(rule, rule, repeat=False)
    return Rule(lambda v: pair.test(v) and v[0] < v[1], f"LOW,HIGH with LOW < HIGH, each {rule.wanted}")


def optional(rule: Rule) -> Rule:
    """Empty (the default is worked out elsewhere), or following ``rule``."""
    return Rule(lambda v: v == () or rule.test(v), f"empty or {rule.wanted}")


def key(default: Any, rule: Rule) -> Any:
    """A config field and its rule, which :func:`check` applies: ``steps: int = key(10, POSITIVE)``.
    A subclass that gives the field another default keeps the rule (``steps: int = 20``)."""
    return dataclasses.field(default=default, metadata={"rule": rule})


def rule_of(config: Any, name: str) -> Rule | None:
    """The rule of field ``name`` of ``config``, declared on its class or the nearest base that
    declares one."""
    fields = (getattr(cls, "__dataclass_fields__", {}).get(name) for cls in type(config).__mro__)
    return next((f.metadata["rule"] for f in fields if f is not None and "rule" in f.metadata), None)


def check(config: Any) -> None:
    """Raise ValueError naming the key and what it takes for the first field of ``config`` whose
    value is not of its annotated type or breaks its rule (:func:`key`); a field that declares no
    rule is a TypeError. Cross-key constraints are the experiment's ``validate``."""
    for field in dataclasses.fields(config):
        _check_field(config, field)


def _check_field(config: Any, field: dataclasses.Field) -> None:
    """:func:`check` of one field."""
    value, rule = getattr(config, field.name), rule_of(config, field.name)
    if rule is None:
        raise TypeError(f"config key {field.name!r} of {type(config).__name__} declares no rule")
    many, kind = _kind(field)
    kinds = (int, float) if kind is float else kind
    values = value if many and isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) != many or not all(isinstance(v, kinds) and (kind is bool) == isinstance(v, bool)
                                                   for v in values):
        raise ValueError(f"config key {field.name!r} takes {'a tuple of ' if many else ''}{kind.__name__} values, "
                         f"got {value!r}")
    try:
        ok = rule.test(value)
    except ValueError as err:
        raise ValueError(f"config key {field.name!r}: {err}") from None
    if not ok:
        raise ValueError(f"config key {field.name!r} must be {rule.wanted}, got {value!r}")


def within(key: str, value: float, box: str, bounds: tuple[float, float]) -> None:
    """ValueError unless ``value`` (of config key ``key``) lies in the box ``bounds`` (config key ``box``)."""
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"config key {key!r} must lie within {box}=[{bounds[0]:g}, {bounds[1]:g}], got {value:g}")


def optimizer_hyper(config: Any, lr: float) -> dict:
    """The initial hyperparameters of ``config.optimizer`` (a name in ``optim.OPTIMIZERS``) at
    learning rate ``lr``: ``config.momentum`` where the optimizer has a momentum (β1 for Adam),
    and ``config.hyper``'s NAME=VALUE entries. A malformed entry, a name the optimizer lacks or
    a value it needs and was not given is a ValueError naming the config keys to set."""
    import jax.numpy as jnp

    from shorthorizon import optim

    optimizer = optim.make_optimizer(config.optimizer)
    hyper = {"lr": lr}
    if "momentum" in optimizer.hyperparameters():
        hyper["momentum"] = config.momentum
    keyed = set(hyper)  # one key per value: another would win unsaid, and reports would name the first
    for entry in config.hyper:
        name, equals, value = entry.partition("=")
        if not name or not equals:
            raise ValueError(f"config key 'hyper' takes NAME=VALUE entries, got {entry!r}")
        if name in hyper:
            raise ValueError(f"config key 'hyper': {name} has config keys of its own ("
                             + ("the lr's box and the warm start's or initial lr" if name == "lr" else f"--set {name}=VALUE")
                             + f"), not {entry!r}" if name in keyed else f"config key 'hyper' gives {name} twice")
        try:
            hyper[name] = float(value)
        except ValueError:
            raise ValueError(f"config key 'hyper': the value of {name} must be a number, got {value!r}") from None
        if not math.isfinite(hyper[name]):
            raise ValueError(f"config key 'hyper': the value of {name} must be finite, got {value!r}")
    try:
        optimizer.init(jnp.zeros(()), hyper)
    except ValueError as err:
        raise ValueError(f"{err}: set config keys 'optimizer' and 'hyper' (e.g. --set hyper=weight_decay=1e-4)") from None
    return hyper


def estimator(config: Any):
    """The estimator object a config names (``config.estimator``, with ``config.particles`` and
    ``config.sigma``), resolved here, at the config edge, once; drivers take the object. An
    unknown name is a ValueError listing the known ones."""
    from shorthorizon.hypergrad import make_estimator

    return make_estimator(config.estimator, particles=config.particles, sigma=config.sigma)


def seeded(config: C, seed: int) -> C:
    """Seed ``seed`` of a run over seeds (``seeds`` config key): the single-seed run with
    ``config.seed + seed``, its own initialization, batch streams, surface samples and particles
    (one seed, so that a unit's arguments do not depend on how many seeds run beside it)."""
    return dataclasses.replace(config, seed=config.seed + seed, seeds=1)
