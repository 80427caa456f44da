"""Per-parameter distributions over training: log10 |g| heatmaps of the gradients, value
heatmaps of the weights, one panel per parameter tensor."""

from __future__ import annotations

from dyntrace.plots.heatmap import hist_heatmaps, select
from dyntrace.plots.layout import panel_title, short_names, title_chars

__all__ = ["plot_gradient_heatmaps", "plot_weight_heatmaps"]


def _titles(run, probe, names):
    """Parameter names shortened together (common prefix dropped, middle elided)."""
    order = run.names(probe)
    width = title_chars(3.2)
    short = dict(zip(order, short_names(order, max_chars=width)))
    return [panel_title(short[n], width) for n in names]


def plot_gradient_heatmaps(run, /, *, ax=None, params=None, max_params: int = 8, max_windows: int = 400):
    """Distribution of each parameter's gradient magnitudes |g| over training (time × |g|
    heatmaps of the log10 |g| histograms, log y axis, log colour scale; exact zeros are
    counted apart and not drawn).

    ``params``: names or indices (default: at most ``max_params``, evenly spread).
    Raises MissingDataError without the 'gradients' probe.
    """
    names = select(run, "gradients", params, max_params)
    total = len(run.names("gradients"))
    title = "Gradient magnitudes over training" + (
        f" ({len(names)} of {total} parameters)" if len(names) < total else ""
    )
    return hist_heatmaps(
        run,
        "gradients",
        names,
        ax=ax,
        title=title,
        ylabel="|g|",
        max_windows=max_windows,
        panel_titles=_titles(run, "gradients", names),
    )


def plot_weight_heatmaps(run, /, *, ax=None, params=None, max_params: int = 8, max_windows: int = 400):
    """Distribution of each parameter's values over training (time × value heatmaps of the
    weight histograms, log colour scale). ``params`` as in :func:`plot_gradient_heatmaps`.
    Raises MissingDataError without the 'weights' probe."""
    names = select(run, "weights", params, max_params)
    total = len(run.names("weights"))
    title = "Weight distributions over training" + (
        f" ({len(names)} of {total} parameters)" if len(names) < total else ""
    )
    return hist_heatmaps(
        run,
        "weights",
        names,
        ax=ax,
        title=title,
        ylabel="weight value",
        max_windows=max_windows,
        panel_titles=_titles(run, "weights", names),
    )
