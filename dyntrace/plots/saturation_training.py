"""Mean output of each layer over training with a ±1 std band: Glorot & Bengio's (2010)
figure of sigmoid saturation, where the top hidden layer's mean falls towards 0."""

from __future__ import annotations

import numpy as np

from dyntrace.analysis import decimate
from dyntrace.plots.data import layer_stat
from dyntrace.plots.layout import layer_key, layer_labels, single, step_label
from dyntrace.plots.theme import NEUTRAL, layer_colors

__all__ = ["plot_saturation_training"]

_BOUNDED = {
    "sigmoid": (0.0, 1.0),
    "hardsigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
    "hardtanh": (-1.0, 1.0),
}


def plot_saturation_training(run, /, *, ax=None, band: bool = True, labels=None, max_points: int = 2000):
    """Each layer's mean output over training (one colour per layer), with a shaded ±1 std
    band (``band``) of the record step's batch. Bounded activations (sigmoid, tanh) get their
    range as y limits and a line at its middle, so saturation towards a bound shows.
    ``labels``: one legend label per layer (default "layer k: module (kind)").

    Raises MissingDataError without the 'activations' probe.
    """
    steps, names, mean = layer_stat(run, "activations", "mean")
    _, _, std = layer_stat(run, "activations", "std")
    colors = layer_colors(len(names))
    kinds = run.kinds("activations")
    bounds = {_BOUNDED[k] for k in kinds.values() if k in _BOUNDED}
    with single(ax) as (fig, ax, owns):
        handles = []
        for j, name in enumerate(names):
            s, m = decimate(steps, mean[:, j], max_points)
            (line,) = ax.plot(s, m, color=colors[j], lw=1.8, gid=name)
            handles.append(line)
            if band:
                _, sd = decimate(steps, std[:, j], max_points)
                ax.fill_between(s, m - sd, m + sd, color=colors[j], alpha=0.12, lw=0)
        if len(bounds) == 1:
            lo, hi = bounds.pop()
            ax.axhline((lo + hi) / 2, color=NEUTRAL, lw=0.9, ls=":")
            ax.set_ylim(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
        else:
            finite = mean[np.isfinite(mean)]
            if finite.size == 0:
                ax.set_ylim(0, 1)
        ax.set_ylabel("mean layer output" + (" (band: ± 1 std)" if band else ""))
        step_label(ax)
        ax.set_title("Mean activation per layer over training")
        layer_key(
            ax,
            owns=owns,
            handles=handles,
            labels=list(labels) if labels is not None else layer_labels(run, "activations", names),
            colors=colors,
            n_total=len(names),
        )
    return fig
