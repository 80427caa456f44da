"""Output landscapes of networks over a 2-D input grid (the Swish paper's figure of random
networks), and their roughness.

A run stores each landscape in its file (``Run.landscape(name)``): ``x`` (nx,), ``y`` (ny,)
and the network output on the grid [ny, nx] under Li et al.'s ``train_loss`` name, with
``meta["kind"] == "output_landscape"`` saying that the values are outputs, not losses.
"""

from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D

from dyntrace.analysis.stats import roughness
from dyntrace.errors import MissingDataError
from dyntrace.plots.layout import legend, root_figure, single
from dyntrace.plots.theme import HEAT_CMAP, NEUTRAL, method_colors

__all__ = ["plot_output_landscape", "plot_roughness", "output_landscapes"]


def output_landscapes(run) -> dict:
    """{name: PlaneResult} of every output landscape stored in ``run`` (in stored order)."""
    out = {}
    for name in run.landscape_names:
        result = run.landscape(name)
        if result.meta.get("kind") == "output_landscape" and hasattr(result, "y"):
            out[name] = result
    if not out:
        raise MissingDataError(
            f"{run.path}: no output landscape (has: {', '.join(run.landscape_names) or 'none'}); "
            "the random_landscapes gallery entry writes them"
        )
    return out


def plot_output_landscape(
    run, /, *, ax=None, name: str | None = None, title: str | None = None, colorbar: bool = True
):
    """One output landscape as an image over its (x, y) grid (colour: the output; each
    landscape its own colour scale), titled with its roughness. ``name``: which stored
    landscape (default: the first)."""
    landscapes = output_landscapes(run)
    name = name or next(iter(landscapes))
    if name not in landscapes:
        raise MissingDataError(f"{run.path}: no output landscape {name!r} (has: {', '.join(landscapes)})")
    result = landscapes[name]
    with single(ax, figsize=(4.4, 3.8)) as (fig, ax, owns):
        dx, dy = np.diff(result.x[:2])[0] / 2, np.diff(result.y[:2])[0] / 2
        extent = (result.x[0] - dx, result.x[-1] + dx, result.y[0] - dy, result.y[-1] + dy)
        image = ax.imshow(
            result.loss,
            origin="lower",
            extent=extent,
            cmap=HEAT_CMAP,
            aspect="equal",
            interpolation="nearest",
        )
        image.set_gid(name)
        ax.grid(False)
        ax.set_xlabel("input x₁")
        ax.set_ylabel("input x₂")
        label = result.meta.get("label") or run.config.get("activation", name)
        ax.set_title(title or f"{label}\nroughness {roughness(result.loss):.2g}", fontsize="medium")
        if colorbar:  # fraction 0.046: a colour bar as tall as a square image
            bar = root_figure(ax).colorbar(image, ax=ax, fraction=0.046, pad=0.03)
            bar.set_label("network output", fontsize="small")
            bar.ax.tick_params(labelsize="x-small")
    return fig


def plot_roughness(
    runs,
    /,
    *,
    ax=None,
    labels=None,
    reference: dict | None = None,
    reference_label: str = "reference",
    floor: float = 1e-6,
):
    """Roughness of every stored output landscape, one column per run (dots: one network each;
    bar: their median), log scale, each in its activation's fixed colour. ``reference``:
    {label: value} drawn as open diamonds (``reference_label`` in the legend).
    Values below ``floor`` (a plane: 0 up to round-off) are drawn at the floor as ▼. In a
    caller's axes the legend goes in the head room above the data.
    """
    if isinstance(runs, dict):
        labels = list(runs) if labels is None else list(labels)
        runs = list(runs.values())
    else:
        runs = list(runs)
        labels = [f"run {k + 1}" for k in range(len(runs))] if labels is None else list(labels)
    reference = reference or {}
    colors = method_colors(labels)  # an activation's fixed colour (ReLU vermillion, …)
    with single(ax, figsize=(6.0, 4.0)) as (fig, ax, owns):
        for k, (label, run) in enumerate(zip(labels, runs)):
            values = np.array([roughness(r.loss) for r in output_landscapes(run).values()])
            shown = np.maximum(values, floor)
            low = values < floor
            color = colors[k]
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(k + jitter[~low], shown[~low], color=color, s=22, alpha=0.8, zorder=3)
            ax.scatter(k + jitter[low], shown[low], color=color, s=30, marker="v", zorder=3)
            median = float(np.median(values))
            ax.hlines(max(median, floor), k - 0.3, k + 0.3, color=color, lw=2.5, zorder=4)
            if label in reference:
                ax.scatter(
                    [k + 0.38],
                    [max(reference[label], floor)],
                    marker="D",
                    facecolor="none",
                    edgecolor=NEUTRAL,
                    s=36,
                    zorder=4,
                )
        ax.set_yscale("log")
        top = max(ax.dataLim.y1, floor)
        ax.set_ylim(floor / 2, top * 30)  # head room for the legend, above the data
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
        ax.set_ylabel("roughness (mean |Laplacian| / range)")
        ax.set_title("Roughness of the output landscape")
        handles = [Line2D([], [], color="0.3", marker="o", ls="", ms=5), Line2D([], [], color="0.3", lw=2.5)]
        names = ["one random network", "median"]
        if reference:
            handles.append(Line2D([], [], color=NEUTRAL, marker="D", ls="", mfc="none", ms=6))
            names.append(reference_label)
        if any(
            np.any(np.array([roughness(r.loss) for r in output_landscapes(run).values()]) < floor)
            for run in runs
        ):
            handles.append(Line2D([], [], color="0.3", marker="v", ls="", ms=6))
            names.append(f"below {floor:g} (≈ 0)")
        if owns:
            legend(ax, owns=True, handles=handles, labels=names)
        else:
            ax.legend(handles, names, loc="upper right", fontsize="small", ncols=2)
    return fig
