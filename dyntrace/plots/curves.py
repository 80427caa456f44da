"""One logged scalar of several runs on one axes, each run in its own fixed colour.

The gallery's comparisons (optimizers, initialisations, learning rates, regularisers) draw
the same thing: a scalar per step, faint, with a smoothed line over it, or a per-epoch scalar
with markers; one colour per method, chosen by the caller (usually
:func:`dyntrace.plots.theme.method_color`), and labels written for a reader, not the code.
"""

from __future__ import annotations

import numpy as np

from dyntrace.analysis import decimate, ewma, kaiser_smooth
from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, log_if_wide, single
from dyntrace.plots.theme import series_color

__all__ = ["plot_curves", "smoothed", "SMOOTHERS"]

#: How a per-step series is smoothed: the bias-corrected EWMA, the book's 11-tap Kaiser window
#: (Saito ch. 6), or not at all.
SMOOTHERS = ("ewma", "kaiser", "none")


def smoothed(values, smooth: str = "ewma", beta: float = 0.9):
    """``values`` (N,) smoothed by ``smooth`` (see :data:`SMOOTHERS`); ``beta`` is the EWMA factor."""
    if smooth not in SMOOTHERS:
        raise ValueError(f"Invalid smooth: {smooth!r} (expected one of {', '.join(SMOOTHERS)})")
    values = np.asarray(values, dtype=np.float64)
    if smooth == "ewma":
        return ewma(values, beta, bias_correction=True)
    if smooth == "kaiser":
        return kaiser_smooth(values)
    return values


def plot_curves(
    runs,
    /,
    *,
    scalar: str = "loss",
    labels=None,
    colors=None,
    styles=None,
    ax=None,
    # how the values are drawn
    smooth: str = "ewma",
    beta: float = 0.9,
    raw: bool = True,
    markers: bool | None = None,
    # axes
    ylabel: str | None = None,
    xlabel: str = "iterations (optimizer steps)",
    logy: bool | None = None,
    max_points: int = 3000,
):
    """The scalar ``scalar`` of each run over its steps, one colour per run.

    Each series is drawn faint as logged (``raw``) with its smoothed version solid over it;
    a series logged once per epoch (``markers`` None: fewer than 80 points) is drawn with
    markers and no smoothing. Non-finite values (a diverged run) are left out of the line.

    Args:
        runs: open runs.
        scalar: the logged scalar to draw (default: "loss").
        labels: one legend label per run (default: the files' names).
        colors: one colour per run (default: :func:`~dyntrace.plots.theme.series_color`).
        styles: one matplotlib line style per run (default: solid).
        smooth: "ewma" (bias-corrected, factor ``beta``), "kaiser" (the book's 11-tap window)
            or "none" (default: "ewma").
        raw: also draw the values as logged, faint (default: True).
        logy: log y axis; None chooses it when the positive values span 1.5 decades.

    Raises MissingDataError naming the first run that did not log ``scalar``.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("runs: give at least one run")
    labels = [str(x) for x in labels] if labels is not None else [r.path.rsplit("/", 1)[-1] for r in runs]
    colors = list(colors) if colors is not None else [series_color(i, len(runs)) for i in range(len(runs))]
    styles = list(styles) if styles is not None else ["-"] * len(runs)
    for name, values in (("labels", labels), ("colors", colors), ("styles", styles)):
        if len(values) != len(runs):
            raise ValueError(f"{name}: {len(values)} given for {len(runs)} runs")
    with single(ax, figsize=(7.5, 4.4)) as (fig, ax, owns):
        drawn = []
        for run, label, color, style in zip(runs, labels, colors, styles):
            if scalar not in run.scalar_names:
                raise missing(run, f"scalar {scalar!r}", f"log it with rec.log({scalar}=...)")
            steps, values = run.scalar(scalar)
            finite = np.isfinite(values)
            steps, values = steps[finite], values[finite]
            per_epoch = len(values) < 80 if markers is None else markers
            if per_epoch:
                ax.plot(
                    steps, values, color=color, ls=style, lw=1.6, marker="o", ms=3, label=label, gid=label
                )
                drawn.append(values)
                continue
            if raw:
                s, v = decimate(steps, values, max_points)
                ax.plot(s, v, color=color, alpha=0.18, lw=0.6, gid=f"{label}:raw")
            line = smoothed(values, smooth, beta)
            s, v = decimate(steps, line, max_points)
            ax.plot(s, v, color=color, ls=style, lw=2.0, label=label, gid=label)
            drawn.append(line)
        if logy is None:
            log_if_wide(ax, np.concatenate(drawn) if drawn else np.zeros(0))
        elif logy:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel or scalar)
        legend(ax, owns=owns)
    return fig
