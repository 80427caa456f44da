"""Plateaus of several loss curves and where each run leaves them."""

from __future__ import annotations

import numpy as np

from dyntrace.analysis import decimate, find_plateaus, first_escape
from dyntrace.plots.compare import run_labels
from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, log_if_wide, single, step_label
from dyntrace.plots.theme import series_color

__all__ = ["plot_plateau_escape", "plot_rate_grid"]


def plot_plateau_escape(
    runs,
    /,
    *,
    labels=None,
    colors=None,
    ax=None,
    window=None,
    threshold: float = 0.01,
    min_length=None,
    escape_drop: float = 0.1,
    min_level: float = 0.0,
    start_escape: bool = False,
    logy=None,
    ylabel: str = "loss",
    max_points: int = 3000,
):
    """Loss of each run (one colour per run) with its plateaus found by
    :func:`dyntrace.analysis.find_plateaus` (``window``, ``threshold``, ``min_length``,
    ``escape_drop`` passed on) drawn as a thick translucent bar at the plateau's level, and each
    escape from a plateau marked ×. Plateaus never left (the converged end) are not drawn,
    nor those below ``min_level`` × the run's first loss (wiggles near a minimum).
    ``start_escape``: also a dotted vertical line in the run's colour at :func:`first_escape`
    (the step the loss is first ``escape_drop`` below its start), whether or not a plateau was
    detected there. ``logy``: None for a log y axis when the losses span decades, else True/False.
    ``colors``: one per run (default: the palette in order); later runs are drawn thinner on top
    of earlier ones, so a run that follows another stays visible.
    """
    labels = run_labels(runs, labels)
    with single(ax) as (fig, ax, owns):
        values = []
        for i, (run, label) in enumerate(zip(runs, labels)):
            if "loss" not in run.scalar_names:
                raise missing(run, "scalar 'loss'", "log it every step with rec.log(loss=...)")
            steps, loss = run.scalar("loss")
            color = colors[i] if colors is not None else series_color(i)
            s, v = decimate(steps, loss, max_points)
            ax.plot(s, v, color=color, lw=max(1.3, 3.2 - 0.9 * i), label=label, gid=label, zorder=2 + i)
            values.append(loss)
            finite = np.isfinite(loss)
            found = find_plateaus(
                steps[finite],
                loss[finite],
                window=window,
                threshold=threshold,
                min_length=min_length,
                escape_drop=escape_drop,
            )
            floor = min_level * abs(loss[finite][0]) if finite.any() else 0.0
            for p in found:
                if p.escape is None or p.level < floor:
                    continue
                ax.plot(
                    [p.start, p.end],
                    [p.level, p.level],
                    color=color,
                    lw=7,
                    alpha=0.3,
                    solid_capstyle="butt",
                    gid=f"{label}:plateau",
                )
                at = np.searchsorted(steps, p.escape)
                ax.plot(
                    p.escape,
                    loss[min(at, len(loss) - 1)],
                    marker="X",
                    ms=9,
                    color=color,
                    mec="k",
                    ls="none",
                    gid=f"{label}:escape",
                )
            if start_escape:
                at = first_escape(steps, loss, drop=escape_drop)
                if at is not None:
                    ax.axvline(at, color=color, ls=":", lw=1.4, gid=f"{label}:start_escape")
        if logy is None:
            log_if_wide(ax, np.concatenate(values))
        elif logy:
            ax.set_yscale("log")
        # legend entries for the marks, in neutral colours
        ax.plot([], [], color="gray", lw=7, alpha=0.3, label="plateau (detected)")
        ax.plot([], [], marker="X", ms=9, color="gray", mec="k", ls="none", label="escape")
        if start_escape:
            ax.plot([], [], color="gray", ls=":", lw=1.4, label=f"first {escape_drop:.0%} below the start")
        ax.set_ylabel(ylabel)
        step_label(ax)
        ax.set_title("Plateaus and their escapes")
        legend(ax, owns=owns)
    return fig


def plot_rate_grid(
    results: dict, /, *, best=None, colors=None, labels=None, converged: float = 1e-3, ax=None
):
    """Updates each learning rate of a grid needs to converge, one line per optimizer, log x:
    ``results`` = {optimizer: [(lr, updates or None)]} (None: never within the run), ``best`` =
    {optimizer: lr} circled. Rates that never converge are drawn as × above the curves."""
    with single(ax) as (fig, ax, owns):
        done_all = [n for rows in results.values() for _, n in rows if n is not None]
        ceiling = 1.25 * max(done_all) if done_all else 1.0
        for i, (opt, rows) in enumerate(results.items()):
            color = (colors or {}).get(opt, series_color(i))
            name = (labels or {}).get(opt, opt)
            lr = np.array([r for r, _ in rows], dtype=float)
            n = np.array([np.nan if v is None else v for _, v in rows], dtype=float)
            ax.plot(lr, n, color=color, marker="o", ms=5, lw=1.6, label=name, gid=opt)
            never = np.isnan(n)
            ax.plot(
                lr[never],
                np.full(never.sum(), ceiling),
                ls="none",
                marker="x",
                ms=8,
                mew=2,
                color=color,
                gid=f"{opt}:never",
            )
            if best and opt in best:
                at = lr == best[opt]
                ax.plot(
                    lr[at],
                    n[at],
                    ls="none",
                    marker="o",
                    ms=14,
                    mfc="none",
                    mec=color,
                    mew=2,
                    gid=f"{opt}:best",
                )
        ax.axhline(ceiling, color="gray", lw=0.6, ls=":")
        ax.annotate(
            "× never",
            (0.01, ceiling),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            fontsize="small",
            color="dimgray",
        )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("learning rate (log₂ scale)")
        ax.set_ylabel(f"updates until f < {converged:g} for good")
        ax.set_title("Each optimizer's best rate (circled)")
        legend(ax, owns=owns)
    return fig
