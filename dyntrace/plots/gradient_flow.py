"""Gradient flow: per-layer gradient norm against depth (one line per record step, coloured
by time), and the ratio of the first layer's norm to the last one's over training."""

from __future__ import annotations

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from dyntrace.analysis import Thresholds, decimate, gradient_flow, gradient_flow_ratio
from dyntrace.plots.data import missing, pick_evenly
from dyntrace.plots.layout import (
    log_if_wide,
    panels,
    root_figure,
    short_names,
    single,
    step_label,
)
from dyntrace.plots.theme import NEUTRAL, PALETTE, TIME_CMAP

__all__ = ["plot_gradient_flow", "plot_gradient_norm_by_depth", "plot_gradient_ratio"]


def _flow(run):
    steps, names, norms = gradient_flow(run)
    if len(steps) == 0:
        raise missing(run, "'gradients' records yet", "the 'gradients' probe writes one row per record step")
    return steps, names, norms


def _draw_depth(ax, steps, names, norms, *, max_lines, tick_labels=None):
    fig = root_figure(ax)
    depth = np.arange(1, len(names) + 1)
    cmap = ScalarMappable(norm=Normalize(steps[0], max(steps[-1], steps[0] + 1)), cmap=TIME_CMAP)
    for r in pick_evenly(len(steps), max_lines):
        ax.plot(
            depth,
            norms[r],
            color=cmap.to_rgba(steps[r]),
            lw=1.2,
            alpha=0.9,
            marker="o" if len(names) <= 20 else None,
            ms=3,
            gid=f"step {int(steps[r])}",
        )
    log_if_wide(ax, norms, decades=0.5)
    if tick_labels is not None:
        ax.set_xticks(depth, list(tick_labels), fontsize="small")
        ax.set_xlabel("layer, input side → output side")
    elif len(names) <= 12:
        short = short_names(names, max_chars=18)
        long = max(len(n) for n in short) > 4
        ax.set_xticks(
            depth,
            short,
            rotation=30 if long else 0,
            ha="right" if long else "center",
            rotation_mode="anchor",
            fontsize="small",
        )
        ax.set_xlabel("layer, input side → output side (module name)")
    else:
        ax.set_xlabel("layer, input side → output side (1 = first)")
    ax.set_ylabel("gradient norm ‖g‖ of the layer")
    ax.set_title("Gradient norm by depth")
    fig.colorbar(cmap, ax=ax, label="step", pad=0.02)


def _draw_ratio(ax, steps, names, norms, *, max_points):
    ratio = gradient_flow_ratio(norms)
    s, v = decimate(steps, ratio, max_points)
    ax.plot(s, v, color=PALETTE[0], lw=1.6, gid="ratio")
    ax.axhline(1.0, color=NEUTRAL, lw=1.0)
    finite = v[np.isfinite(v) & (v > 0)]
    if finite.size:
        ax.set_yscale("log")
        th = Thresholds()
        lo, hi = finite.min(), finite.max()
        for value, what in ((th.vanishing_ratio, "vanishing"), (th.exploding_ratio, "exploding")):
            if lo / 10 <= value <= hi * 10:  # only thresholds near the data; they would squash it
                ax.axhline(value, color=PALETTE[3], ls="--", lw=1.0)
                ax.annotate(
                    f"{what} ({value:g})",
                    (0.01, value),
                    xycoords=("axes fraction", "data"),
                    fontsize="x-small",
                    color=PALETTE[3],
                    va="bottom",
                )
    first, last = short_names([names[0], names[-1]], max_chars=20) if len(names) > 1 else (names[0], names[0])
    ax.set_ylabel("‖g‖ first layer / ‖g‖ last layer")
    step_label(ax)
    ax.set_title(f"First / last layer gradient norm\n{first} / {last}", fontsize="medium")


def plot_gradient_norm_by_depth(run, /, *, ax=None, max_lines: int = 40, tick_labels=None):
    """Gradient norm of each layer (parameters grouped by module, √Σ‖g_p‖²) against depth, one
    line per record step (at most ``max_lines``, evenly spread) coloured by step. Lines falling
    towards the input side are vanishing gradients. ``tick_labels``: one x tick label per layer
    (default: the module names while there are at most 12). Raises MissingDataError without
    the 'gradients' probe."""
    steps, names, norms = _flow(run)
    with single(ax) as (fig, ax, owns):
        _draw_depth(ax, steps, names, norms, max_lines=max_lines, tick_labels=tick_labels)
    return fig


def plot_gradient_ratio(run, /, *, ax=None, max_points: int = 2000):
    """Ratio of the first layer's gradient norm to the last layer's over training (log
    scale; ≪ 1: vanishing, ≫ 1: exploding; the thresholds of :func:`dyntrace.analysis.diagnose`
    are drawn when near the data). Raises MissingDataError without the 'gradients' probe."""
    steps, names, norms = _flow(run)
    with single(ax) as (fig, ax, owns):
        _draw_ratio(ax, steps, names, norms, max_points=max_points)
    return fig


def plot_gradient_flow(run, /, *, ax=None, max_lines: int = 40, max_points: int = 2000):
    """Gradient flow in two panels: norm by depth over time, and the first/last ratio.

    ``ax``: None, an Axes (split in two) or two Axes. Raises MissingDataError without the
    'gradients' probe."""
    steps, names, norms = _flow(run)
    with panels(ax, 2, ncols=2, panel_size=(5.2, 4.0)) as (fig, (left, right), owns):
        _draw_depth(left, steps, names, norms, max_lines=max_lines)
        _draw_ratio(right, steps, names, norms, max_points=max_points)
        if owns:
            fig.suptitle("Gradient flow")
    return fig
