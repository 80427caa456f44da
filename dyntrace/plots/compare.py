"""Several runs overlaid: loss curves and per-layer statistics by depth (effective step sizes
of several runs: :func:`dyntrace.plots.steps.plot_step_sizes_compare`).

Each function is ``plot_compare_<subject>(runs, /, *, labels=None, ax=None, ...) -> Figure``;
one colour per run (the palette, in the order given). Runs that lack the data are left out
and named in the title; if none has it, MissingDataError.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from dyntrace.analysis import decimate, ewma, gradient_flow
from dyntrace.errors import MissingDataError
from dyntrace.plots.data import layer_stat
from dyntrace.plots.layout import legend, log_if_wide, single, step_label
from dyntrace.plots.loss import auto_beta
from dyntrace.plots.theme import series_color

__all__ = [
    "run_labels",
    "plot_compare_loss",
    "plot_compare_activation_std",
    "plot_compare_gradient_norms",
]


def run_labels(runs, labels=None) -> list[str]:
    """``labels`` checked against ``runs``, or the files' stems (with their folder if two clash)."""
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(runs):
            raise ValueError(f"labels: {len(labels)} given for {len(runs)} runs")
        return [str(x) for x in labels]
    stems = [os.path.splitext(os.path.basename(r.path))[0] for r in runs]
    if len(set(stems)) < len(stems):
        stems = [
            os.path.join(os.path.basename(os.path.dirname(os.path.abspath(r.path))), s)
            for r, s in zip(runs, stems)
        ]
    return stems


def _each(runs, labels, read):
    """[(index, label, data)] of the runs ``read`` succeeds on, and the labels it failed on."""
    have, lacking, errors = [], [], []
    for i, (run, label) in enumerate(zip(runs, run_labels(runs, labels))):
        try:
            have.append((i, label, read(run)))
        except MissingDataError as exc:
            lacking.append(label)
            errors.append(str(exc))
    if not have:
        raise MissingDataError("; ".join(errors))
    return have, lacking


def _title(ax, text, lacking):
    ax.set_title(text + (f"\n(no data in: {', '.join(lacking)})" if lacking else ""))


def plot_compare_loss(
    runs, /, *, labels=None, colors=None, ax=None, beta: float | None = None, max_points: int = 3000
):
    """Training loss of each run: per step (faint) and bias-corrected EWMA (solid), and
    ``val_loss`` (dashed, markers) where logged. One colour per run (``colors``, default the
    palette in order); log y when it spans decades. ``beta``: EWMA factor (default: about 1 %
    of the longest run)."""

    def read(run):
        if "loss" not in run.scalar_names:
            raise MissingDataError(f"{run.path}: no scalar 'loss'; log it every step with rec.log(loss=...)")
        val = run.scalar("val_loss") if "val_loss" in run.scalar_names else None
        return run.scalar("loss"), val

    have, lacking = _each(runs, labels, read)
    beta = auto_beta(max(len(d[0][1]) for _, _, d in have)) if beta is None else beta
    with single(ax, figsize=(8, 4.6)) as (fig, ax, owns):
        smooth_all = []
        for i, label, ((steps, loss), val) in have:
            color = colors[i] if colors is not None else series_color(i)
            s, v = decimate(steps, loss, max_points)
            ax.plot(s, v, color=color, alpha=0.2, lw=0.7, gid=f"{label}:raw")
            smooth = ewma(loss, beta)
            s, v = decimate(steps, smooth, max_points)
            ax.plot(s, v, color=color, lw=2.0, label=label, gid=f"{label}:ewma")
            smooth_all.append(smooth)
            if val is not None:
                ax.plot(
                    val[0],
                    val[1],
                    color=color,
                    ls="--",
                    marker="o",
                    ms=3,
                    lw=1.2,
                    label=f"{label} (validation loss)",
                    gid=f"{label}:val",
                )
        log_if_wide(ax, np.concatenate(smooth_all))
        ax.set_ylabel("loss")
        step_label(ax)
        _title(ax, f"Training loss (faint: per step; solid: EWMA β={beta:g}, bias-corrected)", lacking)
        legend(ax, owns=owns)
    return fig


def _late(values, fraction=0.1):
    """Median over the last ``fraction`` of the records, per column (robust to noisy records)."""
    values = np.asarray(values, dtype=np.float64)
    k = max(1, int(round(len(values) * fraction)))
    with warnings.catch_warnings():  # a layer with no finite value stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values[-k:], axis=0)


def _by_depth(ax, owns, have, lacking, *, ylabel, title):
    for i, label, (names, value) in have:
        depth = np.arange(1, len(names) + 1)
        ax.plot(depth, value, color=series_color(i), marker="o", ms=4, lw=1.6, label=label, gid=label)
    log_if_wide(ax, np.concatenate([v for _, _, (_, v) in have]), decades=1.0)
    longest = max(have, key=lambda h: len(h[2][0]))[2][0]
    if len(longest) <= 12:
        ax.set_xticks(np.arange(1, len(longest) + 1))
    ax.set_xlabel("layer, input side → output side (1 = first)")
    ax.set_ylabel(ylabel)
    _title(ax, title, lacking)
    legend(ax, owns=owns)


def plot_compare_activation_std(runs, /, *, labels=None, ax=None, last: float = 0.1):
    """Standard deviation of each layer's outputs by depth, one line per run: the median over
    the last ``last`` fraction of the records (the end of training)."""

    def read(run):
        _, names, std = layer_stat(run, "activations", "std")
        return names, _late(std, last)

    have, lacking = _each(runs, labels, read)
    with single(ax) as (fig, ax, owns):
        _by_depth(
            ax,
            owns,
            have,
            lacking,
            ylabel="std of layer output",
            title=f"Activation std by layer (median of the last {last:.0%} of records)",
        )
    return fig


def plot_compare_gradient_norms(runs, /, *, labels=None, ax=None, last: float = 0.1):
    """Gradient norm of each layer (parameters grouped by module) by depth, one line per run:
    the median over the last ``last`` fraction of the records."""

    def read(run):
        _, names, norms = gradient_flow(run)
        return names, _late(norms, last)

    have, lacking = _each(runs, labels, read)
    with single(ax) as (fig, ax, owns):
        _by_depth(
            ax,
            owns,
            have,
            lacking,
            ylabel="gradient norm ‖g‖ of the layer",
            title=f"Gradient norm by layer (median of the last {last:.0%} of records)",
        )
    return fig
