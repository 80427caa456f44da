"""Leaving a saddle point: how far a 2-D path run has moved away along one coordinate, step by step.

Near a saddle the way down starts flat: along the escape direction the distance from the ridge
grows by a constant factor per step (a straight line on a log axis) from wherever the start
or the noise put it. At a minimum the same noise stays put. The runs are path runs
(:mod:`dyntrace.plots.optimizer_paths`: scalars ``x``, ``y``, ``loss`` every step).
"""

from __future__ import annotations

import numpy as np

from dyntrace.plots.layout import legend, single
from dyntrace.plots.optimizer_paths import path_xy
from dyntrace.plots.theme import NEUTRAL, series_color

__all__ = ["escape_step", "plot_escape"]


def escape_step(run, *, threshold: float = 0.5, coordinate: str = "y", center: float = 0.0):
    """The first step at which |coordinate − center| ≥ ``threshold``, or None if it never is."""
    steps, x, y = path_xy(run)
    values = {"x": x, "y": y}[coordinate]
    hit = np.flatnonzero(np.abs(values - center) >= threshold)
    return int(steps[hit[0]]) if hit.size else None


def plot_escape(
    runs,
    /,
    *,
    centers=None,
    labels=None,
    colors=None,
    styles=None,
    ax=None,
    threshold: float | None = 0.5,
    floor: float = 1e-7,
):
    """|y_t − c| of each path run over its steps, log y: the distance from the ridge y = c it
    started on or near (``centers``: one c per run, default 0). Exact zeros (a run on the
    ridge that never leaves it) are drawn at ``floor`` and say so in their label.
    ``threshold``: a horizontal line where a run counts as escaped.
    """
    runs = list(runs)
    centers = list(centers) if centers is not None else [0.0] * len(runs)
    labels = list(labels) if labels is not None else [r.path for r in runs]
    colors = list(colors) if colors is not None else [series_color(i, len(runs)) for i in range(len(runs))]
    styles = list(styles) if styles is not None else ["-"] * len(runs)
    with single(ax, figsize=(7, 4.4)) as (fig, ax, owns):
        for run, c, label, color, style in zip(runs, centers, labels, colors, styles):
            steps, _, y = path_xy(run)
            distance = np.abs(y - c)
            if np.all(distance == 0):
                label = f"{label} (exactly 0: drawn at {floor:g})"
            ax.plot(steps, np.maximum(distance, floor), color=color, ls=style, lw=1.8, label=label, gid=label)
        if threshold is not None:
            ax.axhline(threshold, color=NEUTRAL, lw=1, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("distance along y")
        legend(ax, owns=owns)
    return fig
