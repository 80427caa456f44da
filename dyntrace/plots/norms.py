"""Whole-model norms over training: gradient, parameters, update, distance from init."""

from __future__ import annotations

import numpy as np

from dyntrace.analysis import decimate
from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, log_if_wide, single, step_label
from dyntrace.plots.theme import series_color

__all__ = ["plot_norms", "NORMS"]

#: The scalars drawn, with their legend label (recorded by the 'scalars' probe).
NORMS = {
    "grad_norm": "‖g‖  gradient",
    "param_norm": "‖θ‖  parameters",
    "update_norm": "‖Δθ‖  update",
    "dist_init": "‖θ − θ₀‖  distance from init",
}


def plot_norms(run, /, *, ax=None, max_points: int = 4000):
    """Global L2 norms on record steps: ``grad_norm``, ``param_norm``, ``update_norm``,
    ``dist_init`` (those the run has), one line each, log y axis when they span decades.
    Raises MissingDataError if the run has none of them (the 'scalars' probe records them).
    """
    have = [n for n in NORMS if n in run.scalar_names]
    if not have:
        raise missing(
            run,
            f"norm scalars ({', '.join(NORMS)})",
            "they are recorded by the 'scalars' probe: Recorder(..., probes=[..., 'scalars'])",
        )
    with single(ax) as (fig, ax, owns):
        values = []
        for i, name in enumerate(NORMS):
            if name not in have:
                continue
            steps, v = run.scalar(name)
            s, v = decimate(steps, v, max_points)
            ax.plot(s, v, color=series_color(i), lw=1.5, label=NORMS[name], gid=name)
            values.append(v)
        log_if_wide(ax, np.concatenate(values), decades=1.0)
        ax.set_ylabel("L2 norm")
        step_label(ax)
        ax.set_title("Gradient, parameter and update norms")
        legend(ax, owns=owns)
    return fig
