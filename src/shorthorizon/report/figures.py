"""Drawing helpers shared by the experiments' figures. Each experiment draws its own figures in
its ``plot(run_dir)`` (in its module, or in ``report/<module>.py``), from saved results only;
what two of them draw alike lives here."""

from __future__ import annotations

import numpy as np


def smooth(x: np.ndarray, y: np.ndarray, z: np.ndarray, x_range, y_range, grid: int = 60,
           bandwidth: float = 0.08):
    """Gaussian-kernel average of scattered ``z`` at (x, y) onto a ``grid`` x ``grid`` mesh
    spanning ``x_range`` x ``y_range``; the bandwidth is a fraction of each range."""
    gx, gy = np.linspace(*x_range, grid), np.linspace(*y_range, grid)
    dx = (gx[:, None] - x) / (bandwidth * np.ptp(x_range))
    dy = (gy[:, None] - y) / (bandwidth * np.ptp(y_range))
    w = np.exp(-0.5 * (dx[None] ** 2 + dy[:, None] ** 2))  # (grid_y, grid_x, n)
    return gx, gy, (w * z).sum(-1) / w.sum(-1)


def surface_panel(fig, ax, surface: dict, loss: np.ndarray, label: str) -> None:
    """A contour of log10 ``loss`` at the surface's (lr0, decay_exponent) samples, smoothed
    onto the box (axes in log10); a diverged sample counts as the worst finite one."""
    finite = np.isfinite(loss)
    z = np.log10(np.where(finite, loss, loss[finite].max() if finite.any() else 1.0))
    box = [np.log10(surface[k]) for k in ("lr0_range", "decay_exponent_range")]
    gx, gy, gz = smooth(np.log10(surface["lr0"]), np.log10(surface["decay_exponent"]), z, *box)
    fig.colorbar(ax.contourf(gx, gy, gz, levels=20, cmap="viridis"), ax=ax, label=label)
