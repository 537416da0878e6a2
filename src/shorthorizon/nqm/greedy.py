"""Greedy-optimal schedules: at each step, the (lr, momentum) minimising the next step's loss.

With second moments A(θ) = E[θ²], A(v) = E[v²], B = E[θv], the expected loss after one step is

    ℓ(α, μ) = ½ Σ h [(1 − αh)² A(θ) + 2μ(1 − αh) B + μ² A(v) + α²h²σ²],

a convex quadratic in (α, μ). Setting both derivatives to zero gives Theorem 2:

    α* = Σ h² (A(θ) + μ* B) / Σ h³ (A(θ) + σ²)
    μ* = − Σ h (1 − α* h) B / Σ h A(v)             (note the minus sign)

which we solve jointly as the 2×2 linear system

    [ Σh³(A(θ)+σ²)   −Σh²B  ] [α]   [ Σh²A(θ) ]
    [ −Σh²B          Σh A(v) ] [μ] = [ −Σh B   ].

Without momentum (Theorem 3; Schaul et al., 2013): α* = Σ h² A(θ) / Σ h³ (A(θ) + σ²).
When A(v) = 0 (the first step: v(0) = 0) μ has no effect and is set to 0.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from shorthorizon.nqm.dynamics import Moments, ScheduledRun, initial_moments, loss_of, step_moments
from shorthorizon.nqm.problem import NQM


def greedy_step(nqm: NQM, m: Moments, momentum: bool = True) -> tuple:
    """The (lr, momentum) that minimise the expected loss one step after the state ``m``."""
    h = jnp.asarray(nqm.curvature, dtype=float)
    sigma2 = jnp.asarray(nqm.sigma2, dtype=float)
    a_theta = m.mean_theta**2 + m.var_theta
    a_v = m.mean_v**2 + m.var_v
    b = m.mean_theta * m.mean_v + m.cov
    k_aa = jnp.sum(h**3 * (a_theta + sigma2))
    rhs_a = jnp.sum(h**2 * a_theta)
    # k_aa = 0 only at the exact minimum of a deterministic problem (e.g. one step of lr 1/h on a
    # spherical one); every lr is then optimal and 0 is returned instead of 0/0.
    lr_sgd = rhs_a / jnp.where(k_aa > 0, k_aa, 1.0)
    if not momentum:
        return lr_sgd, jnp.zeros_like(lr_sgd)
    k_am = -jnp.sum(h**2 * b)
    k_mm = jnp.sum(h * a_v)
    rhs_m = -jnp.sum(h * b)
    det = k_aa * k_mm - k_am**2
    # Cauchy–Schwarz makes det >= 0; it is 0 only when v carries no information (e.g. v = 0).
    usable = det > 1e-12 * k_aa * jnp.maximum(k_mm, jnp.finfo(det.dtype).tiny)
    safe_det = jnp.where(usable, det, 1.0)
    lr = jnp.where(usable, (rhs_a * k_mm - k_am * rhs_m) / safe_det, lr_sgd)
    mu = jnp.where(usable, (k_aa * rhs_m - k_am * rhs_a) / safe_det, 0.0)
    return lr, mu


def greedy_schedule(nqm: NQM, horizon: int, momentum: bool = True) -> ScheduledRun:
    """Roll the greedy rule forward for ``horizon`` steps (Theorem 2, or Theorem 3 when
    ``momentum=False``); returns the schedule and its loss curve (length horizon + 1)."""
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    m0 = initial_moments(nqm)

    def step(m, _):
        lr, mu = greedy_step(nqm, m, momentum)
        m = step_moments(nqm, m, lr, mu)
        return m, (lr, mu, loss_of(nqm, m).sum())

    _, (lr, mu, loss) = lax.scan(step, m0, None, length=int(horizon))
    return ScheduledRun(lr, mu, jnp.concatenate([loss_of(nqm, m0).sum()[None], loss]))
