"""Time × value heatmaps of recorded histograms, one panel per tensor, one log colour scale."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm

from dyntrace.plots.data import forward_order, hist_windows, pick_evenly
from dyntrace.plots.layout import panels
from dyntrace.plots.theme import HEAT_CMAP

__all__ = ["hist_heatmaps", "select"]


def select(run, probe: str, names, max_n: int) -> list[str]:
    """The tensors to draw: ``names`` as given (names, or indices in forward order), else
    ≤ ``max_n`` evenly spread in forward order (:func:`~dyntrace.plots.data.forward_order`)."""
    available = forward_order(run, probe)
    if names is None:
        return [available[i] for i in pick_evenly(len(available), max_n)]
    if isinstance(names, (str, int)):
        names = [names]
    return [available[n] if isinstance(n, (int, np.integer)) else n for n in names]


def _bin_range(counts):
    """Slice of the bins that ever hold a value, one empty bin of margin each side."""
    used = np.flatnonzero(np.nansum(counts, axis=0) > 0)
    if used.size == 0:
        return slice(0, counts.shape[1])
    return slice(max(0, used[0] - 1), min(counts.shape[1], used[-1] + 2))


def hist_heatmaps(
    run,
    probe: str,
    names,
    *,
    ax,
    title: str,
    ylabel: str,
    max_windows: int,
    ncols: int = 4,
    panel_titles=None,
):
    """Draw one time × value heatmap per tensor; returns the figure.

    Colour: the fraction of the record's binned values in each bin (windows of several
    records pool their counts), on one log scale for all panels; empty bins are left blank.
    Magnitude histograms (stored as log10 |x|) get a log y axis in the tensor's units.
    """
    windows = hist_windows(run, probe, names, max_windows=max_windows)
    density = windows.density()
    positive = density[np.isfinite(density) & (density > 0)]
    norm = LogNorm(vmin=max(positive.min(), 1e-6), vmax=positive.max()) if positive.size else LogNorm(1e-4, 1)
    log_scale = windows.scale.startswith("log10")
    x = np.append(windows.start, windows.stop[-1])
    with panels(ax, len(names), ncols=ncols, sharex=True) as (fig, axes, owns):
        mesh = None
        for j, (name, a) in enumerate(zip(names, axes)):
            keep = _bin_range(windows.counts[:, j, :])
            edges = windows.edges[j][keep.start : keep.stop + 1]
            data = np.ma.masked_invalid(np.where(density[:, j, keep] > 0, density[:, j, keep], np.nan)).T
            y = 10.0**edges if log_scale else edges
            if np.isfinite(y).all() and np.isfinite(x).all():
                drawn = a.pcolormesh(x, y, data, norm=norm, cmap=HEAT_CMAP, shading="flat", rasterized=True)
                drawn.set_gid(name)
                mesh = drawn
                if log_scale:
                    a.set_yscale("log")
            else:  # no range: the tensor was never seen (no forward pass on any record step)
                a.text(
                    0.5,
                    0.5,
                    "no values recorded",
                    ha="center",
                    va="center",
                    fontsize="small",
                    transform=a.transAxes,
                )
                a.set_yticks([])
            a.minorticks_off()  # invisible in this style, and hundreds of them a panel cost seconds
            a.grid(False)
            a.set_title(panel_titles[j] if panel_titles else name, fontsize="medium")
            if owns:
                a.set_ylabel(ylabel if j % ncols == 0 else "")
                a.set_xlabel("step" if j >= len(names) - ncols else "")
            else:
                a.set_ylabel(ylabel, fontsize="small")
            a.tick_params(labelsize="small")
        if mesh is not None:
            label = "fraction of values per bin"
            if windows.records > 1:
                label += f" ({windows.records} records per column)"
            bar = fig.colorbar(mesh, ax=axes, label=label, shrink=0.9, pad=0.01)
            bar.ax.minorticks_off()
        if owns:
            fig.suptitle(title)
    return fig
