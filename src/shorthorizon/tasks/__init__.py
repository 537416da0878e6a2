"""Base-level problems: a model's parameters, state and loss, and its evaluation.

:mod:`~shorthorizon.tasks.base` defines :class:`Task` (what training and every estimator need
of a model) and the classifiers' loss; :mod:`~shorthorizon.tasks.models` the paper's MLP and
CNN; :mod:`~shorthorizon.tasks.registry` builds a task by name or from a user's
``package.module:factory`` (:func:`make_task`); :mod:`~shorthorizon.tasks.adapters` turns a
Flax NNX or Equinox model into a task.
"""

from shorthorizon.tasks.base import (ModelState, Params, Task, cast_floats, classification_loss,
                                     classification_metrics, classifier, initialize)
from shorthorizon.tasks.models import cnn, mlp
from shorthorizon.tasks.registry import FACTORY, TASKS, TaskError, check_output, load_factory, make_task, task_factory

__all__ = ["FACTORY", "TASKS", "TaskError", "ModelState", "Params", "Task", "cast_floats", "check_output", "classification_loss",
           "classification_metrics", "classifier", "cnn", "initialize", "load_factory", "make_task", "mlp",
           "task_factory"]
