"""Where the weights of one parameter lie, from the weights probe's histograms: the distribution at
one record for several runs, and the share of weights near zero over training.

An L1 penalty pulls every weight towards 0 with the same force whatever its size, so the weights
that do not earn their keep end at 0 and the histogram gets a spike there; an L2 penalty pulls in
proportion to the weight, so weights shrink but rarely reach 0 (the histogram stays a bell). The
weights probe bins each record on [−h, h], h the largest |w| rounded up to 1, 2, 2.5 or 5 × 10ᵏ,
so the bin width changes with h; "near zero" (|w| < δ) is read exactly when ±δ fall on bin edges
at every record: with ``WeightsProbe(bins=1000)`` any δ that is a multiple of 0.01 does for
h ≤ 5 (widths 0.001 … 0.01).
"""

from __future__ import annotations

import numpy as np

from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, single
from dyntrace.plots.theme import series_color

__all__ = ["near_zero_fraction", "merged", "plot_weight_distribution", "plot_near_zero"]

_HOW = "record it with the 'weights' probe"


def _hist(run, param):
    if "weights" not in run.probes:
        raise missing(run, "'weights' probe data", _HOW)
    return run.hist("weights", param)


def _edges(hist, record: int) -> np.ndarray:
    """The bin edges of one record (the weights probe's ranges are per record)."""
    edges = np.asarray(hist.edges, dtype=np.float64)
    return edges[record] if edges.ndim == 2 else edges


def near_zero_fraction(run, param: str, delta: float = 0.01):
    """(steps (R,), fraction (R,)): the share of ``param``'s binned weights with |w| < δ at each
    record, summed over the bins inside [−δ, δ]. Raises ValueError when ±δ is not a bin edge of
    some record (the share would have to be guessed inside a bin)."""
    hist = _hist(run, param)
    fraction = np.empty(len(hist.steps))
    for r in range(len(hist.steps)):
        edges = _edges(hist, r)
        tol = 1e-9 * (edges[-1] - edges[0])
        if not all(np.any(np.abs(edges - x) <= tol) for x in (-delta, delta)):
            raise ValueError(
                f"{param}: ±{delta:g} is not a bin edge at record {r} (bin width "
                f"{edges[1] - edges[0]:g}); record with more bins"
            )
        inside = (edges[:-1] >= -delta - tol) & (edges[1:] <= delta + tol)
        fraction[r] = hist.counts[r][inside].sum() / max(hist.sampled[r], 1)
    return hist.steps, fraction


def merged(edges, counts, width: float | None):
    """(edges, counts) with groups of k neighbouring bins summed, k the largest divisor of the
    number of bins that keeps the bins at most ``width`` wide (None: unchanged). Counts add, so
    the merged histogram is exactly the histogram of the coarser bins."""
    edges, counts = np.asarray(edges, dtype=np.float64), np.asarray(counts)
    n = len(counts)
    if width is None or n == 0:
        return edges, counts
    k = max(
        [d for d in range(1, n + 1) if n % d == 0 and d * (edges[1] - edges[0]) <= width * (1 + 1e-9)] or [1]
    )
    return edges[::k], counts.reshape(n // k, k).sum(axis=1)


def plot_weight_distribution(
    runs,
    /,
    *,
    param: str,
    labels=None,
    colors=None,
    record: int = -1,
    ax=None,
    xlim: float | None = None,
    width: float | None = None,
):
    """The histogram of ``param``'s weights at one record (default: the last) of each run, as a
    density (share of the weights per unit of value: runs binned at different widths compare),
    log scale so the tails and the spike at 0 both show. ``xlim``: half-width of the value axis;
    ``width``: merge the probe's bins up to about this width (see :func:`merged`)."""
    runs = list(runs)
    labels = list(labels) if labels is not None else [r.path for r in runs]
    colors = list(colors) if colors is not None else [series_color(i, len(runs)) for i in range(len(runs))]
    with single(ax, figsize=(6.5, 4.2)) as (fig, ax, owns):
        for run, label, color in zip(runs, labels, colors):
            hist = _hist(run, param)
            edges, counts = merged(_edges(hist, record), hist.counts[record], width)
            density = counts / max(hist.sampled[record], 1) / np.diff(edges)
            ax.stairs(
                np.where(density > 0, density, np.nan), edges, color=color, lw=1.6, label=label, gid=label
            )
        ax.set_yscale("log")
        if xlim is not None:
            ax.set_xlim(-xlim, xlim)
        ax.set_xlabel("weight value")
        ax.set_ylabel("density (share of the weights per unit of value)")
        legend(ax, owns=owns)
    return fig


def plot_near_zero(runs, /, *, param: str, delta: float = 0.01, labels=None, colors=None, ax=None):
    """The share of ``param``'s weights with |w| < ``delta`` over training, per run."""
    runs = list(runs)
    labels = list(labels) if labels is not None else [r.path for r in runs]
    colors = list(colors) if colors is not None else [series_color(i, len(runs)) for i in range(len(runs))]
    with single(ax, figsize=(6.5, 4.2)) as (fig, ax, owns):
        for run, label, color in zip(runs, labels, colors):
            steps, fraction = near_zero_fraction(run, param, delta)
            ax.plot(steps, fraction, color=color, lw=1.8, marker="o", ms=3, label=label, gid=label)
        ax.set_ylim(0, 1)
        ax.set_xlabel("iterations (optimizer steps)")
        ax.set_ylabel(f"share of weights with |w| < {delta:g}")
        legend(ax, owns=owns)
    return fig
