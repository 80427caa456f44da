"""Effective step sizes from the 'steps' probe: η_eff = |Δθ|/|g| per coordinate over training,
per layer and across optimizers, and the update-to-weight ratio ‖Δθ‖/‖θ‖.

Plain SGD draws one horizontal band at η_eff = lr; momentum, AdaGrad, RMSprop and Adam spread
it over decades (Adam's η_eff ≈ lr/|g| early on).
"""

from __future__ import annotations

import numpy as np

from dyntrace.analysis import hist_quantiles
from dyntrace.errors import MissingDataError
from dyntrace.plots.data import hist_windows, missing
from dyntrace.plots.heatmap import hist_heatmaps, select
from dyntrace.plots.layout import layer_key, legend, log_if_wide, single, step_label
from dyntrace.plots.theme import NEUTRAL, layer_colors, series_color

__all__ = [
    "plot_step_sizes",
    "plot_step_sizes_compare",
    "plot_update_ratios",
    "step_size_quantiles",
    "plot_coordinate_quantiles",
]

_HOW = "record it with Recorder(..., probes=[..., 'steps'])"


def _require(run, probe: str = "steps"):
    if probe not in run.probes or len(run.steps(probe)) == 0:
        raise missing(run, f"{probe!r} probe records", _HOW)


def _titles(run, names):
    order = run.names("steps")
    return [f"{order.index(n) + 1}: {n}" for n in names]


def plot_step_sizes(run, /, *, ax=None, params=None, max_params: int = 8, max_windows: int = 400):
    """Distribution of the effective step size η_eff = |Δθ|/|g| of each parameter over
    training: one time × η_eff heatmap per parameter tensor (log y axis, log colour scale),
    the colour the fraction of the coordinates with g ≠ 0 in each bin.

    ``params``: names or indices (default: at most ``max_params``, evenly spread); ``ax``: an
    Axes (split into panels) or one Axes per panel. Raises MissingDataError without the
    'steps' probe.
    """
    _require(run)
    names = select(run, "steps", params, max_params)
    total = len(run.names("steps"))
    title = "Effective step size η_eff = |Δθ|/|g| over training" + (
        f" ({len(names)} of {total} parameters)" if len(names) < total else ""
    )
    return hist_heatmaps(
        run,
        "steps",
        names,
        ax=ax,
        title=title,
        ylabel="η_eff",
        max_windows=max_windows,
        panel_titles=_titles(run, names),
    )


def step_size_quantiles(run, /, *, params=None, q=(0.25, 0.5, 0.75), max_windows: int = 400):
    """(steps (W,), quantiles of η_eff (W, len(q))) pooled over ``params`` (default: all).

    From the probe's log10 histograms: the counts of the chosen tensors are added per record
    (windows of records when there are more than ``max_windows``) and the quantiles
    interpolated in log10 η_eff, so they are quantiles over coordinates with g ≠ 0 whose
    η_eff lies in the histogram's range (``steps`` decades option).
    """
    _require(run)
    names = run.names("steps") if params is None else select(run, "steps", params, len(run.names("steps")))
    windows = hist_windows(run, "steps", names, max_windows=max_windows)
    edges = windows.edges[0]
    if not np.allclose(windows.edges, edges):
        raise ValueError(f"{run.path}: the 'steps' histograms of {names} have different bins")
    pooled = windows.counts.sum(axis=1)  # (W, B): every chosen tensor's coordinates together
    return windows.start, 10.0 ** hist_quantiles(edges, pooled, list(q))


def plot_step_sizes_compare(runs, /, *, labels=None, ax=None, params=None, max_windows: int = 400):
    """η_eff over training for several runs (e.g. one per optimizer): the median over the
    coordinates of all parameters (or ``params``) per record, the interquartile range shaded;
    log y axis. ``labels``: one per run (default: each run's optimizer class).

    Runs without 'steps' records are left out and named in the title; if none has them,
    MissingDataError.
    """
    runs = list(runs)
    if labels is not None and len(list(labels)) != len(runs):
        raise ValueError(f"labels: {len(list(labels))} given for {len(runs)} runs")
    labels = list(labels) if labels is not None else [_optimizer_label(r) for r in runs]
    have, lacking, errors = [], [], []
    for i, (run, label) in enumerate(zip(runs, labels)):
        try:
            have.append((i, label, step_size_quantiles(run, params=params, max_windows=max_windows)))
        except MissingDataError as exc:
            lacking.append(label)
            errors.append(str(exc))
    if not have:
        raise MissingDataError("; ".join(errors) if errors else "no runs given")
    with single(ax, figsize=(8, 4.6)) as (fig, ax, owns):
        for i, label, (steps, q) in have:
            color = series_color(i)
            ax.fill_between(steps, q[:, 0], q[:, 2], color=color, alpha=0.18, lw=0, gid=f"{label}:iqr")
            ax.plot(steps, q[:, 1], color=color, lw=1.8, label=label, gid=f"{label}:median")
        ax.set_yscale("log")
        log_if_wide(ax, np.concatenate([s for _, _, (s, _) in have]), axis="x", decades=2.0)
        ax.set_ylabel("η_eff = |Δθ| / |g|")
        step_label(ax)
        title = "Effective step size by run: median over coordinates (band: 25–75 %)"
        ax.set_title(title + (f"\n(no 'steps' data in: {', '.join(lacking)})" if lacking else ""))
        legend(ax, owns=owns)
    return fig


def plot_update_ratios(run, /, *, ax=None, params=None, max_params: int = 12, guide: float | None = 1e-3):
    """Update-to-weight ratio ‖Δθ‖/‖θ‖ of each parameter tensor over training (log y), with
    a guide line at ``guide`` (the rule of thumb: about 1e-3; None for none). Lookahead's
    sync steps, where recorded, are marked with faint vertical lines.

    Raises MissingDataError without the 'steps' probe.
    """
    _require(run)
    names = select(run, "steps", params, max_params)
    order = run.names("steps")
    colors = layer_colors(len(order))
    steps, ratio = run.field("steps", "update_ratio")
    with single(ax) as (fig, ax, owns):
        handles, labels = [], []
        for name in names:
            j = order.index(name)
            (line,) = ax.plot(steps, ratio[:, j], color=colors[j], lw=1.4, label=f"{j + 1}: {name}", gid=name)
            handles.append(line)
            labels.append(line.get_label())
        finite = ratio[:, [order.index(n) for n in names]]
        finite = finite[np.isfinite(finite) & (finite > 0)]
        if finite.size:
            ax.set_yscale("log")
        if guide is not None:
            ax.axhline(guide, color=NEUTRAL, ls="--", lw=1.0, gid="guide")
        if "synced" in run.scalar_names:
            sync_steps, synced = run.scalar("synced")
            for s in sync_steps[synced > 0.5]:
                ax.axvline(s, color=NEUTRAL, alpha=0.35, lw=0.8, gid="synced")
        ax.set_ylabel("‖Δθ‖ / ‖θ‖")
        step_label(ax)
        ax.set_title(
            "Update-to-weight ratio per parameter" + (f" (guide: {guide:g})" if guide is not None else "")
        )
        layer_key(
            ax,
            owns=owns,
            handles=handles,
            labels=labels,
            colors=[colors[order.index(n)] for n in names],
            n_total=len(order),
            title="parameter",
        )
    return fig


def _optimizer_label(run) -> str:
    """The run's optimizer class (and the first group's lr), else the file's name."""
    optimizer = run.meta.get("optimizer")
    if isinstance(optimizer, dict) and optimizer.get("class"):
        groups = optimizer.get("param_groups") or [{}]
        lr = groups[0].get("lr")
        return (
            f"{optimizer['class']} (lr {lr:g})" if isinstance(lr, (int, float)) else str(optimizer["class"])
        )
    return run.path


def plot_coordinate_quantiles(run, prefix: str, /, *, ax=None, color=None, reference=None):
    """Quantiles over coordinates of a per-coordinate quantity logged as scalars
    ``{prefix}_q05``, ``_q25``, ``_q50``, ``_q75``, ``_q95`` (e.g. |Δθ| of each update, or each
    coordinate's learning rate): the median as a line, 25–75 % and 5–95 % as bands; log y.
    ``reference``: {label: value} drawn as dotted horizontal lines (e.g. the learning rate).
    """
    names = [f"{prefix}_q{q:02d}" for q in (5, 25, 50, 75, 95)]
    for name in names:
        if name not in run.scalar_names:
            raise missing(run, f"scalar {name!r}", "log the quantiles over coordinates with rec.log(...)")
    steps = run.scalar(names[0])[0]
    q = np.stack([run.scalar(n)[1] for n in names], axis=1)
    color = series_color(0) if color is None else color
    with single(ax) as (fig, ax, owns):
        ax.fill_between(steps, q[:, 0], q[:, 4], color=color, alpha=0.15, lw=0, label="5–95 %", gid="q05-q95")
        ax.fill_between(
            steps, q[:, 1], q[:, 3], color=color, alpha=0.35, lw=0, label="25–75 %", gid="q25-q75"
        )
        ax.plot(steps, q[:, 2], color=color, lw=2.0, label="median", gid="median")
        for k, (label, value) in enumerate((reference or {}).items()):
            ax.axhline(value, color="k", lw=1.0, ls=(":", "--")[k % 2], label=label, gid=f"reference:{label}")
            ax.annotate(
                label,
                (0.99, value),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize="small",
                annotation_clip=True,
            )
        ax.set_yscale("log")
        step_label(ax)
        legend(ax, owns=owns)
    return fig
