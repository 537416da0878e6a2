"""The noisy quadratic model (NQM): exact dynamics, greedy and fitted schedules, simulation.

>>> import jax; jax.config.update("jax_enable_x64", True)
>>> from shorthorizon.nqm import NQM, greedy_schedule
>>> float(greedy_schedule(NQM.paper(), 250).loss[-1])  # doctest: +SKIP
59.4...
"""

from shorthorizon.nqm.dynamics import (
    Moments,
    ScheduledRun,
    component_ratios,
    ratios_of,
    initial_moments,
    loss_components,
    loss_curve,
    max_component_ratio,
    moment_trajectory,
    step_moments,
)
from shorthorizon.nqm.fit import Fit, fit_schedule
from shorthorizon.nqm.greedy import greedy_schedule, greedy_step
from shorthorizon.nqm.problem import NQM, chebyshev_spectrum, geometric_spectrum, harmonic_spectrum
from shorthorizon.nqm.regime import (
    HorizonCurve,
    Regime,
    horizon_curve,
    regime,
    regime_problem,
    safe_horizon,
)
from shorthorizon.nqm.simulate import simulate

__all__ = [
    "NQM",
    "Fit",
    "HorizonCurve",
    "Moments",
    "Regime",
    "ScheduledRun",
    "chebyshev_spectrum",
    "component_ratios",
    "fit_schedule",
    "geometric_spectrum",
    "greedy_schedule",
    "greedy_step",
    "harmonic_spectrum",
    "horizon_curve",
    "initial_moments",
    "loss_components",
    "loss_curve",
    "max_component_ratio",
    "moment_trajectory",
    "ratios_of",
    "regime",
    "regime_problem",
    "safe_horizon",
    "simulate",
    "step_moments",
]
