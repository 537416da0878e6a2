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


class TaskError(ValueError):
    """A task that cannot be used, in one line naming its spec and what is wrong; for an exception
    raised by the user's own code (at import, in the factory, in init, the model or the loss), its
    type and the first line of its message. A ValueError: every command exits with status 2 and
    that line, before any work is done or any folder claimed."""


def _raised(where: str, err: BaseException) -> TaskError:
    """The one-line TaskError for ``err``, raised by a user's code at ``where`` ("task SPEC: ...")."""
    lines = str(err).strip().splitlines()
    return TaskError(f"{where}: {type(err).__name__}{f': {lines[0]}' if lines else ''}")


def make_task(name: str, input_shape: Sequence[int], num_classes: int = 10) -> Task:
    """Build the task ``name`` for images of ``input_shape`` (H, W, C) in ``num_classes``
    classes: one of :data:`TASKS`, or ``package.module:factory`` naming a function with the
    signature :data:`FACTORY`; checked against them (:func:`check_output`). Every command
    builds its task from its dataset here."""
    factory = task_factory(name)
    try:
        task = factory(input_shape=tuple(input_shape), num_classes=num_classes)
    except (Exception, SystemExit) as err:  # the factory's own error (KeyError, complaint, sys.exit), of this task
        raise _raised(f"task {name} for images of shape {tuple(input_shape)}, {num_classes} classes", err) from err
    if not isinstance(task, Task):
        raise TaskError(f"task {name}: the factory returned a {type(task).__name__}, not a Task; expected {FACTORY}")
    check_output(task, input_shape, num_classes, name)
    return task


def check_output(task: Task, input_shape: Sequence[int], num_classes: int, name: str | None = None) -> None:
    """Raise a one-line TaskError naming the task (``name``, default ``task.name``) unless its
    init gives floating-point parameters, its model takes a batch of images of ``input_shape``
    (H, W, C) to outputs of shape (batch, ``num_classes``) (:attr:`Task.apply`), and its loss
    takes such a batch with its labels to ``(loss, (model_state, metrics))`` with a scalar
    floating-point loss computed from the parameters. A wrong width would train without an error
    (the one-hot labels of the classes past it are zero rows); a model or loss that fails, a
    per-example loss or integer parameters would fail deep inside the first compiled step, and a
    loss that is a Python number would train to nothing (every hypergradient 0). Everything is
    traced abstractly (``jax.eval_shape``): no weights drawn, nothing run."""
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
            raise _raised(f"task {name}: {what} fails", err) from err

    params = traced("init", task.init, key)
    integer = [(jax.tree_util.keystr(path), leaf.dtype) for path, leaf in jax.tree_util.tree_leaves_with_path(params)
               if not jnp.issubdtype(leaf.dtype, jnp.inexact)]
    if integer:
        shown = ", ".join(f"{path or 'params'}: {dtype}" for path, dtype in integer[:3])
        raise TaskError(f"task {name}: init gives {integer[0][1]} parameters ({shown}"
                        f"{', ...' if len(integer) > 3 else ''}); training differentiates every parameter: make them "
                        "floating-point (e.g. jnp.float32), and keep integers in the model state")
    model_state = traced("init_state", task.init_state, key)
    if task.apply is not None:
        out = traced(f"its model on {images}", task.apply, params, model_state, x)
        wanted = (batch, num_classes)
        found = getattr(out, "shape", None)
        if found is None:
            raise TaskError(f"task {name}: its model gives a {type(out).__name__} for {images}, not an array "
                            f"of shape {wanted}")
        if tuple(found) != wanted:
            raise TaskError(f"task {name}: its model's outputs for {images} have shape {tuple(found)}; wanted "
                            f"{wanted}: one logit per class, {num_classes} classes")
    _check_loss(f"task {name}: its loss on {images}",
                traced(f"its loss on {images}", task.loss, params, model_state, (x, y), key))


def _check_loss(where: str, out) -> None:
    """TaskError (its text after ``where``) unless ``out``, a loss's abstract value, is ``(loss,
    (model_state, metrics))`` with ``loss`` a floating-point scalar computed from the parameters
    (a weak type: built of Python numbers alone, as no parameter enters it)."""
    def pair(value) -> bool:
        return isinstance(value, (tuple, list)) and len(value) == 2

    if not (pair(out) and pair(out[1])):
        found = f"a {out.dtype} array" if hasattr(out, "dtype") else f"a {type(out).__name__}"
        raise TaskError(f"{where} gives {found}, not (loss, (model_state, metrics))")
    loss = out[0]
    if not hasattr(loss, "dtype"):
        raise TaskError(f"{where} gives a {type(loss).__name__} as its loss, not a scalar array")
    if tuple(loss.shape) != ():
        raise TaskError(f"{where} has shape {tuple(loss.shape)}, not a scalar; return the mean over the batch "
                        "(e.g. jnp.mean of the per-example losses)")
    if not jnp.issubdtype(loss.dtype, jnp.floating):
        raise TaskError(f"{where} is {loss.dtype}, not floating-point")
    if loss.weak_type:
        raise TaskError(f"{where} is a Python number, not computed from the parameters (its hypergradients would "
                        "all be 0)")


def task_factory(name: str) -> Callable[..., Task]:
    """The factory of task ``name`` (see :func:`make_task`); a TaskError that says what is
    wrong and what is expected otherwise, before any work is done."""
    if ":" in name:
        return load_factory(name)
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}, "
                         "or name your own as package.module:factory")
    return TASKS[name]


def load_factory(spec: str) -> Callable[..., Task]:
    """The function named by ``package.module:factory``; a TaskError that names what is
    wrong (the module, the attribute, the signature, the module's own error) otherwise."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise TaskError(f"task {spec!r}: expected package.module:factory, with {FACTORY}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise TaskError(f"task {spec}: cannot import module {module_name!r} ({err}); is its folder on "
                         f"PYTHONPATH or the package installed? expected {FACTORY}") from None
    except SyntaxError as err:
        raise TaskError(f"task {spec}: module {module_name!r} has a syntax error ({err})") from None
    except (Exception, SystemExit) as err:  # the module's own code failed as it ran (or called sys.exit)
        raise _raised(f"task {spec}: importing module {module_name!r} fails", err) from err
    factory = getattr(module, attribute, None)
    if factory is None:
        raise TaskError(f"task {spec}: module {module_name!r} has no attribute {attribute!r}; expected {FACTORY}")
    if not callable(factory):
        raise TaskError(f"task {spec}: {attribute!r} is a {type(factory).__name__}, not a function; "
                         f"expected {FACTORY}")
    try:
        inspect.signature(factory).bind(input_shape=(1, 1, 1), num_classes=1)
    except TypeError as err:
        raise TaskError(f"task {spec}: {attribute} does not take (input_shape, num_classes) ({err}); "
                         f"expected {FACTORY}") from None
    except ValueError:  # no signature to inspect (a builtin): call it and see
        pass
    return factory
