"""Tasks by name: the paper's (:data:`TASKS`) or a user's ``package.module:factory``."""

from __future__ import annotations

import importlib
import inspect
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from shorthorizon.tasks.base import Task
from shorthorizon.tasks.models import cnn, mlp

TASKS = {"mlp": mlp, "cnn": cnn}
FACTORY = "factory(input_shape: tuple[int, int, int], num_classes: int) -> shorthorizon.tasks.Task"


def make_task(name: str, input_shape: Sequence[int], num_classes: int = 10) -> Task:
    """Build the task ``name`` for images of ``input_shape`` (H, W, C) in ``num_classes``
    classes: one of :data:`TASKS`, or ``package.module:factory`` naming a function with the
    signature :data:`FACTORY`; checked against them (:func:`check_output`). Every command
    builds its task from its dataset here."""
    factory = task_factory(name)
    try:
        task = factory(input_shape=tuple(input_shape), num_classes=num_classes)
    except (ValueError, TypeError) as err:  # the factory's own complaint, said of this task
        raise ValueError(f"task {name} for images of shape {tuple(input_shape)}, {num_classes} classes: "
                         f"{type(err).__name__}: {err}") from err
    if not isinstance(task, Task):
        raise ValueError(f"task {name}: the factory returned a {type(task).__name__}, not a Task; expected {FACTORY}")
    check_output(task, input_shape, num_classes, name)
    return task


def check_output(task: Task, input_shape: Sequence[int], num_classes: int, name: str | None = None) -> None:
    """Raise a one-line ValueError naming the task (``name``, default ``task.name``) unless its
    model takes a batch of images of ``input_shape`` (H, W, C) to outputs of shape (batch,
    ``num_classes``) (:attr:`Task.apply`) and its loss takes such a batch with its labels. A
    wrong width would train without an error (the one-hot labels of the classes past it are
    zero rows), and a model that fails on the images would fail deep inside the first compiled
    step. The model is traced abstractly (``jax.eval_shape``): no weights drawn, nothing run."""
    name = name or task.name
    batch = 2  # not 1: a model that drops the batch axis shows
    images = f"a batch of {batch} images of shape {tuple(input_shape)}"
    x = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
    y = jax.ShapeDtypeStruct((batch,), jnp.int32)
    key = jax.random.PRNGKey(0)

    def traced(what, fn, *args):
        try:
            return jax.eval_shape(fn, *args)
        except Exception as err:  # the model's own error, in one line that names the task
            lines = str(err).strip().splitlines()
            raise ValueError(f"task {name}: {what} fails: {type(err).__name__}: {lines[0] if lines else ''}") from err

    params = traced("init", task.init, key)
    model_state = traced("init_state", task.init_state, key)
    if task.apply is not None:
        out = traced(f"its model on {images}", task.apply, params, model_state, x)
        wanted = (batch, num_classes)
        found = getattr(out, "shape", None)
        if found is None:
            raise ValueError(f"task {name}: its model gives a {type(out).__name__} for {images}, not an array "
                             f"of shape {wanted}")
        if tuple(found) != wanted:
            raise ValueError(f"task {name}: its model's outputs for {images} have shape {tuple(found)}; wanted "
                             f"{wanted}: one logit per class, {num_classes} classes")
    traced(f"its loss on {images}", task.loss, params, model_state, (x, y), key)


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
