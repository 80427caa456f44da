"""Activation distributions by weight initialisation: every layer's histogram at one record
step overlaid in one panel, and each layer's spread (std) against depth for several runs."""

from __future__ import annotations

import numpy as np

from dyntrace.analysis import fraction
from dyntrace.kinds import NON_NEGATIVE as _NON_NEGATIVE
from dyntrace.plots.data import hist_rows, layer_stat, missing
from dyntrace.plots.layout import legend, log_if_wide, single
from dyntrace.plots.theme import layer_colors, series_color

__all__ = ["plot_init_histograms", "plot_init_spread", "layer_densities"]

#: module kinds whose exact zeros are a separate population (a ReLU's "off" half)


def _record_index(steps, step) -> int:
    if len(steps) == 0:
        raise ValueError("no record steps")
    return len(steps) - 1 if step is None else int(np.argmin(np.abs(np.asarray(steps) - step)))


def layer_densities(edges, counts, sampled, zeros=None, count=None):
    """Per-layer histogram densities, exact zeros optionally taken out.

    ``edges`` (L, B+1), ``counts`` (L, B) in-range counts of a sample of ``sampled`` (L,)
    values; ``zeros`` (L,) exact zeros among ``count`` (L,) values (None: keep them).
    Returns (density (L, B): fraction of the sampled values per unit of x, so each curve
    integrates to the fraction it shows; zero_fraction (L,): zeros / count, NaN if not given).
    Zeros are removed from the bin holding 0, scaled to the sample (exact when the whole
    tensor was binned).
    """
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.array(counts, dtype=np.float64)
    sampled = np.asarray(sampled, dtype=np.float64)
    zero_fraction = np.full(len(counts), np.nan)
    if zeros is not None:
        zero_fraction = fraction(zeros, count)
        for j in range(len(counts)):
            holds = np.flatnonzero((edges[j, :-1] <= 0) & (edges[j, 1:] > 0))
            if holds.size and np.isfinite(zero_fraction[j]):
                b = holds[0]
                counts[j, b] = max(counts[j, b] - zero_fraction[j] * sampled[j], 0.0)
    widths = np.diff(edges, axis=1)
    return fraction(counts, sampled[:, None] * widths), zero_fraction


def _span_text(values) -> str:
    lo, hi = np.nanmin(values), np.nanmax(values)
    return f"{lo:.0f} %" if round(lo) == round(hi) else f"{lo:.0f}–{hi:.0f} %"


def _layers_text(indices) -> str:
    k = [i + 1 for i in indices]
    return (
        f"layer {k[0]}"
        if len(k) == 1
        else (
            f"layers {k[0]}–{k[-1]}"
            if k == list(range(k[0], k[-1] + 1))
            else "layers " + ", ".join(map(str, k))
        )
    )


def plot_init_histograms(
    run, /, *, ax=None, step=None, drop_zeros: bool = True, title=None, key: bool = True
):
    """Every layer's output histogram at one record step, overlaid (one colour per layer).

    y: density (fraction of values per unit of output), so layers with different bin edges
    compare. ``drop_zeros``: leave a ReLU's exact zeros out (their share is reported), else
    the spike at 0 dwarfs the rest. Layers whose binned range is under a tenth of the widest
    one's (a collapsed layer) may run off the top; that is reported too. ``key``: a legend of
    the layers (with those notes); False: no legend, the notes as a text in the upper right
    (for a grid of panels sharing one layer legend). ``step``: the record nearest it
    (default: the last). Raises MissingDataError without the 'activations' probe.
    """
    names = run.names("activations")
    steps = run.steps("activations")
    if len(steps) == 0:
        raise missing(run, "activation records yet", "the 'activations' probe writes one per record step")
    i = _record_index(steps, step)
    cols = list(range(len(names)))
    counts = hist_rows(run, "activations", "hist", i, i + 1, cols)[0, :, 1:-1]
    sampled = hist_rows(run, "activations", "hist_count", i, i + 1, cols)[0]
    zeros = hist_rows(run, "activations", "zero", i, i + 1, cols)[0]
    count = hist_rows(run, "activations", "count", i, i + 1, cols)[0]
    edges = np.asarray(run.field("activations", "edges")[1], dtype=np.float64)
    kinds = run.kinds("activations")
    drop = np.array([drop_zeros and kinds.get(n) in _NON_NEGATIVE for n in names])
    density, zero_fraction = layer_densities(edges, counts, sampled, np.where(drop, zeros, 0), count)
    colors = layer_colors(len(names))
    span = edges[:, -1] - edges[:, 0]
    broad = span >= 0.1 * span.max()
    peak = np.nanmax(np.where(broad[:, None], density, np.nan))
    top = 1.15 * peak if np.isfinite(peak) and peak > 0 else 1.0
    off_scale = [j for j in range(len(names)) if np.nanmax(density[j]) > top]
    used = [(j, np.flatnonzero(counts[j] > 0)) for j in range(len(names))]
    used = [(j, u) for j, u in used if u.size]
    left = min(edges[j, u[0]] for j, u in used) if used else edges[:, 0].min()
    right = max(edges[j, u[-1] + 1] for j, u in used) if used else edges[:, -1].max()
    with single(ax, figsize=(5.0, 3.6)) as (fig, ax, owns):
        handles, labels = [], []
        for j, name in enumerate(names):
            handles.append(ax.stairs(density[j], edges[j], color=colors[j], lw=1.6, gid=name))
            label = f"layer {j + 1}"
            if drop[j]:
                label += f" ({100 * zero_fraction[j]:.0f} % zeros)"
            if j in off_scale:
                label += " ↑ off scale"
            labels.append(label)
        ax.set_ylim(0, top)
        ax.set_xlim(left, right)
        ax.set_xlabel("output value" + (" (exact zeros left out)" if drop.any() else ""))
        ax.set_ylabel("density (fraction per unit)")
        ax.set_title(title or f"Layer outputs at step {int(steps[i])}")
        if key:
            legend(ax, owns=owns, handles=handles, labels=labels)
        else:
            notes = []
            if drop.any():
                notes.append(f"exact zeros: {_span_text(100 * zero_fraction[drop])}")
            if off_scale:
                notes.append(f"{_layers_text(off_scale)}: off scale ↑\n(collapsed near 0)")
            if notes:
                ax.text(
                    0.97,
                    0.95,
                    "\n".join(notes),
                    transform=ax.transAxes,
                    ha="right",
                    va="top",
                    fontsize="small",
                    bbox=dict(boxstyle="round", facecolor="white", edgecolor="0.8", alpha=0.9),
                )
    return fig


def plot_init_spread(runs, /, *, ax=None, labels=None, stat: str = "std", step=None):
    """Each layer's output spread (``stat``: std, or mean) against depth, one line per run.

    ``runs``: a mapping {label: run} or a sequence (``labels`` name them). Log y when the
    values span decades (a collapsing init). ``step``: the record nearest it (default: last).
    """
    if isinstance(runs, dict):
        labels = list(runs) if labels is None else list(labels)
        runs = list(runs.values())
    else:
        runs = list(runs)
        labels = [f"run {k + 1}" for k in range(len(runs))] if labels is None else list(labels)
    if len(labels) != len(runs):
        raise ValueError(f"labels: {len(labels)} for {len(runs)} runs")
    with single(ax, figsize=(5.0, 3.6)) as (fig, ax, owns):
        values = []
        for k, (label, run) in enumerate(zip(labels, runs)):
            steps, names, v = layer_stat(run, "activations", stat)
            row = v[_record_index(steps, step)]
            values.append(row)
            depth = np.arange(1, len(names) + 1)
            ax.plot(depth, row, color=series_color(k), marker="o", ms=4, lw=1.6, label=label, gid=label)
        log_if_wide(ax, np.concatenate(values), decades=1.0)
        ax.set_xticks(np.arange(1, max(len(v) for v in values) + 1))
        ax.set_xlabel("layer (1 = input side)")
        ax.set_ylabel(f"{stat} of layer output")
        ax.set_title(f"Output {stat} by depth")
        legend(ax, owns=owns)
    return fig
