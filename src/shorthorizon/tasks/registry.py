"""Tasks by name: the paper's (:data:`TASKS`) or a user's ``package.module:factory``."""

from __future__ import annotations

import importlib
import inspect
from typing import Callable, Sequence

from shorthorizon.tasks.base import Task
from shorthorizon.tasks.models import cnn, mlp

TASKS = {"mlp": mlp, "cnn": cnn}
FACTORY = "factory(input_shape: tuple[int, int, int], num_classes: int) -> shorthorizon.tasks.Task"


def make_task(name: str, input_shape: Sequence[int], num_classes: int = 10) -> Task:
    """Build the task ``name`` for images of ``input_shape`` (H, W, C): one of :data:`TASKS`,
    or ``package.module:factory`` naming a function with the signature :data:`FACTORY`."""
    factory = task_factory(name)
    try:
        task = factory(input_shape=tuple(input_shape), num_classes=num_classes)
    except (ValueError, TypeError) as err:  # the factory's own complaint, said of this task
        raise ValueError(f"task {name} for images of shape {tuple(input_shape)}, {num_classes} classes: "
                         f"{type(err).__name__}: {err}") from err
    if not isinstance(task, Task):
        raise ValueError(f"task {name}: the factory returned a {type(task).__name__}, not a Task; expected {FACTORY}")
    return task


def task_factory(name: str) -> Callable[..., Task]:
    """The factory of task ``name`` (see :func:`make_task`); a ValueError that says what is
    wrong and what is expected otherwise, before any work is done."""
    if ":" in name:
        return load_factory(name)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}, "
                         "or name your own as package.module:factory")
    return TASKS[name]


def load_factory(spec: str) -> Callable[..., Task]:
    """The function named by ``package.module:factory``; a ValueError that names what is
    wrong (the module, the attribute, the signature) otherwise."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise ValueError(f"task {spec!r}: expected package.module:factory, with {FACTORY}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"task {spec}: cannot import module {module_name!r} ({err}); is its folder on "
                         f"PYTHONPATH or the package installed? expected {FACTORY}") from None
    except SyntaxError as err:
        raise ValueError(f"task {spec}: module {module_name!r} has a syntax error ({err})") from None
    factory = getattr(module, attribute, None)
    if factory is None:
        raise ValueError(f"task {spec}: module {module_name!r} has no attribute {attribute!r}; expected {FACTORY}")
    if not callable(factory):
        raise ValueError(f"task {spec}: {attribute!r} is a {type(factory).__name__}, not a function; "
                         f"expected {FACTORY}")
    try:
        inspect.signature(factory).bind(input_shape=(1, 1, 1), num_classes=1)
    except TypeError as err:
        raise ValueError(f"task {spec}: {attribute} does not take (input_shape, num_classes) ({err}); "
                         f"expected {FACTORY}") from None
    except ValueError:  # no signature to inspect (a builtin): call it and see
        pass
    return factory
