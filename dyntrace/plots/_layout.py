"""Where a figure function draws: its own figure, the caller's axes, or panels cut from them.

Every ``plot_*`` function takes ``ax=None``: with None it makes its own figure (inside the
dyntrace theme); with an Axes it draws there (a multi-panel figure splits that axes' area into
its panels); a multi-panel figure also takes a sequence of Axes, one per panel.

New figures are plain ``matplotlib.figure.Figure`` objects, not registered with pyplot (no
global state; nothing to close): save them with ``fig.savefig``; Jupyter shows them inline.
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure

from dyntrace.plots.theme import layer_colors, theme

__all__ = ["single", "panels", "legend", "log_if_wide", "step_label", "root_figure", "layer_labels", "layer_key",
           "plain_name"]

STEP_LABEL = "step (optimizer steps)"
#: How the usual scalar names read in a figure (labels are for people, not for code).
PLAIN_NAMES = {"loss": "training loss", "val_loss": "validation loss", "test_loss": "test loss",
               "accuracy": "training accuracy", "train_accuracy": "training accuracy",
               "val_accuracy": "validation accuracy", "test_accuracy": "test accuracy"}


def plain_name(name: str) -> str:
    """A scalar's name in plain words (``val_loss`` → "validation loss"); other names unchanged."""
    return PLAIN_NAMES.get(name, name)


def root_figure(ax: Axes):
    return ax.get_figure(root=True)


@contextmanager
def single(ax, *, figsize=(7.5, 4.2)):
    """Yield (figure, axes, owns) for a one-panel figure; ``owns`` is True for a new figure.

    A new figure is made and drawn inside :func:`dyntrace.plots.theme`; the caller's axes are
    drawn on in the caller's style.
    """
    with ExitStack() as stack:
        if ax is None:
            stack.enter_context(theme())
            fig = Figure(figsize=figsize, layout="constrained")
            ax = fig.add_subplot()
            yield fig, ax, True
        else:
            if not isinstance(ax, Axes):
                raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
            yield root_figure(ax), ax, False


@contextmanager
def panels(ax, n: int, *, ncols: int, panel_size=(3.2, 2.6), sharex=False, sharey=False):
    """Yield (figure, [n axes], owns) for a figure of ``n`` panels in rows of ``ncols``.

    ``ax`` None: a new figure; an Axes: its area is split into the panels (it is hidden);
    a sequence of at least ``n`` Axes: the first ``n`` are used.
    """
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    with ExitStack() as stack:
        if ax is None:
            stack.enter_context(theme())
            fig = Figure(figsize=(panel_size[0] * ncols + 0.8, panel_size[1] * nrows + 0.6), layout="constrained")
            grid = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey).ravel()
            for extra in grid[n:]:
                extra.remove()
            yield fig, list(grid[:n]), True
        elif isinstance(ax, Axes) and n == 1:
            yield root_figure(ax), [ax], False
        elif isinstance(ax, Axes):
            parent = ax.get_figure(root=False)
            spec = ax.get_subplotspec()
            ax.set_axis_off()
            if spec is not None:
                sub = spec.subgridspec(nrows, ncols)
                axes = [parent.add_subplot(sub[i // ncols, i % ncols]) for i in range(n)]
            else:  # an axes placed by hand: inset panels in its area
                w, h = 1.0 / ncols, 1.0 / nrows
                axes = [ax.inset_axes([(i % ncols) * w + 0.08 * w, 1 - (i // ncols + 1) * h + 0.12 * h, 0.8 * w, 0.72 * h]) for i in range(n)]
            yield root_figure(ax), axes, False
        else:
            axes = list(ax)
            if len(axes) < n or not all(isinstance(a, Axes) for a in axes):
                raise ValueError(f"ax: expected an Axes or a sequence of at least {n} Axes, got {len(axes)} items")
            yield root_figure(axes[0]), axes[:n], False


def legend(ax, *, owns: bool, handles=None, labels=None, title=None):
    """A legend that does not cover data.

    In a figure the function owns: below the axes, outside. In a caller's axes: ``loc="best"``
    for up to three entries, else below the axes (the layout makes room for it).
    """
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    ncols = min(3, len(handles))
    if owns:
        return root_figure(ax).legend(handles, labels, loc="outside lower center", ncols=ncols, title=title)
    if len(handles) <= 3:
        return ax.legend(handles, labels, loc="best", fontsize="small", title=title)
    # below the axes, no wider than them: two columns (long labels would stick out of the page)
    return ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, fontsize="small", title=title)


def log_if_wide(ax, values, *, axis="y", decades: float = 1.5) -> bool:
    """Use a log scale on ``axis`` when the positive finite ``values`` span ≥ ``decades``.

    Not for data with negative values; exact zeros (a dead layer's gradient) do not prevent
    it (a log axis leaves them out).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if np.any(v < 0):
        return False
    v = v[v > 0]
    if v.size == 0:
        return False
    if np.log10(v.max() / v.min()) >= decades:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        return True
    return False


def step_label(ax):
    ax.set_xlabel(STEP_LABEL)


def layer_labels(run, probe: str, names: list[str]) -> list[str]:
    """"layer k: name (kind)" for tensors of ``probe`` (k counts from 1, input side first)."""
    order = run.names(probe)
    kinds = run.kinds(probe)
    return [f"layer {order.index(n) + 1}: {n}" + (f" ({kinds[n]})" if n in kinds else "") for n in names]


def layer_key(ax, *, owns: bool, handles, labels, colors, n_total: int, title="layer"):
    """Say which colour is which layer: a legend for up to 8 lines, else a colourbar of depth.

    ``colors`` are the drawn lines' colours, taken from ``layer_colors(n_total)``; the
    colourbar shows that whole scale (layer 1 to ``n_total``), so it stays right when only
    some layers are drawn.
    """
    if len(handles) <= 8:
        return legend(ax, owns=owns, handles=handles, labels=labels, title=None)
    mappable = ScalarMappable(norm=Normalize(0.5, n_total + 0.5), cmap=ListedColormap(layer_colors(n_total)))
    bar = root_figure(ax).colorbar(mappable, ax=ax, pad=0.02, fraction=0.05)
    bar.set_label(f"{title} (1 = input side, {n_total} in all)")
    return bar
