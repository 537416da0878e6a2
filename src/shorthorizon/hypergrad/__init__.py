"""Hypergradients of a meta-objective defined by unrolled training."""

from shorthorizon.hypergrad.estimators import ESTIMATORS, hypergradient
from shorthorizon.hypergrad.unroll import (LOOKAHEADS, Data, Unroll, batches, evaluate, mean_loss, sample_batch,
                                           stochastic_batches, train)

__all__ = ["ESTIMATORS", "LOOKAHEADS", "Data", "Unroll", "batches", "evaluate", "hypergradient", "mean_loss",
           "sample_batch", "stochastic_batches", "train"]
