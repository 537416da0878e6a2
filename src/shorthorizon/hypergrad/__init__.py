"""Hypergradients of a meta-objective defined by unrolled training."""

from shorthorizon.hypergrad.estimators import ES, ESTIMATORS, NRES, EstState, Inner, Truncated, make_estimator
from shorthorizon.hypergrad.modes import MODES, hypergradient
from shorthorizon.hypergrad.unroll import (LOOKAHEADS, Data, RunState, TrainingRun, Unroll, batches, evaluate,
                                           mean_loss, model_key, run_keys, sample_batch, scalar_loss,
                                           stochastic_batches, train)

__all__ = ["ES", "ESTIMATORS", "LOOKAHEADS", "MODES", "NRES", "Data", "EstState", "Inner", "RunState", "TrainingRun",
           "Truncated", "Unroll", "batches", "evaluate", "hypergradient", "make_estimator", "mean_loss",
           "model_key", "run_keys", "sample_batch", "scalar_loss", "stochastic_batches", "train"]
