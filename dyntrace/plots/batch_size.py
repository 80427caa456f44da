"""A result by batch size: one line per method (e.g. per normalisation), one point per run.

Each run's batch size is read from its config (``batch_size``, as :func:`dyntrace.train`
stores it) and its result is the last value of a logged scalar (default ``val_accuracy``).
"""

from __future__ import annotations

import numpy as np

from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, single
from dyntrace.plots.theme import series_color

__all__ = ["final_value", "plot_by_batch_size"]


def final_value(run, scalar: str = "val_accuracy") -> float:
    """The last logged value of ``scalar``."""
    if scalar not in run.scalar_names:
        raise missing(run, f"scalar {scalar!r}", "train with dyntrace.train, which logs it every epoch")
    return float(run.scalar(scalar)[1][-1])


def plot_by_batch_size(
    groups: dict,
    /,
    *,
    scalar: str = "val_accuracy",
    colors=None,
    styles=None,
    ax=None,
    ylabel: str | None = None,
):
    """``groups`` maps a line's label to its runs; each line joins the runs' final ``scalar``
    in order of batch size (log₂ axis, ticks at the batch sizes). ``colors``/``styles``: one per
    line (default: the palette, solid)."""
    labels = list(groups)
    colors = (
        list(colors) if colors is not None else [series_color(i, len(labels)) for i in range(len(labels))]
    )
    styles = list(styles) if styles is not None else ["-"] * len(labels)
    with single(ax, figsize=(6.5, 4.4)) as (fig, ax, owns):
        sizes = set()
        for label, color, style in zip(labels, colors, styles):
            points = sorted((int(r.config["batch_size"]), final_value(r, scalar)) for r in groups[label])
            x, y = np.array(points).T
            sizes.update(int(v) for v in x)
            ax.plot(x, y, color=color, ls=style, lw=2, marker="o", ms=6, label=label, gid=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(sizes), [str(s) for s in sorted(sizes)])
        ax.set_xlabel("batch size (examples per step)")
        ax.set_ylabel(ylabel or scalar)
        legend(ax, owns=owns)
    return fig
