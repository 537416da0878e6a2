"""Executors for units of work: in-process (default) or spread over a Ray cluster.

``units``: :class:`Unit`, :func:`run_units` (stored units are verified and skipped, so an
interrupted sweep resumes), :func:`run_seeded` (every seed's units of a stage in one sweep); ``ray``: joining or starting a Ray cluster.
"""

from shorthorizon.runners.ray import ensure_ray
from shorthorizon.runners.units import EXECUTORS, Unit, inputs, run_seeded, run_units, seed_name

__all__ = ["EXECUTORS", "Unit", "ensure_ray", "inputs", "run_seeded", "run_units", "seed_name"]
