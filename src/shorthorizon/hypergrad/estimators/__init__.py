"""Hypergradient estimators: the gradient of a whole run's objective, seen one window at a time.

**Estimator objects** estimate the gradient of a *whole-run* objective of an inner problem
(:class:`Inner`) one window of ``truncation`` = K steps at a time, keeping state between
windows (learned_optimization's ``GradientEstimator``, without its global configuration)::

    estimator = make_estimator("pes", truncation=10, particles=4, sigma=0.1)  # names resolved once
    estimator = estimator.with_inner(inner)                  # the problem a driver composes it with
    state = estimator.init(hyper, key)                       # particles at step 0 (staggered)
    loss, grads, state = estimator.estimate(state, hyper, key)   # one window each

The same object estimates the gradient of a plain meta-objective ``f(hyper, key)``
(``objective_gradient``, what :class:`~shorthorizon.meta.smd.SMD` calls) and says what an
estimate costs (``cost`` in inner steps, ``work`` in plain passes): :class:`Estimator` declares
it all. Adding an estimator is one class in its family's module (its colour, description and
whether it is windowed on the class) and one entry in :data:`ESTIMATORS`.

The whole-run objective is the **mean per-step loss over the run** of T steps,
J = (1/T) Σ_{t=1..T} L_t. A window's loss is the mean loss over its K steps, so for a particle
at a uniformly random window the expectation of (the gradient of) its window loss is J's
(the window losses average to J). The families: :mod:`.truncated` (forward mode, TBPTT, finite
differences; biased for K < T) and :mod:`.es` (ES, PES, NRES: antithetic pairs, the last two
unbiased for smoothed whole-run objectives).

The + and − particles of a pair, and every mode of one particle, see the same randomness: an
inner state carries its own key and the step index (common random numbers), so the estimate's
noise comes from the trajectory, not from a difference of two unrelated ones.
"""

from __future__ import annotations

from typing import Any

from shorthorizon.hypergrad.estimators.base import EstState, Estimator, Inner
from shorthorizon.hypergrad.estimators.es import ES, NRES, PES
from shorthorizon.hypergrad.estimators.truncated import Truncated

# name -> (class, the fields that name fixes): the one table of estimator names
ESTIMATORS: dict[str, tuple[type[Estimator], dict[str, Any]]] = {
    "forward": (Truncated, {"mode": "forward"}),
    "reverse": (Truncated, {"mode": "reverse"}),
    "fd": (Truncated, {"mode": "fd"}),
    "es": (ES, {}),
    "pes": (PES, {}),
    "nres": (NRES, {}),
}


def make_estimator(name: str, inner: Inner | None = None, truncation: int | None = None, particles: int = 1,
                   sigma: float = 0.01, **options) -> Estimator:
    """The estimator called ``name`` (a key of :data:`ESTIMATORS`), on ``inner`` if given (else
    bind one later with ``with_inner``); ``sigma`` goes to the classes that perturb, ``options``
    to its class (``stagger``, ``checkpoint``, ``fd_step``)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose one of: {', '.join(ESTIMATORS)}")
    cls, fixed = ESTIMATORS[name]
    if "sigma" in cls.__dataclass_fields__:
        options["sigma"] = sigma
    return cls(inner=inner, truncation=truncation, particles=particles, **fixed, **options)


# the registered estimators that are windowed, in registration order: the default of the
# experiments that compare estimators over windows (fixed at import: a config default is a constant)
WINDOWED = tuple(name for name in ESTIMATORS if make_estimator(name).windowed)

__all__ = ["ES", "ESTIMATORS", "NRES", "PES", "WINDOWED", "EstState", "Estimator", "Inner", "Truncated",
           "make_estimator"]
