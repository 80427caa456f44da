"""Unit health per layer over training: saturated outputs of bounded activations, dead units."""

from __future__ import annotations

from dyntrace.analysis import decimate
from dyntrace.kinds import BOUNDED_KINDS
from dyntrace.plots.data import layer_stat, missing
from dyntrace.plots.layout import layer_key, layer_labels, single, step_label
from dyntrace.plots.theme import layer_colors

__all__ = ["plot_saturation", "plot_dead_units", "BOUNDED_KINDS"]


def _fraction_lines(run, ax, owns, stat, keep, *, ylabel, title, max_points, units=False):
    steps, names, values = layer_stat(run, "activations", stat)
    colors = layer_colors(len(names))
    handles, shown = [], []
    for j, name in enumerate(names):
        if not keep(name):
            continue
        s, v = decimate(steps, values[:, j], max_points)
        (line,) = ax.plot(s, v, color=colors[j], lw=1.4, gid=name)
        handles.append(line)
        shown.append(name)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(ylabel)
    step_label(ax)
    ax.set_title(title)
    labels = layer_labels(run, "activations", shown, units=units)
    layer_key(
        ax,
        owns=owns,
        handles=handles,
        labels=labels,
        colors=[colors[names.index(n)] for n in shown],
        n_total=len(names),
    )


def _probe_option(run, probe, option):
    """An option a probe was run with, from the run's metadata (None if not stored)."""
    probes = run.meta.get("probes")
    for entry in probes if isinstance(probes, list) else []:
        if isinstance(entry, dict) and entry.get("name") == probe:
            return (entry.get("options") or {}).get(option)
    return None


def plot_saturation(run, /, *, ax=None, max_points: int = 2000):
    """Fraction of each bounded activation's outputs within ε of its bounds (sigmoid near 0
    or 1, tanh near ±1; ε is the probe's ``saturation_eps``), per layer over training.

    Raises MissingDataError without the 'activations' probe or without a bounded layer.
    """
    kinds = run.kinds("activations")
    bounded = [n for n in run.names("activations") if kinds.get(n) in BOUNDED_KINDS]
    if not bounded:
        raise missing(
            run,
            "saturated fraction: no bounded activation (sigmoid, tanh, …) among the recorded layers"
            + (f" ({', '.join(sorted(set(kinds.values())))})" if kinds else ""),
            "the 'activations' probe counts saturation for bounded activation modules",
        )
    eps = _probe_option(run, "activations", "saturation_eps")
    within = f" (within {eps:g} of the bounds)" if isinstance(eps, (int, float)) else ""
    with single(ax) as (fig, ax, owns):
        _fraction_lines(
            run,
            ax,
            owns,
            "frac_saturated",
            bounded.__contains__,
            ylabel="fraction saturated",
            title=f"Saturated outputs per layer{within}",
            max_points=max_points,
        )
    return fig


def plot_dead_units(run, /, *, ax=None, persistent: bool = False, max_points: int = 2000):
    """Fraction of each layer's units that are dead: exactly zero for every sample (and
    position) of the record step's batch (``persistent``: dead for the probe's
    ``dead_patience`` consecutive records). Units are features (the last dim of (N, C) and
    (N, T, C)) or channels (dim 1 of (N, C, H, W)), as recorded per layer; the legend says
    which and how many. Raises MissingDataError without the 'activations' probe."""
    stat = "frac_dead_persistent" if persistent else "frac_dead"
    what = "for several records in a row" if persistent else "for the whole batch"
    with single(ax) as (fig, ax, owns):
        _fraction_lines(
            run,
            ax,
            owns,
            stat,
            lambda name: True,
            ylabel="fraction of units dead",
            title=f"Dead units per layer (zero {what})",
            max_points=max_points,
            units=True,
        )
    return fig
