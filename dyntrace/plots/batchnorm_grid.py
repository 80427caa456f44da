"""BatchNorm vs none across weight-init scales: the book's grid of accuracy curves (one panel
per scale, both runs in it) and the final accuracy against the scale."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, panels, plain_name, single
from dyntrace.plots.theme import NEUTRAL, method_color

__all__ = ["plot_batchnorm_grid", "plot_batchnorm_by_scale", "runs_by_scale"]

_NAMES = {
    "none": "no normalisation",
    "batch": "BatchNorm",
    "layer": "LayerNorm",
    "group": "GroupNorm",
    "instance": "InstanceNorm",
    "weight": "weight norm",
}


def _scale(config: dict) -> float:
    """The weight-init scale of a run: its init's ``std`` (or ``a``, ``gain``) option."""
    options = config.get("init_options") or {}
    for key in ("std", "a", "gain", "value"):
        if key in options:
            return float(options[key])
    raise ValueError(f"run config has no init scale (init_options {options!r})")


def runs_by_scale(runs) -> tuple[np.ndarray, dict]:
    """Group runs by init scale and normalisation, from their stored configs.

    ``runs``: a sequence (or the values of a mapping) of runs written by ``dyntrace.train``.
    Returns (scales, descending (S,); {norm: [run or None for each scale]}).
    """
    runs = list(runs.values()) if isinstance(runs, dict) else list(runs)
    table = defaultdict(dict)
    for run in runs:
        config = run.config
        table[config.get("norm", "none")][_scale(config)] = run
    scales = np.array(sorted({s for by in table.values() for s in by}, reverse=True))
    order = sorted(table, key=lambda n: (n == "none", n))  # normalised runs first, "none" last
    return scales, {norm: [table[norm].get(s) for s in scales] for norm in order}


def _curve(run, metric):
    if metric not in run.scalar_names:
        raise missing(
            run, f"scalar {metric!r}", "dyntrace.train logs train_accuracy and val_accuracy after every epoch"
        )
    steps, values = run.scalar(metric)
    return steps, values


def _style(k: int, norm: str):
    """The normalisation's fixed colour (BatchNorm blue, none black; see theme.METHOD_COLORS)."""
    color = method_color("none" if norm == "none" else _NAMES.get(norm, norm), fallback=k)
    return dict(color=color, ls="-" if norm != "none" else "--", lw=1.6)


def plot_batchnorm_grid(
    runs, /, *, ax=None, metric: str = "train_accuracy", ncols: int = 4, chance: float | None = 0.1
):
    """One panel per init scale (largest first), each with the ``metric`` curve of every
    normalisation over epochs (solid: normalised, dashed: none), as the book's 4 × 4 figure.

    ``runs``: runs of ``dyntrace.train`` that differ in ``init_options`` and ``norm``;
    ``chance``: a grey line at the chance level (None: none). ``ax``: None, an Axes (split
    into panels) or a sequence of Axes.
    """
    scales, by_norm = runs_by_scale(runs)
    with panels(ax, len(scales), ncols=ncols, panel_size=(2.6, 2.0), sharex=True, sharey=True) as (
        fig,
        axes,
        owns,
    ):
        handles = {}
        for i, (scale, a) in enumerate(zip(scales, axes)):
            if chance is not None:
                a.axhline(chance, color=NEUTRAL, lw=0.8, ls=":")
            for k, (norm, row) in enumerate(by_norm.items()):
                run = row[i]
                if run is None:
                    continue
                steps, values = _curve(run, metric)
                epochs = np.arange(1, len(values) + 1)
                (line,) = a.plot(epochs, values, **_style(k, norm), gid=f"{norm} {scale:g}")
                handles.setdefault(norm, line)
            a.set_title(f"W ~ N(0, {scale:.2g}²)", fontsize="small")
            a.set_ylim(-0.03, 1.03)
            a.tick_params(labelsize="x-small")
        for a in axes[-ncols:]:
            a.set_xlabel("epoch", fontsize="small")
        for a in axes[::ncols]:
            a.set_ylabel(plain_name(metric), fontsize="small")
        if owns:
            legend(
                axes[0], owns=True, handles=list(handles.values()), labels=[_NAMES.get(n, n) for n in handles]
            )
            fig.suptitle(f"{plain_name(metric).capitalize()} by weight-init scale")
    return fig


def plot_batchnorm_by_scale(runs, /, *, ax=None, metric: str = "train_accuracy", chance: float | None = 0.1):
    """The last ``metric`` value of every run against its init scale (log x), one line per
    normalisation: where each learns."""
    scales, by_norm = runs_by_scale(runs)
    with single(ax, figsize=(5.5, 3.8)) as (fig, ax, owns):
        if chance is not None:
            ax.axhline(chance, color=NEUTRAL, lw=0.9, ls=":", label="chance")
        for k, (norm, row) in enumerate(by_norm.items()):
            final = np.array([_curve(r, metric)[1][-1] if r is not None else np.nan for r in row])
            ax.plot(
                scales, final, marker="o", ms=4, **_style(k, norm), label=_NAMES.get(norm, norm), gid=norm
            )
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("weight-init std (log scale)")
        ax.set_ylabel(plain_name(metric))
        ax.set_title(f"Final {plain_name(metric)} by init scale")
        legend(ax, owns=owns)
    return fig
