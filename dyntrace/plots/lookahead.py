"""Lookahead's slow and fast weights: the two paths on a 2-D function, one coordinate over the
steps, and what the 'steps' probe sees at the sync steps.

A 2-D Lookahead run logs, at steps 0 … T, the scalars ``x``, ``y`` (the point after the step:
the fast weights θ, equal to φ after a sync), ``presync_x``, ``presync_y`` (θ after the inner
step, before any sync) and ``slow_x``, ``slow_y`` (the slow weights φ), and the function's
catalog name in its config. Sync steps come from the ``synced`` scalar the 'steps' probe logs
for an optimizer with a ``synced`` attribute, or else from the config's ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, single, step_label
from dyntrace.plots.optimizer_paths import draw_contour, path_function, path_xy
from dyntrace.plots.theme import NEUTRAL, series_color

__all__ = [
    "LookaheadPath",
    "lookahead_path",
    "sync_steps",
    "plot_lookahead_path",
    "plot_slow_fast",
    "plot_sync_geometry",
]

_HOW = "log x, y, presync_x, presync_y, slow_x, slow_y every step (see dyntrace.gallery.lookahead)"


@dataclass(frozen=True)
class LookaheadPath:
    """A 2-D Lookahead run as arrays over steps 0 … T (all (T+1,)).

    ``fast``: (T+1, 2) the point after each step; ``presync``: θ after the inner step, before
    the sync (equal to ``fast`` except at sync steps); ``slow``: φ after each step;
    ``synced``: bool, True at the steps that ended with a sync.
    """

    steps: np.ndarray
    fast: np.ndarray
    presync: np.ndarray
    slow: np.ndarray
    synced: np.ndarray


def sync_steps(run) -> np.ndarray:
    """The steps that ended with a Lookahead sync: where the 'steps' probe's ``synced`` scalar
    is 1, else every ``k``-th step from the run's config. Raises MissingDataError if neither."""
    if "synced" in run.scalar_names:
        steps, synced = run.scalar("synced")
        return steps[synced > 0.5]
    k = run.config.get("k") or (run.config.get("optimizer_options") or {}).get("k")
    if not k:
        raise missing(
            run, "scalar 'synced' or k in the config", "record the 'steps' probe with a Lookahead optimizer"
        )
    return np.arange(int(k), run.n_steps + 1, int(k))


def lookahead_path(run) -> LookaheadPath:
    """The fast, pre-sync and slow points of a 2-D Lookahead run (see the module docstring)."""
    steps, x, y = path_xy(run)
    for prefix in ("presync_", "slow_"):
        s, _, _ = path_xy(run, prefix)
        if not np.array_equal(s, steps):
            raise missing(run, f"{prefix}x/{prefix}y at the steps of x/y", _HOW)
    _, px, py = path_xy(run, "presync_")
    _, sx, sy = path_xy(run, "slow_")
    synced = np.isin(steps, sync_steps(run))
    return LookaheadPath(
        steps=steps,
        fast=np.column_stack([x, y]),
        presync=np.column_stack([px, py]),
        slow=np.column_stack([sx, sy]),
        synced=synced,
    )


def plot_lookahead_path(
    run,
    /,
    *,
    ax=None,
    function=None,
    reference=None,
    reference_label="inner optimizer alone",
    xlim=None,
    ylim=None,
):
    """Lookahead on a 2-D function: the fast weights' k inner steps from each slow point
    (thin line with dots), the pull-back at every sync (dashed, from θ to the new φ), and the
    slow weights φ (thick line, a diamond per sync). ``reference``: a path run of the inner
    optimizer alone, drawn in grey underneath.
    """
    path = lookahead_path(run)
    function = path_function(run, function)
    fast_color, slow_color = series_color(0), series_color(3)
    with single(ax, figsize=(7.5, 4.2)) as (fig, ax, owns):
        draw_contour(ax, function, xlim=xlim, ylim=ylim)
        if reference is not None:
            _, rx, ry = path_xy(reference)
            ax.plot(
                rx,
                ry,
                color=NEUTRAL,
                lw=1.0,
                alpha=0.8,
                marker=".",
                ms=3,
                label=reference_label,
                gid="reference",
            )
        # fast weights: from the point after step s−1 to the pre-sync point of step s
        segments = np.stack([path.fast[:-1], path.presync[1:]], axis=1)  # (T, 2, 2)
        for i, (a, b) in enumerate(segments):
            ax.plot(
                *zip(a, b),
                color=fast_color,
                lw=1.0,
                alpha=0.9,
                label="fast weights θ (inner steps)" if i == 0 else None,
                gid="fast",
            )
        ax.plot(*path.presync[1:].T, ls="none", marker="o", ms=2.5, color=fast_color, gid="fast:points")
        sync = np.flatnonzero(path.synced)
        for j, i in enumerate(sync):
            ax.annotate(
                "",
                xy=path.fast[i],
                xytext=path.presync[i],
                arrowprops=dict(arrowstyle="->", color=slow_color, lw=1.0, ls="--", shrinkA=0, shrinkB=2),
            )
        if sync.size:
            ax.plot([], [], color=slow_color, lw=1.0, ls="--", label="sync: θ pulled back to φ + α(θ − φ)")
        slow_points = np.vstack([path.slow[:1], path.slow[sync]])
        ax.plot(
            *slow_points.T,
            color=slow_color,
            lw=2.4,
            marker="D",
            ms=6,
            mec="k",
            mew=0.6,
            label="slow weights φ (at syncs)",
            gid="slow",
        )
        ax.plot(*path.fast[0], marker="o", ms=8, mfc="white", mec="k", ls="none", gid="start")
        ax.set_title(
            "Lookahead: fast and slow weights" + (f" on f(x, y) = {function.formula}" if owns else "")
        )
        legend(ax, owns=owns)
    return fig


def plot_slow_fast(run, /, *, ax=None, coordinate: str = "y"):
    """One coordinate of a 2-D Lookahead run over the steps: the fast weights before each sync
    (thin, dots), the slow weights φ (thick step line: constant between syncs) and the sync
    steps (faint vertical lines)."""
    path = lookahead_path(run)
    j = {"x": 0, "y": 1}.get(coordinate)
    if j is None:
        raise ValueError(f"coordinate: expected 'x' or 'y', got {coordinate!r}")
    with single(ax) as (fig, ax, owns):
        for s in path.steps[path.synced]:
            ax.axvline(s, color=NEUTRAL, alpha=0.5, lw=0.8, gid="synced")
        ax.plot(
            path.steps,
            path.presync[:, j],
            color=series_color(0),
            lw=1.0,
            marker="o",
            ms=3,
            label=f"fast {coordinate} (before the sync)",
            gid="fast",
        )
        ax.plot(
            path.steps,
            path.slow[:, j],
            color=series_color(3),
            lw=2.4,
            drawstyle="steps-post",
            label=f"slow {coordinate} (φ)",
            gid="slow",
        )
        ax.plot([], [], color=NEUTRAL, alpha=0.5, lw=0.8, label="sync steps ('steps' probe)")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel(coordinate)
        step_label(ax)
        ax.set_title(f"{coordinate} over the steps: φ moves only at syncs")
        legend(ax, owns=owns)
    return fig


def plot_sync_geometry(run, /, *, ax=None, field: str = "cos", first: int | None = None):
    """A per-parameter field of the 'steps' probe (default ``cos`` = cos(Δθ, −g)) at every
    record, one dot per parameter tensor, the records of sync steps in a second colour.
    Δθ is measured around the whole optimizer step, so a sync's pull-back is in it.
    ``first``: only the first steps. Raises MissingDataError without 'steps' records."""
    if "steps" not in run.probes or len(run.steps("steps")) == 0:
        raise missing(run, "'steps' probe records", "record it with Recorder(..., probes=[..., 'steps'])")
    steps, values = run.field("steps", field)
    values = np.asarray(values, dtype=np.float64)
    synced = np.isin(steps, sync_steps(run))
    if first is not None:
        keep = steps <= first
        steps, values, synced = steps[keep], values[keep], synced[keep]
    n = values.shape[1]
    with single(ax) as (fig, ax, owns):
        for mask, color, label in (
            (~synced, series_color(0), "inner steps"),
            (synced, series_color(3), "sync steps"),
        ):
            xs = np.repeat(steps[mask], n)
            ax.plot(
                xs,
                values[mask].ravel(),
                ls="none",
                marker="o",
                ms=3.5,
                alpha=0.7,
                color=color,
                label=f"{label} ({n} tensors each)",
                gid=label,
            )
        ax.set_ylabel({"cos": "cos(Δθ, −g)"}.get(field, field))
        step_label(ax)
        ax.set_title(f"'steps' probe: {field} per parameter tensor, sync steps apart")
        legend(ax, owns=owns)
    return fig
