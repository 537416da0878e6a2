"""Meta-optimization drivers: stochastic meta-descent, offline and online."""
