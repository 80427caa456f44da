"""Readable statistics from the additive summaries a run file stores.

The recorder keeps, per tensor and record step, sufficient statistics that add across
micro-batches, ranks and time: element count, sum, sum of squares, min, max, histogram bin
counts and counts of special elements. This module turns them into means, standard deviations,
fractions and quantiles, and merges consecutive records into time windows.
"""

from collections.abc import Mapping

import numpy as np

__all__ = ["moments", "fraction", "hist_quantiles", "hist_mean", "merge_windows", "rebin"]


def moments(count, total, total_sq):
    """Mean and population standard deviation from count, Σx and Σx² (broadcast shapes).

    mean = Σx/n; std = √max(Σx²/n − mean², 0). The subtraction loses about log10(mean²/var)
    of float64's 16 digits, so a std below ≈ 1e-8·|mean| is round-off; negative round-off is
    clipped to 0. Both are NaN where the count is 0. Returns (mean, std) as float64 arrays.
    """
    n = np.asarray(count, dtype=np.float64)
    s = np.asarray(total, dtype=np.float64)
    sq = np.asarray(total_sq, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, s / n, np.nan)
        var = np.where(n > 0, sq / n - mean * mean, np.nan)
    return mean, np.sqrt(np.maximum(var, 0.0))  # maximum keeps the NaN of empty counts


def fraction(part, count):
    """part/count as float64, NaN where count is 0 (e.g. zero or saturated elements / all)."""
    part = np.asarray(part, dtype=np.float64)
    count = np.asarray(count, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, part / count, np.nan)


def _finite_edges(edges):
    """Bin edges with an open end (±inf) replaced by the bin's other edge, so an overflow or
    underflow bin counts at the edge of the binned range."""
    e = np.asarray(edges, dtype=np.float64).copy()
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"edges must be 1-D with at least 2 entries, got shape {e.shape}")
    if np.isneginf(e[0]):
        e[0] = e[1]
    if np.isposinf(e[-1]):
        e[-1] = e[-2]
    if not np.all(np.isfinite(e)) or np.any(np.diff(e) < 0):
        raise ValueError("edges must be increasing; only the first may be -inf and the last +inf")
    return e


def hist_quantiles(edges, counts, q):
    """Quantiles of binned data, interpolating linearly within a bin.

    ``edges`` (B+1,), ``counts`` (..., B) (e.g. one histogram per record step, (R, B)), ``q``
    scalar or (Q,) in [0, 1] → (..., Q) (or (...) for scalar q), in the units of the edges.
    The q-quantile is e_b + (qN − C_b)/c_b·(e_{b+1} − e_b) in the bin b where the cumulative
    count C first reaches qN (q = 0 gives the left edge of the first non-empty bin). An open
    underflow/overflow bin (edge ±inf) puts its mass at its finite edge, so a quantile that
    falls there is clipped to the binned range. NaN for an empty histogram.
    """
    e = _finite_edges(edges)
    c = np.asarray(counts, dtype=np.float64)
    if c.shape[-1] != e.size - 1:
        raise ValueError(f"counts has {c.shape[-1]} bins but edges define {e.size - 1}")
    q_arr = np.asarray(q, dtype=np.float64)
    if np.any((q_arr < 0) | (q_arr > 1)):
        raise ValueError(f"q must lie in [0, 1], got {q!r}")
    qs = np.atleast_1d(q_arr)
    cum = np.cumsum(c, axis=-1)  # C_{b+1}, (..., B)
    total = cum[..., -1:]
    target = qs * total  # (..., Q)
    # first bin whose upper cumulative count reaches the target; "cum > 0" skips leading
    # empty bins when the target is 0
    reached = (cum[..., None, :] >= target[..., :, None]) & (cum[..., None, :] > 0)
    b = np.argmax(reached, axis=-1)  # (..., Q)
    below = np.take_along_axis(cum - c, b, axis=-1)  # C_b
    in_bin = np.take_along_axis(c, b, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(in_bin > 0, (target - below) / in_bin, 0.0)
        out = np.where(total > 0, e[b] + frac * (e[b + 1] - e[b]), np.nan)
    return out if q_arr.ndim else out[..., 0]


def hist_mean(edges, counts):
    """Mean of binned data with each bin's mass at its midpoint: Σ c_b·m_b / Σ c_b.

    ``edges`` (B+1,), ``counts`` (..., B) → (...), in the units of the edges (log10 units for
    log-binned magnitudes). Open-ended bins count at their finite edge; NaN where empty.
    """
    e = _finite_edges(edges)
    c = np.asarray(counts, dtype=np.float64)
    if c.shape[-1] != e.size - 1:
        raise ValueError(f"counts has {c.shape[-1]} bins but edges define {e.size - 1}")
    mid = (e[:-1] + e[1:]) / 2
    return fraction(c @ mid, c.sum(axis=-1))


def merge_windows(steps, summary: Mapping[str, np.ndarray], size: int):
    """Merge consecutive records into windows of ``size`` records by the additive rule.

    ``steps`` (R,); ``summary`` maps field names to arrays with records on axis 0, (R, ...).
    Fields named "min" take the minimum over the window, "max" the maximum, every other
    field (count, sum, sum of squares, histogram or special-element counts) the sum; NaN
    entries are ignored by min and max. Returns (steps of the last record of each window
    (W,), dict of merged fields (W, ...)), W = ⌈R/size⌉; the last window may be shorter.
    """
    steps = np.asarray(steps)
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size!r}")
    starts = np.arange(0, steps.size, size)
    ends = np.minimum(starts + size, steps.size) - 1
    merged = {}
    for name, values in summary.items():
        values = np.asarray(values)
        if values.shape[:1] != steps.shape:
            raise ValueError(f"field {name!r} has {values.shape[:1]} records, steps has {steps.shape}")
        rule = {"min": np.fmin, "max": np.fmax}.get(name, np.add)
        merged[name] = rule.reduceat(values, starts, axis=0)
    return steps[ends], merged


def rebin(counts, edges, target):
    """Histogram counts moved onto other bin edges, each bin's count spread evenly over it.

    ``counts`` (..., B) with ``edges`` (..., B + 1) (one row of edges per row of counts, or
    one shared row), ``target`` (C + 1,) increasing → (..., C). The cumulative count is
    interpolated linearly at the target edges, so the total inside the common range is kept
    exactly; counts outside ``target`` are dropped (choose it to cover every row's edges).
    """
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.broadcast_to(np.asarray(edges, dtype=np.float64), counts.shape[:-1] + (counts.shape[-1] + 1,))
    target = np.asarray(target, dtype=np.float64)
    flat_counts = counts.reshape(-1, counts.shape[-1])
    flat_edges = edges.reshape(-1, edges.shape[-1])
    out = np.zeros((flat_counts.shape[0], target.size - 1))
    for i, (c, e) in enumerate(zip(flat_counts, flat_edges)):
        if not np.all(np.isfinite(e)) or not np.any(c):
            continue
        cumulative = np.concatenate([[0.0], np.cumsum(np.nan_to_num(c))])
        out[i] = np.diff(np.interp(target, e, cumulative, left=0.0, right=cumulative[-1]))
    return out.reshape(counts.shape[:-1] + (target.size - 1,))
