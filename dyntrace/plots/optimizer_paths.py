"""Optimizer paths on 2-D test functions, drawn from the runs :func:`dyntrace.paths.optimizer_path`
records: the point (x, y) after every update over the function's contour lines, and f(x, y)
over the steps.

A path run holds the scalars ``x``, ``y`` and ``loss`` at steps 0 … T (step t: the point after
t updates) and the function's catalog name in its config (``run.config["function"]``), so the
surface is redrawn from the catalog (numpy only) without the model.
"""

from __future__ import annotations

import numpy as np

from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, log_if_wide, panels, single
from dyntrace.plots.theme import NEUTRAL, method_colors, series_color

__all__ = [
    "path_xy",
    "path_function",
    "draw_contour",
    "plot_optimizer_path",
    "plot_optimizer_paths",
    "plot_path_losses",
]

_HOW = "record it with dyntrace.paths.optimizer_path(..., path=FILE), which logs x, y and loss every step"


def path_xy(run, prefix: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps (T,), x (T,), y (T,)) of the scalars ``{prefix}x``, ``{prefix}y`` of a path run.

    Raises MissingDataError if either is missing or they were logged at different steps.
    """
    names = run.scalar_names
    for axis in ("x", "y"):
        if prefix + axis not in names:
            raise missing(run, f"scalar {prefix + axis!r}", _HOW)
    steps, x = run.scalar(prefix + "x")
    steps_y, y = run.scalar(prefix + "y")
    if not np.array_equal(steps, steps_y):
        raise missing(run, f"scalars {prefix}x and {prefix}y at the same steps", _HOW)
    return steps, x, y


def path_function(run, function=None):
    """The 2-D function of a path run: ``function`` (a catalog name or a Function2D) if given,
    else ``run.config["function"]``. Raises MissingDataError if neither names one."""
    from dyntrace.catalog import lookup
    from dyntrace.catalog.functions2d import FUNCTIONS  # numpy only: no torch

    if function is None:
        function = run.config.get("function")
        if function is None:
            raise missing(run, "function name in the run's config", _HOW)
    return lookup("function", FUNCTIONS, function) if isinstance(function, str) else function


def draw_contour(ax, function, *, xlim=None, ylim=None, levels: int = 14, resolution: int = 241):
    """Contour lines of ``function`` over its plotting window (or ``xlim``/``ylim``), grey,
    log-spaced levels between the smallest and largest positive value in the window (so the
    flat bottom of a bowl gets as many lines as its steep walls); the minimum marked with +.
    """
    xlim = function.xlim if xlim is None else xlim
    ylim = function.ylim if ylim is None else ylim
    xs = np.linspace(*xlim, resolution)
    ys = np.linspace(*ylim, resolution)
    X, Y = np.meshgrid(xs, ys)
    Z = np.asarray(function(X, Y), dtype=np.float64)
    positive = Z[np.isfinite(Z) & (Z > 0)]
    if positive.size and Z.min() >= 0:
        lo = max(positive.min(), positive.max() * 1e-4)
        contour_levels = np.geomspace(lo, positive.max(), levels)
    else:  # a surface with negative values (the saddle): linear levels
        contour_levels = np.linspace(np.nanmin(Z), np.nanmax(Z), levels)
    ax.contour(X, Y, Z, levels=contour_levels, colors=NEUTRAL, linewidths=0.7, alpha=0.8)
    if function.minimum is not None:
        ax.plot(*function.minimum, marker="+", ms=12, mew=2, color="k", ls="none", gid="minimum")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")  # the geometry is the point: a circle stays a circle
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def plot_optimizer_path(
    run, /, *, ax=None, function=None, label=None, color=None, contour: bool = True, xlim=None, ylim=None
):
    """The path (x_t, y_t), t = 0 … T, of one path run over the contour of its function:
    a line with a dot per update, the start as an open circle and the last point as a filled
    square. ``label``: the title (default: the optimizer and lr from the run's config).

    Raises MissingDataError without the ``x``/``y`` scalars.
    """
    steps, x, y = path_xy(run)
    function = path_function(run, function)
    color = series_color(0) if color is None else color
    label = _label(run) if label is None else label
    with single(ax, figsize=(6.4, 3.8)) as (fig, ax, owns):
        if contour:
            draw_contour(ax, function, xlim=xlim, ylim=ylim)
        ax.plot(x, y, color=color, lw=1.3, marker="o", ms=3, label=label, gid="path")
        ax.plot(x[0], y[0], marker="o", ms=8, mfc="white", mec="k", ls="none", label="start", gid="start")
        ax.plot(
            x[-1],
            y[-1],
            marker="s",
            ms=7,
            color=color,
            mec="k",
            ls="none",
            label=f"after {int(steps[-1])} updates",
            gid="end",
        )
        ax.set_title(label)
        if owns:
            ax.set_title(f"{label} on f(x, y) = {function.formula}")
            legend(ax, owns=owns)
    return fig


def _run_colors(runs) -> list:
    """Each run's optimizer colour (:func:`dyntrace.plots.theme.method_colors`, from its config)."""
    return method_colors(r.config.get("optimizer", f"run {i}") for i, r in enumerate(runs))


def plot_optimizer_paths(
    runs, /, *, labels=None, ax=None, ncols: int = 4, function=None, xlim=None, ylim=None
):
    """One panel per path run (the book's figure of four optimizers on x²/20 + y²): each
    path over the contour of the runs' function, in its optimizer's fixed colour. ``labels``:
    panel titles (default: optimizer and lr from each run's config). ``ax``: an Axes (split
    into panels) or one Axes per run.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("runs: give at least one path run")
    if labels is not None and len(list(labels)) != len(runs):
        raise ValueError(f"labels: {len(list(labels))} given for {len(runs)} runs")
    labels = list(labels) if labels is not None else [_label(r) for r in runs]
    with panels(ax, len(runs), ncols=ncols, panel_size=(3.6, 2.3), sharex=True, sharey=True) as (
        fig,
        axes,
        owns,
    ):
        colors = _run_colors(runs)
        for i, (run, label, a) in enumerate(zip(runs, labels, axes)):
            plot_optimizer_path(
                run, ax=a, function=function, label=label, color=colors[i], xlim=xlim, ylim=ylim
            )
            a.set_title(label, fontsize="medium")
            a.tick_params(labelsize="small")
            if owns and i % ncols:
                a.set_ylabel("")
            if owns and i < len(runs) - ncols:
                a.set_xlabel("")
        if owns:
            fig.suptitle(f"Optimizer paths on f(x, y) = {path_function(runs[0], function).formula}")
    return fig


def plot_path_losses(runs, /, *, labels=None, ax=None):
    """f(x_t, y_t) of each path run over its updates t (the logged ``loss``), each in its
    optimizer's fixed colour, log y axis when the values span decades."""
    runs = list(runs)
    labels = list(labels) if labels is not None else [_label(r) for r in runs]
    if len(labels) != len(runs):
        raise ValueError(f"labels: {len(labels)} given for {len(runs)} runs")
    with single(ax, figsize=(7.5, 4.2)) as (fig, ax, owns):
        values = []
        colors = _run_colors(runs)
        for i, (run, label) in enumerate(zip(runs, labels)):
            if "loss" not in run.scalar_names:
                raise missing(run, "scalar 'loss'", _HOW)
            steps, loss = run.scalar("loss")
            ax.plot(steps, loss, color=colors[i], lw=1.6, marker="o", ms=2.5, label=label, gid=label)
            values.append(loss)
        log_if_wide(ax, np.concatenate(values))
        ax.set_ylabel("f(x_t, y_t)")
        ax.set_xlabel("updates t")
        ax.set_title("Function value along each path")
        legend(ax, owns=owns)
    return fig


def _label(run) -> str:
    config = run.config
    name, lr = config.get("optimizer"), config.get("lr")
    if name is None:
        return run.path
    return f"{name} (lr {lr:g})" if isinstance(lr, (int, float)) else str(name)
