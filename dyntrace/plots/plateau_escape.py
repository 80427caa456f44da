"""Plateaus of several loss curves and where each run leaves them."""

from __future__ import annotations

import numpy as np

from dyntrace.analysis import decimate, find_plateaus
from dyntrace.plots._data import missing
from dyntrace.plots._layout import legend, log_if_wide, single, step_label
from dyntrace.plots.compare import run_labels
from dyntrace.plots.theme import series_color

__all__ = ["plot_plateau_escape", "first_escape"]


def first_escape(steps, loss, *, drop: float = 0.1):
    """The first step at which the loss is ``drop`` (relative) below its first finite value,
    (N,), (N,) → int or None: the end of the initial plateau, by the same rule as the escape of
    :func:`dyntrace.analysis.find_plateaus` (level·(1 − drop)), but without needing a plateau
    to be detected first (a run that never stalls escapes early). Non-finite losses are skipped.
    """
    steps = np.asarray(steps)
    loss = np.asarray(loss, dtype=np.float64)
    if steps.shape != loss.shape or loss.ndim != 1:
        raise ValueError(f"steps and loss must be 1-D of the same shape, got {steps.shape} and {loss.shape}")
    if not 0 < drop < 1:
        raise ValueError(f"drop must be in (0, 1), got {drop!r}")
    finite = np.flatnonzero(np.isfinite(loss))
    if finite.size == 0:
        return None
    start = loss[finite[0]]
    below = finite[loss[finite] <= start - drop * abs(start)]
    return int(steps[below[0]]) if below.size else None


def plot_plateau_escape(runs, /, *, labels=None, ax=None, window=None, threshold: float = 0.01, min_length=None,
                        escape_drop: float = 0.1, min_level: float = 0.0, start_escape: bool = False, logy=None,
                        ylabel: str = "loss",
                        max_points: int = 3000):
    """Loss of each run (one colour per run) with its plateaus found by
    :func:`dyntrace.analysis.find_plateaus` (``window``, ``threshold``, ``min_length``,
    ``escape_drop`` passed on) drawn as a thick translucent bar at the plateau's level, and each
    escape from a plateau marked ×. Plateaus never left (the converged end) are not drawn,
    nor those below ``min_level`` × the run's first loss (wiggles near a minimum).
    ``start_escape``: also a dotted vertical line in the run's colour at :func:`first_escape`
    (the step the loss is first ``escape_drop`` below its start), whether or not a plateau was
    detected there. ``logy``: None for a log y axis when the losses span decades, else True/False.
    """
    labels = run_labels(runs, labels)
    with single(ax) as (fig, ax, owns):
        values = []
        for i, (run, label) in enumerate(zip(runs, labels)):
            if "loss" not in run.scalar_names:
                raise missing(run, "scalar 'loss'", "log it every step with rec.log(loss=...)")
            steps, loss = run.scalar("loss")
            color = series_color(i)
            s, v = decimate(steps, loss, max_points)
            ax.plot(s, v, color=color, lw=1.5, label=label, gid=label)
            values.append(loss)
            finite = np.isfinite(loss)
            found = find_plateaus(steps[finite], loss[finite], window=window, threshold=threshold,
                                  min_length=min_length, escape_drop=escape_drop)
            floor = min_level * abs(loss[finite][0]) if finite.any() else 0.0
            for p in found:
                if p.escape is None or p.level < floor:
                    continue
                ax.plot([p.start, p.end], [p.level, p.level], color=color, lw=7, alpha=0.3, solid_capstyle="butt",
                        gid=f"{label}:plateau")
                at = np.searchsorted(steps, p.escape)
                ax.plot(p.escape, loss[min(at, len(loss) - 1)], marker="X", ms=9, color=color, mec="k", ls="none",
                        gid=f"{label}:escape")
            if start_escape:
                at = first_escape(steps, loss, drop=escape_drop)
                if at is not None:
                    ax.axvline(at, color=color, ls=":", lw=1.4, gid=f"{label}:start_escape")
        if logy is None:
            log_if_wide(ax, np.concatenate(values))
        elif logy:
            ax.set_yscale("log")
        # legend entries for the marks, in neutral colours
        ax.plot([], [], color="gray", lw=7, alpha=0.3, label="plateau (find_plateaus)")
        ax.plot([], [], marker="X", ms=9, color="gray", mec="k", ls="none", label="escape")
        if start_escape:
            ax.plot([], [], color="gray", ls=":", lw=1.4, label=f"first {escape_drop:.0%} below the start")
        ax.set_ylabel(ylabel)
        step_label(ax)
        ax.set_title("Plateaus and their escapes")
        legend(ax, owns=owns)
    return fig
