"""Which input columns the first layer's gradient comes from: per-column shares of its norm."""

from __future__ import annotations

import re

import numpy as np

from dyntrace.plots.compare import run_labels
from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, single
from dyntrace.plots.theme import series_color

__all__ = ["plot_column_shares", "column_shares"]


def column_shares(run, prefix: str = "grad_share/col"):
    """(columns (C,), median share (C,)) of the scalars ``{prefix}0``, ``{prefix}1``, …: the
    median over the logged steps of each column's share of a gradient's squared norm."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    found = sorted((int(m.group(1)), name) for name in run.scalar_names if (m := pattern.match(name)))
    if not found:
        raise missing(
            run,
            f"scalars {prefix}0, {prefix}1, …",
            "log each column's share of the gradient with rec.log(...)",
        )
    columns = np.array([c for c, _ in found])
    shares = np.array([np.nanmedian(run.scalar(name)[1]) for _, name in found])
    return columns, shares


def plot_column_shares(runs, /, *, labels=None, ax=None, prefix: str = "grad_share/col", floor: float = 1e-8):
    """Grouped bars: for each run, each input column's median share of the first layer's squared
    gradient norm ‖∂L/∂W[:, j]‖² / ‖∂L/∂W‖² (scalars ``{prefix}j``). Log y axis (shares below
    ``floor`` are drawn at it); the even share 1/C as a dashed line.
    """
    labels = run_labels(runs, labels)
    data = [column_shares(run, prefix) for run in runs]
    with single(ax) as (fig, ax, owns):
        width = 0.8 / len(runs)
        for i, ((columns, shares), label) in enumerate(zip(data, labels)):
            ax.bar(
                columns + (i - (len(runs) - 1) / 2) * width,
                np.maximum(shares, floor),
                width=width,
                color=series_color(i),
                label=label,
                gid=label,
            )
        n = max(len(c) for c, _ in data)
        ax.axhline(1.0 / n, color="gray", ls="--", lw=1, label=f"even share 1/{n}")
        ax.set_yscale("log")
        ax.set_ylim(floor, 2)
        ax.set_xticks(np.arange(n))
        ax.set_xlabel("input column")
        ax.set_ylabel("share of ‖∂L/∂W₁‖² (median over steps)")
        ax.set_title("Which input columns the first layer's gradient comes from")
        legend(ax, owns=owns)
    return fig
