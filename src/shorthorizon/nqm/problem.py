"""The noisy quadratic model (NQM) and its curvature spectra.

The NQM of Wu et al. (2018, Sec. 2) is the stochastic loss, per dimension ``i``,

    L(θ) = ½ Σ_i h_i (θ_i − c_i)²,    c_i ~ N(0, σ_i²) drawn afresh at every step,

so the stochastic gradient is ``h_i (θ_i − c_i)``: exact in expectation, with noise variance
``h_i² σ_i²``. The parameters start at ``θ_i(0) ~ N(mean0_i, var0_i)`` and the velocity at 0.
Every quantity in this package is the *excess* expected loss ½ Σ h_i (E[θ_i]² + V[θ_i]);
the irreducible part ½ Σ h_i σ_i² is left out.
"""

from __future__ import annotations

import math

import jax
import numpy as np


def chebyshev_spectrum(dim: int, low: float = 1e-3, high: float = 1.0) -> np.ndarray:
    """Chebyshev extreme points cos(jπ/(d−1)), j = 0..d−1, mapped onto [low, high], descending.

    The worst-case spectrum for conjugate gradients (Li, 2005); the one that reproduces
    Section 2.3 of the paper. Dense near both ends, sparse in the middle.
    """
    _check_range(dim, low, high)
    if dim == 1:
        return np.array([high])
    nodes = np.cos(np.arange(dim) * math.pi / (dim - 1))  # 1 .. -1
    return low + (high - low) * (nodes + 1) / 2


def geometric_spectrum(dim: int, low: float = 1e-3, high: float = 1.0) -> np.ndarray:
    """Curvatures spaced evenly in log scale from ``high`` down to ``low``."""
    _check_range(dim, low, high)
    return np.geomspace(high, low, dim)


def harmonic_spectrum(dim: int, high: float = 1.0) -> np.ndarray:
    """Curvatures h_i = high / i, i = 1..d (a power law, common in neural-net Hessians)."""
    _check_range(dim, high / max(dim, 1), high)
    return high / np.arange(1, dim + 1)


def _check_range(dim: int, low: float, high: float) -> None:
    if int(dim) != dim or dim < 1:
        raise ValueError(f"spectrum dimension must be a positive integer, got {dim!r}")
    if not (0 < low <= high) or not math.isfinite(high):
        raise ValueError(f"spectrum needs 0 < low <= high < inf, got low={low!r}, high={high!r}")


_FIELDS = ("curvature", "sigma2", "mean0", "var0")  # the leaves, in the order the constructor takes them


# Section 2.3 of the paper: the final excess losses after 250 steps on NQM.paper(1000), the
# noisy version, of the greedy schedule (Theorem 2), the best fixed lr and momentum, and the
# optimized per-step schedule
PAPER_LOSSES = {"noisy": {"greedy": 63.86, "fixed": 42.19, "optimized": 4.25}}


@jax.tree_util.register_pytree_node_class
class NQM:
    """A noisy quadratic problem: per-dimension ``curvature`` h_i, minimum-noise variance
    ``sigma2`` σ_i², initial mean ``mean0`` E[θ_i(0)] and variance ``var0`` V[θ_i(0)].

    Scalars broadcast to the curvature's shape. Arrays are stored as float64 NumPy arrays, so
    the problem's precision does not depend on when it was built; computations follow JAX's
    x64 setting. A pytree: it passes through ``jit`` and ``vmap``.

    >>> NQM([1.0, 0.1], sigma2=0.0, mean0=1.0).dim
    2
    """

    def __init__(self, curvature, sigma2=0.0, mean0=1.0, var0=0.0):
        self.curvature = _as_array("curvature", curvature)
        if self.curvature.ndim != 1 or self.curvature.size == 0:
            raise ValueError(f"curvature must be a non-empty 1-D array, got shape {self.curvature.shape}")
        for name, value in (("sigma2", sigma2), ("mean0", mean0), ("var0", var0)):
            value = _as_array(name, value)
            if value.ndim != 0 and value.shape != self.curvature.shape:
                raise ValueError(
                    f"{name} has shape {value.shape} but curvature has shape {self.curvature.shape}; "
                    "pass a scalar or an array of the curvature's shape"
                )
            setattr(self, name, np.broadcast_to(value, self.curvature.shape).copy())
        for name in ("curvature", "sigma2", "var0"):
            if np.any(getattr(self, name) < 0):
                raise ValueError(f"{name} must be non-negative, got min {getattr(self, name).min()!r}")

    @classmethod
    def paper(cls, dim: int = 1000, noisy: bool = True) -> "NQM":
        """The Section 2.3 problem: Chebyshev spectrum on [1e-3, 1], σ_i² = 1/h_i (gradient
        noise variance equal to the curvature), E[θ(0)] = 10, V[θ(0)] = 0. ``noisy=False``
        gives the deterministic version (σ = 0)."""
        curvature = chebyshev_spectrum(dim, 1e-3, 1.0)
        sigma2 = 1.0 / curvature if noisy else 0.0
        return cls(curvature, sigma2=sigma2, mean0=10.0, var0=0.0)

    @property
    def dim(self) -> int:
        return self.curvature.shape[-1]

    def replace(self, **changes) -> "NQM":
        """A copy with some fields changed (validated again)."""
        return NQM(**{**{name: getattr(self, name) for name in _FIELDS}, **changes})

    # --- pytree protocol: unflattening skips validation (leaves may be tracers) ---------
    def tree_flatten(self):
        return tuple(getattr(self, name) for name in _FIELDS), None

    @classmethod
    def tree_unflatten(cls, _aux, leaves):
        obj = object.__new__(cls)
        obj.__dict__.update(zip(_FIELDS, leaves))
        return obj

    def __repr__(self) -> str:
        if isinstance(self.curvature, np.ndarray):
            h = self.curvature
            return f"NQM(dim={self.dim}, curvature in [{h.min():.3g}, {h.max():.3g}])"
        return f"NQM(dim={self.dim})"  # leaves are tracers


def _as_array(name: str, value) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric: {err}") from err
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return array
