"""Loss-landscape figures: a 1-D slice, a contour map with the training trajectory, a 3-D surface.

Each takes a result of ``dyntrace.landscape`` (``LineResult`` or ``PlaneResult``, computed
now or read back from a run file), draws it and returns the Figure. With ``ax`` it draws
there; without, it makes its own figure in the dyntrace theme (a plain
``matplotlib.figure.Figure``, not registered with pyplot). No torch, no global matplotlib state.

Reference: H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss Landscape
of Neural Nets", NeurIPS 2018 (Figs. 5–9: contours, surfaces, PCA trajectory planes).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from dyntrace.landscape.results import LineResult, PlaneResult
from dyntrace.plots.layout import legend, root_figure, single
from dyntrace.plots.theme import HEAT_CMAP, NEUTRAL, PALETTE, theme

__all__ = ["plot_landscape_line", "plot_landscape_contour", "plot_landscape_surface"]


@contextmanager
def _single_3d(ax, *, figsize=(6.4, 5.2)):
    """``_layout.single`` for a 3-D axes: yield (figure, axes); ``ax`` must be 3-D if given."""
    if ax is None:
        with theme():
            fig = Figure(figsize=figsize, layout="constrained")
            yield fig, fig.add_subplot(projection="3d")
    else:
        if getattr(ax, "name", None) != "3d":
            raise ValueError(
                f"ax must be a 3-D axes (projection='3d'), got a {getattr(ax, 'name', type(ax).__name__)!r} axes"
            )
        yield root_figure(ax), ax


def _check(result, kind: type, function: str):
    if not isinstance(result, kind):
        raise TypeError(f"{function} draws a {kind.__name__}, got {type(result).__name__}")


def _metric_label(meta: dict) -> str:
    return meta.get("metric") or "metric"


def _plane_labels(result: PlaneResult) -> tuple[str, str, str]:
    """Axis labels and the subject of the title for a plane."""
    if result.explained_variance is not None:
        ev = 100 * result.explained_variance
        return f"PC1 ({ev[0]:.1f} %)", f"PC2 ({ev[1]:.1f} %)", "the training trajectory's PCA plane"
    seed = result.meta.get("seed")
    where = (
        f"a random filter-normalised plane (seed {seed})"
        if seed is not None
        else "the plane through the given directions"
    )
    return "direction 1 (δ)", "direction 2 (η)", where


def plot_landscape_line(result: LineResult, /, *, ax=None) -> Figure:
    """Loss along a 1-D slice (``line`` or ``slice_1d``); the metric on a right-hand axis if computed.

    Draws ``result.loss`` against ``result.t``. Returns the Figure.
    """
    _check(result, LineResult, "plot_landscape_line")
    with single(ax, figsize=(6.4, 4.2)) as (fig, ax, owns):
        ax.plot(result.t, result.loss, color=PALETTE[0], marker=".", label="loss")
        if result.meta.get("kind") == "line":
            ax.set_xlabel("t (0 = start, 1 = end)")
            ax.set_title("Loss along the straight line from start to end")
        else:
            seed = result.meta.get("seed")
            ax.set_xlabel("step along a filter-normalised direction")
            ax.set_title(
                "Loss along a random filter-normalised direction"
                + (f" (seed {seed})" if seed is not None else "")
            )
        ax.set_ylabel("loss")
        if result.acc is not None:
            right = ax.twinx()
            right.grid(False)
            right.plot(
                result.t, result.acc, color=PALETTE[1], linestyle="--", label=_metric_label(result.meta)
            )
            right.set_ylabel(_metric_label(result.meta))
            lines = ax.get_lines() + right.get_lines()
            legend(ax, owns=owns, handles=lines, labels=[line.get_label() for line in lines])
    return fig


def plot_landscape_contour(
    result: PlaneResult,
    /,
    *,
    ax=None,
    filled: bool = True,
    log_levels: bool = False,
    show_path: bool = True,
    levels: int = 20,
) -> Figure:
    """Contour map of the loss on a plane, with the projected trajectory when there is one.

    Args:
        result: a PlaneResult; NaN cells (not computed) are left blank.
        ax: axes to draw on; default a new figure.
        filled: filled contours (default) or contour lines.
        log_levels: levels evenly spaced in log(loss) instead of loss (needs loss > 0).
        show_path: draw ``result.path`` (trajectory planes) with its start and end marked.
        levels: number of contour levels, spanning the smallest to the largest loss.

    Axes of a trajectory plane are labelled with the explained variance, e.g. "PC1 (93.1 %)".
    Returns the Figure.
    """
    _check(result, PlaneResult, "plot_landscape_contour")
    if levels < 2:
        raise ValueError(f"levels must be ≥ 2, got {levels!r}")
    loss = np.ma.masked_invalid(result.loss)
    if loss.count() == 0:
        raise ValueError("the plane has no computed loss values (all NaN)")
    low, high = float(loss.min()), float(loss.max())
    high = high if high > low else low + 1.0  # a flat plane still gets increasing levels
    if log_levels:
        if low <= 0:
            raise ValueError(f"log_levels=True needs a positive loss, the smallest is {low!r}")
        bounds, norm = np.geomspace(low, high, levels), LogNorm(low, high)
    else:
        bounds, norm = np.linspace(low, high, levels), Normalize(low, high)
    xlabel, ylabel, where = _plane_labels(result)
    with single(ax, figsize=(6.4, 5.0)) as (fig, ax, owns):
        draw = ax.contourf if filled else ax.contour
        contours = draw(result.x, result.y, loss, levels=bounds, norm=norm, cmap=HEAT_CMAP)
        fig.colorbar(contours, ax=ax, label="loss")
        if show_path and result.path is not None:
            path = result.path
            ax.plot(
                path[:, 0],
                path[:, 1],
                color="white" if filled else PALETTE[3],
                linewidth=1.2,
                marker=".",
                markersize=4,
                label="trajectory",
            )
            ax.plot(
                path[0, 0],
                path[0, 1],
                "o",
                color=PALETTE[1],
                markeredgecolor=NEUTRAL,
                label=f"start (step {result.path_steps[0]})",
            )
            ax.plot(
                path[-1, 0],
                path[-1, 1],
                "*",
                color=PALETTE[2],
                markersize=11,
                markeredgecolor=NEUTRAL,
                label=f"final (step {result.path_steps[-1]})",
            )
            legend(ax, owns=owns)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_aspect("equal")  # both axes are distances in parameter space: keep their geometry
        ax.set_title(f"Loss on {where}")
    return fig


def plot_landscape_surface(result: PlaneResult, /, *, ax=None) -> Figure:
    """3-D surface of the loss on a plane (Li et al.'s surface plots).

    ``ax``, if given, must be a 3-D axes (``projection="3d"``). Returns the Figure.
    """
    _check(result, PlaneResult, "plot_landscape_surface")
    xlabel, ylabel, where = _plane_labels(result)
    with _single_3d(ax) as (fig, ax):
        gx, gy = np.meshgrid(result.x, result.y)  # [ny, nx], like result.loss
        ax.plot_surface(
            gx, gy, result.loss, cmap=HEAT_CMAP, rstride=1, cstride=1, linewidth=0, antialiased=False
        )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_zlabel("loss")
        ax.set_title(f"Loss surface on {where}")
    return fig


#: Where stored landscapes come from (they are computed after training, not by a probe).
LANDSCAPE_SOURCE = (
    "no landscape (not a probe: computed after training by `dyntrace train --landscape` "
    "or `dyntrace landscape RUN.h5`)"
)

_SHORT_TITLES = {
    "line": "loss from the first to the last weights",
    "random_plane": "random filter-normalised plane",
    "trajectory_plane": "the trajectory's PCA plane",
}


def plot_landscapes(run, /, *, ax=None) -> Figure:
    """Every loss landscape stored in a run file, one panel each.

    Planes are drawn as filled contours (the trajectory plane with its path and the explained
    variance on its axes), lines as curves. Raises MissingDataError without landscapes
    (``dyntrace train --landscape`` or ``dyntrace landscape`` compute them).
    """
    from dyntrace.errors import MissingDataError
    from dyntrace.plots.layout import panels

    names = run.landscape_names
    if not names:
        raise MissingDataError(f"{run.path}: {LANDSCAPE_SOURCE}")
    with panels(ax, len(names), ncols=min(3, len(names)), panel_size=(4.6, 3.8)) as (fig, axes, _):
        for name, panel in zip(names, axes):
            result = run.landscape(name)
            if isinstance(result, PlaneResult):
                plot_landscape_contour(result, ax=panel)
            else:
                plot_landscape_line(result, ax=panel)
            kind = _SHORT_TITLES.get(result.meta.get("kind"), result.meta.get("kind", ""))
            panel.set_title(f"{name}: {kind}" if kind else name, fontsize="medium")
    return fig
