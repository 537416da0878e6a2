"""Base optimizers whose hyperparameters live in their state, and learning-rate schedules.

Keeping ``hyper`` (a dict of scalars) inside :class:`OptState` lets one step function serve
plain training, forward-mode and reverse-mode hypergradients: differentiate the unroll with
respect to ``state.hyper`` and nothing else changes. Every optimizer is an optax
transformation built with ``optax.inject_hyperparams`` (:class:`Optimizer`), so any optax
optimizer or chain can be the base optimizer and any of its numeric hyperparameters adapted.

Conventions (one name per idea): ``lr`` is α in ``v <- μ v - α ∇L, θ <- θ + v``;
``momentum`` is μ (β1 for Adam); ``decay_exponent`` is β of the inverse-time schedule;
``decay_rate`` is the factor of the exponential schedule per ``decay_steps``;
``final_fraction`` is the cosine schedules' last lr over their peak.

Schedules are objects (:class:`Schedule`, one family per class in :data:`SCHEDULES`, built by
:func:`make_schedule`): static shape fields, and the hyperparameters they read from ``hyper``.
"""

from shorthorizon.optim.optimizers import OPTIMIZERS, Optimizer, OptState, adam, adamw, make_optimizer, momentum, sgd
from shorthorizon.optim.schedules import (SCHEDULES, Hyper, Hyperparameter, Limits, LrSchedule, Schedule, constant,
                                          exponential, inverse_time, make_schedule)
from shorthorizon.optim.spaces import (COMPLEMENTED, LIMITS, EffectiveSpace, LogSpace, from_effective, log_space,
                                      to_effective)

__all__ = ["COMPLEMENTED", "LIMITS", "OPTIMIZERS", "SCHEDULES", "EffectiveSpace", "Hyper", "Hyperparameter", "Limits",
           "LogSpace", "LrSchedule", "OptState", "Optimizer", "Schedule", "adam", "adamw", "constant", "exponential",
           "from_effective", "inverse_time", "log_space", "make_optimizer", "make_schedule", "momentum", "sgd",
           "to_effective"]
