"""Where the weights of one parameter lie, from the weights probe's histograms: the distribution at
one record for several runs, and the share of weights near zero over training.

An L1 penalty pulls every weight towards 0 with the same force whatever its size, so the weights
that do not earn their keep end at 0 and the histogram gets a spike there; an L2 penalty pulls in
proportion to the weight, so weights shrink but rarely reach 0 (the histogram stays a bell). The
histogram's resolution is the probe's: choose ``bins`` so that the central bins are as narrow as
the "near zero" one wants to resolve (``WeightsProbe(bins=400)`` over ±2: 0.01 a bin).
"""

from __future__ import annotations

import numpy as np

from dyntrace.plots._data import missing
from dyntrace.plots._layout import legend, single
from dyntrace.plots.theme import series_color

__all__ = ["near_zero_fraction", "plot_weight_distribution", "plot_near_zero"]

_HOW = "record it with the 'weights' probe"


def _hist(run, param):
    if "weights" not in run.probes:
        raise missing(run, "'weights' probe data", _HOW)
    return run.hist("weights", param)


def near_zero_fraction(run, param: str):
    """(steps (R,), fraction (R,), δ): the share of ``param``'s binned weights within ±δ, δ the
    width of one histogram bin (the two bins either side of 0; the probe's bins are symmetric)."""
    hist = _hist(run, param)
    edges = hist.edges
    centre = int(np.argmin(np.abs(edges)))
    if not np.isclose(edges[centre], 0.0, atol=1e-12 * (edges[-1] - edges[0])):
        raise ValueError(f"{param}: 0 is not a bin edge of the weights histogram (odd number of bins)")
    delta = float(edges[centre + 1] - edges[centre])
    near = hist.counts[:, centre - 1] + hist.counts[:, centre]
    return hist.steps, near / np.maximum(hist.sampled, 1), delta


def plot_weight_distribution(runs, /, *, param: str, labels=None, colors=None, record: int = -1, ax=None,
                             xlim: float | None = None):
    """The histogram of ``param``'s weights at one record (default: the last) of each run, as a
    share of the weights per bin (log scale, so the tails and the spike at 0 both show).
    ``xlim``: half-width of the value axis (default: the histogram's range)."""
    runs = list(runs)
    labels = list(labels) if labels is not None else [r.path for r in runs]
    colors = list(colors) if colors is not None else [series_color(i, len(runs)) for i in range(len(runs))]
    with single(ax, figsize=(6.5, 4.2)) as (fig, ax, owns):
        for run, label, color in zip(runs, labels, colors):
            hist = _hist(run, param)
            share = hist.counts[record] / max(hist.sampled[record], 1)
            ax.stairs(np.where(share > 0, share, np.nan), hist.edges, color=color, lw=1.6, label=label, gid=label)
        ax.set_yscale("log")
        if xlim is not None:
            ax.set_xlim(-xlim, xlim)
        ax.set_xlabel("weight value")
        ax.set_ylabel("share of the weights per bin")
        legend(ax, owns=owns)
    return fig


def plot_near_zero(runs, /, *, param: str, labels=None, colors=None, ax=None):
    """The share of ``param``'s weights within one histogram bin of 0 over training, per run."""
    runs = list(runs)
    labels = list(labels) if labels is not None else [r.path for r in runs]
    colors = list(colors) if colors is not None else [series_color(i, len(runs)) for i in range(len(runs))]
    with single(ax, figsize=(6.5, 4.2)) as (fig, ax, owns):
        delta = None
        for run, label, color in zip(runs, labels, colors):
            steps, fraction, delta = near_zero_fraction(run, param)
            ax.plot(steps, fraction, color=color, lw=1.8, marker="o", ms=3, label=label, gid=label)
        ax.set_ylim(0, 1)
        ax.set_xlabel("iterations (optimizer steps)")
        ax.set_ylabel(f"share of weights with |w| < {delta:g}")
        legend(ax, owns=owns)
    return fig
