"""Activation distributions: over time per layer (heatmaps), at one step (the book's 1×N
histograms), and each layer's output standard deviation over training."""

from __future__ import annotations

import numpy as np

from dyntrace.analysis import decimate, fraction
from dyntrace.plots.data import forward_order, hist_rows, layer_stat, missing
from dyntrace.plots.heatmap import hist_heatmaps, select
from dyntrace.plots.layout import (
    layer_key,
    layer_labels,
    log_if_wide,
    panel_title,
    panels,
    single,
    step_label,
    title_chars,
)
from dyntrace.plots.theme import layer_color, layer_colors

__all__ = ["plot_activation_heatmaps", "plot_activation_histograms", "plot_activation_std"]


def _panel_titles(run, names, panel_width: float):
    """ "path (kind)": the module path shortened (common prefix dropped, middle elided) to fit
    over a panel; the kind on a second line when both do not fit on one."""
    width = title_chars(panel_width)
    return [panel_title(label, width) for label in layer_labels(run, "activations", names, max_chars=width)]


def plot_activation_heatmaps(run, /, *, ax=None, layers=None, max_layers: int = 8, max_windows: int = 400):
    """Distribution of each layer's outputs over training: time × value heatmaps of the
    recorded histograms (fraction of the sampled values per bin, log colour scale).

    ``layers``: names or indices in forward order (default: at most ``max_layers``, evenly
    spread, first and last included). Long runs pool consecutive records into at most
    ``max_windows`` columns. Panels are titled "path (kind)", the path shortened.
    Raises MissingDataError without the 'activations' probe.
    """
    names = select(run, "activations", layers, max_layers)
    total = len(run.names("activations"))
    title = "Activation distributions over training" + (
        f" ({len(names)} of {total} layers)" if len(names) < total else ""
    )
    return hist_heatmaps(
        run,
        "activations",
        names,
        ax=ax,
        title=title,
        ylabel="output value",
        max_windows=max_windows,
        panel_titles=_panel_titles(run, names, 3.2),
    )


def _record_at(steps, step):
    """Index of the record step nearest ``step`` (the last one if None)."""
    if len(steps) == 0:
        raise ValueError("no record steps")
    if step is None:
        return len(steps) - 1
    return int(np.argmin(np.abs(np.asarray(steps) - step)))


def plot_activation_histograms(
    run, /, *, step=None, ax=None, layers=None, max_layers: int = 8, titles="path"
):
    """Histograms of each layer's outputs at one record step, one panel per layer, as in the
    book's figures of activations by weight initialisation.

    ``step``: the record step nearest it (default: the last record). Bars are the fraction
    of the sampled values per bin; values outside the binned range are not drawn.
    ``titles``: "path" ("path (kind)", the module path shortened: what a user's model calls
    it) or "depth" ("layer k (kind)", k counted in forward order: for teaching figures).
    Raises MissingDataError without the 'activations' probe.
    """
    if titles not in ("path", "depth"):
        raise ValueError(f"Invalid titles: {titles!r} (expected 'path' or 'depth')")
    names = select(run, "activations", layers, max_layers)
    all_names = run.names("activations")
    depth = forward_order(run, "activations")
    steps = run.steps("activations")
    if len(steps) == 0:
        raise missing(
            run, "'activations' records yet", "the 'activations' probe writes one row per record step"
        )
    i = _record_at(steps, step)
    cols = [all_names.index(n) for n in names]
    counts = hist_rows(run, "activations", "hist", i, i + 1, cols)[0, :, 1:-1]
    sampled = hist_rows(run, "activations", "hist_count", i, i + 1, cols)[0]
    edges = np.asarray(run.field("activations", "edges")[1], dtype=np.float64)[cols]
    ncols = len(names) if len(names) <= 6 else 4
    if titles == "depth":
        kinds = run.kinds("activations")
        titles = [f"layer {depth.index(n) + 1}" + (f" ({kinds[n]})" if n in kinds else "") for n in names]
    else:
        titles = _panel_titles(run, names, 2.6)
    with panels(ax, len(names), ncols=ncols, panel_size=(2.6, 2.4)) as (fig, axes, owns):
        for j, (name, a) in enumerate(zip(names, axes)):
            frac = fraction(counts[j], sampled[j])
            if np.isfinite(edges[j]).all():
                a.stairs(
                    frac,
                    edges[j],
                    fill=True,
                    color=layer_color(depth.index(name), len(all_names)),
                    alpha=0.85,
                    gid=name,
                )
            else:  # never seen: no range to draw on
                a.text(
                    0.5,
                    0.5,
                    "no values recorded",
                    ha="center",
                    va="center",
                    fontsize="small",
                    transform=a.transAxes,
                )
            a.set_title(titles[j], fontsize="medium")
            a.set_xlabel("output value", fontsize="small")
            a.set_ylabel("fraction of values" if j % ncols == 0 or not owns else "", fontsize="small")
            a.tick_params(labelsize="small")
            a.set_ylim(bottom=0)
        if owns:
            fig.suptitle(f"Activation histograms at step {int(steps[i])}")
    return fig


def plot_activation_std(run, /, *, ax=None, max_points: int = 2000):
    """Standard deviation of each layer's outputs over training, one line per layer (colour
    by depth), log y axis when the layers span decades. Raises MissingDataError without the
    'activations' probe."""
    steps, names, std = layer_stat(run, "activations", "std")
    colors = layer_colors(len(names))
    with single(ax) as (fig, ax, owns):
        handles = []
        for j, name in enumerate(names):
            s, v = decimate(steps, std[:, j], max_points)
            (line,) = ax.plot(s, v, color=colors[j], lw=1.4, gid=name)
            handles.append(line)
        log_if_wide(ax, std, decades=1.0)
        ax.set_ylabel("std of layer output")
        step_label(ax)
        ax.set_title("Activation std per layer")
        layer_key(
            ax,
            owns=owns,
            handles=handles,
            labels=layer_labels(run, "activations", names),
            colors=colors,
            n_total=len(names),
        )
    return fig
