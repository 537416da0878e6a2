"""Experiment configs: frozen dataclasses, named presets, and checked overrides."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Callable, Mapping, NamedTuple, TypeVar

C = TypeVar("C")


def _coerce(field: dataclasses.Field, value: Any) -> Any:
    """Turn a command-line string into the field's type (tuples from JSON lists or commas)."""
    if not isinstance(value, str):
        return value
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if kind.startswith("tuple"):
        text = value.strip()
        items = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v]
        inner = kind[kind.find("[") + 1 : kind.find(",") if "," in kind else kind.find("]")]
        cast = {"int": int, "float": float, "str": str}.get(inner.strip(), float)
        return tuple(cast(v) for v in items)
    if kind == "bool":
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"config key {field.name!r} takes true or false, not {value!r}")
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return value


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
        except (TypeError, ValueError, json.JSONDecodeError) as err:
            raise ValueError(f"bad value {value!r} for config key {key!r}: {err}") from err
    return dataclasses.replace(config, **changes)


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (the CLI's ``--set`` flags)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


class Rule(NamedTuple):
    """A check on one config value (``test``) and what it asks for, for messages (``wanted``)."""

    test: Callable[[Any], bool]
    wanted: str


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


POSITIVE = Rule(lambda v: _number(v) and v > 0, "positive and finite")
NONNEGATIVE = Rule(lambda v: _number(v) and v >= 0, "zero or more, and finite")
FRACTION = Rule(lambda v: _number(v) and 0 <= v < 1, "in [0, 1)")  # a momentum


def require(config: Any, keys: str, rule: Rule) -> None:
    """Raise ValueError unless ``rule`` holds for each config key in ``keys`` (space-separated);
    a tuple value must be non-empty and the rule must hold for every element."""
    for key in keys.split():
        value = getattr(config, key)
        values = value if isinstance(value, tuple) else (value,)
        if not values or not all(rule.test(v) for v in values):
            raise ValueError(f"config key {key!r} must be {rule.wanted}, got {value!r}")


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
    for entry in config.hyper:
        name, equals, value = entry.partition("=")
        if not name or not equals:
            raise ValueError(f"config key 'hyper' takes NAME=VALUE entries, got {entry!r}")
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


def estimator(config: Any, truncation: int | None = None):
    """The estimator object a config names (``config.estimator``, with ``config.particles`` and
    ``config.sigma``), resolved here, at the config edge, once; drivers take the object. An
    unknown name is a ValueError listing the known ones."""
    from shorthorizon.hypergrad import make_estimator

    return make_estimator(config.estimator, truncation=truncation, particles=config.particles, sigma=config.sigma)
