"""shorthorizon: short-horizon bias in stochastic meta-optimization (Wu et al., ICLR 2018).

The public API, one import away (``from shorthorizon import NQM, Online, make_estimator``):

- the noisy quadratic model: :class:`NQM`, :func:`loss_curve`, :func:`greedy_schedule`,
  :func:`fit_schedule`, :func:`simulate`;
- hypergradients: :func:`hypergradient` (a derivative mode on a plain meta-objective),
  :func:`make_estimator` and :data:`ESTIMATORS` (estimator objects (:class:`Estimator`): :class:`Truncated`,
  :class:`ES`, :class:`PES`, :class:`NRES`), :class:`Unroll`, :class:`TrainingRun`;
- meta-optimization: :class:`SMD` (the outer loop), :class:`Online` (adapt while training),
  :class:`Offline` and :class:`OfflineFit` (fit a decay schedule, built from an
  :class:`OfflineConfig`);
- tasks: :class:`Task`, :func:`mlp`, :func:`cnn`, :func:`classifier`, :func:`make_task`, and the
  adapters of a user's Flax NNX or Equinox model, :func:`nnx_classifier`, :func:`equinox_classifier`;
- optimizers: :func:`make_optimizer`, :func:`momentum`, :func:`sgd`, :func:`adam`,
  :func:`adamw`, :class:`LogSpace`, :class:`EffectiveSpace`; learning-rate schedules:
  :func:`make_schedule` and :data:`SCHEDULES` (schedule objects, :class:`Schedule`),
  :func:`inverse_time`;
- data: :class:`Data`, :func:`load_data` (a dataset's train and test splits on the device),
  :func:`make_fake_dataset`.

Names are imported when first used, so ``import shorthorizon`` (and the command line) starts
without loading JAX.
"""

# typing.TYPE_CHECKING without importing typing: the console script imports this package before it
# takes Ctrl-C over, so at its top it loads nothing the interpreter has not (not even importlib;
# type checkers read the name as theirs)
TYPE_CHECKING = False

__version__ = "0.1.0"

# public name -> the module that defines it (and its name there, where it differs)
_API = {
    "NQM": "shorthorizon.nqm", "loss_curve": "shorthorizon.nqm", "greedy_schedule": "shorthorizon.nqm",
    "fit_schedule": "shorthorizon.nqm", "simulate": "shorthorizon.nqm",
    "hypergradient": "shorthorizon.hypergrad", "make_estimator": "shorthorizon.hypergrad",
    "ESTIMATORS": "shorthorizon.hypergrad", "Truncated": "shorthorizon.hypergrad", "ES": "shorthorizon.hypergrad",
    "NRES": "shorthorizon.hypergrad", "PES": "shorthorizon.hypergrad",
    "Estimator": "shorthorizon.hypergrad", "Unroll": "shorthorizon.hypergrad", "TrainingRun": "shorthorizon.hypergrad", "Data": "shorthorizon.hypergrad",
    "SMD": "shorthorizon.meta.smd", "Online": "shorthorizon.meta.online", "Offline": "shorthorizon.meta.offline",
    "OfflineFit": "shorthorizon.offline_problem", "OfflineConfig": "shorthorizon.offline_problem",
    "Task": "shorthorizon.tasks", "mlp": "shorthorizon.tasks", "cnn": "shorthorizon.tasks",
    "classifier": "shorthorizon.tasks", "make_task": "shorthorizon.tasks",
    "nnx_classifier": "shorthorizon.tasks.adapters", "equinox_classifier": "shorthorizon.tasks.adapters",
    "make_optimizer": "shorthorizon.optim", "momentum": "shorthorizon.optim", "sgd": "shorthorizon.optim",
    "adam": "shorthorizon.optim", "adamw": "shorthorizon.optim", "inverse_time": "shorthorizon.optim",
    "make_schedule": "shorthorizon.optim", "SCHEDULES": "shorthorizon.optim", "Schedule": "shorthorizon.optim",
    "LogSpace": "shorthorizon.optim", "EffectiveSpace": "shorthorizon.optim",
    "load_data": ("shorthorizon.data.splits", "load"), "make_fake_dataset": "shorthorizon.data",
}
__all__ = sorted(_API)

if TYPE_CHECKING:  # what IDEs and type checkers see; at run time a name is imported when first used
    # (tests/test_readme.py keeps these imports and _API the same names from the same modules)
    from shorthorizon.data import make_fake_dataset
    from shorthorizon.data.splits import load as load_data
    from shorthorizon.hypergrad import (Data, ES, ESTIMATORS, Estimator, NRES, PES, TrainingRun, Truncated, Unroll,
                                        hypergradient, make_estimator)
    from shorthorizon.meta.offline import Offline
    from shorthorizon.meta.online import Online
    from shorthorizon.meta.smd import SMD
    from shorthorizon.nqm import NQM, fit_schedule, greedy_schedule, loss_curve, simulate
    from shorthorizon.offline_problem import OfflineConfig, OfflineFit
    from shorthorizon.optim import (EffectiveSpace, LogSpace, SCHEDULES, Schedule, adam, adamw, inverse_time,
                                    make_optimizer, make_schedule, momentum, sgd)
    from shorthorizon.tasks import Task, classifier, cnn, make_task, mlp
    from shorthorizon.tasks.adapters import equinox_classifier, nnx_classifier


def __getattr__(name: str):
    import importlib

    if name not in _API:
        raise AttributeError(f"module 'shorthorizon' has no attribute {name!r}")
    module, attribute = _API[name] if isinstance(_API[name], tuple) else (_API[name], name)
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
