"""Small statistics behind the gallery's figures: means of a per-step series over intervals of
steps (the per-epoch training loss), and the roughness of a 2-D grid (output landscapes)."""

import numpy as np

__all__ = ["interval_means", "roughness"]


def interval_means(steps, values, ends):
    """Mean of ``values`` over each interval of steps (ends[i−1], ends[i]], (N,), (N,), (E,) → (E,).

    The first interval starts after step −∞. Non-finite values are skipped; an interval with
    no finite value gives NaN. Used for the training loss of each epoch from per-step losses,
    ``ends`` being the steps at which the per-epoch validation values were logged.
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64)
    ends = np.asarray(ends)
    if steps.shape != values.shape or values.ndim != 1:
        raise ValueError(
            f"steps and values must be 1-D of the same shape, got {steps.shape} and {values.shape}"
        )
    if ends.ndim != 1 or np.any(np.diff(ends) < 0):
        raise ValueError("ends must be a non-decreasing 1-D array of steps")
    finite = np.isfinite(values)
    which = np.searchsorted(ends, steps[finite], side="left")  # interval index of each step
    keep = which < len(ends)
    sums = np.bincount(which[keep], weights=values[finite][keep], minlength=len(ends))
    counts = np.bincount(which[keep], minlength=len(ends))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def roughness(grid) -> float:
    """Mean |discrete Laplacian| of a 2-D grid divided by its range (max − min).

    Laplacian: the 5-point stencil f(i±1, j) + f(i, j±1) − 4f(i, j) on interior points, in
    grid units. 0 for a plane; larger for kinks and wiggles. A constant grid gives NaN.
    Depends on the grid spacing (compare grids of one resolution only).
    """
    z = np.asarray(grid, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < 3:
        raise ValueError(f"grid must be 2-D with at least 3 × 3 points, got shape {z.shape}")
    lap = z[2:, 1:-1] + z[:-2, 1:-1] + z[1:-1, 2:] + z[1:-1, :-2] - 4.0 * z[1:-1, 1:-1]
    span = np.nanmax(z) - np.nanmin(z)
    return float(np.nanmean(np.abs(lap)) / span) if span > 0 else float("nan")
