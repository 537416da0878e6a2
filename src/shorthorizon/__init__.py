"""shorthorizon: short-horizon bias in stochastic meta-optimization (Wu et al., ICLR 2018)."""

__version__ = "0.1.0"
