"""Base optimizers whose hyperparameters live in their state, and learning-rate schedules.

Keeping ``hyper`` (a dict of scalars) inside :class:`OptState` lets one step function serve
plain training, forward-mode and reverse-mode hypergradients: differentiate the unroll with
respect to ``state.hyper`` and nothing else changes. Every optimizer is an optax
transformation built with ``optax.inject_hyperparams`` (:class:`Optimizer`), so any optax
optimizer or chain can be the base optimizer and any of its numeric hyperparameters adapted.

Conventions (one name per idea): ``lr`` is α in ``v <- μ v - α ∇L, θ <- θ + v``;
``momentum`` is μ (β1 for Adam); ``decay_exponent`` is β of the inverse-time schedule;
``decay_rate`` is the factor of the exponential schedule per ``decay_steps``.
"""

from shorthorizon.optim.optimizers import (OPTIMIZERS, Hyper, Optimizer, OptState, Schedule, adam, adamw, constant,
                                           exponential, inverse_time, make_optimizer, momentum, sgd)
from shorthorizon.optim.spaces import COMPLEMENTED, EffectiveSpace, LogSpace, from_effective, log_space, to_effective

__all__ = ["COMPLEMENTED", "OPTIMIZERS", "EffectiveSpace", "Hyper", "LogSpace", "OptState", "Optimizer", "Schedule", "adam", "adamw",
           "constant", "exponential", "from_effective", "inverse_time", "log_space", "make_optimizer", "momentum", "sgd",
           "to_effective"]
