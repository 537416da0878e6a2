"""Hypergradients of a meta-objective defined by unrolled training."""

from shorthorizon.hypergrad.estimators import (ES, ESTIMATORS, NRES, PES, WINDOWED, EstState, Estimator, Inner,
                                               Truncated, make_estimator)
from shorthorizon.hypergrad.modes import MODES, hypergradient
from shorthorizon.hypergrad.unroll import (LOOKAHEADS, Data, RunState, TrainingRun, Unroll, batches, evaluate,
                                           mean_loss, model_key, run_keys, sample_batch, scalar_loss,
                                           stochastic_batches, train)

__all__ = ["ES", "ESTIMATORS", "LOOKAHEADS", "MODES", "NRES", "PES", "WINDOWED", "Data", "EstState", "Estimator",
           "Inner", "RunState", "TrainingRun", "Truncated", "Unroll", "batches", "evaluate", "hypergradient",
           "make_estimator", "mean_loss", "model_key", "run_keys", "sample_batch", "scalar_loss", "stochastic_batches",
           "train"]
