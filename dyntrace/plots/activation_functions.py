"""Activation functions and their derivatives, read back from a recorded "sweep" run.

A sweep run (see ``dyntrace/gallery/activation_functions.py``) gives each activation f a
learnable input ``<name>.x`` (the sweep, one value per point) and learnable output weights
``<name>.w`` (all 1), and takes one SGD step with learning rate η on L = Σ w·f(x). Autograd's
gradients are ∂L/∂x = w·f'(x) = f'(x) and ∂L/∂w = f(x), so the parameter trajectory kept by
``Recorder(trajectory=1)`` holds both curves: f'(x) = (x₀ − x₁)/η and f(x) = (w₀ − w₁)/η.
"""

from __future__ import annotations

import numpy as np

from dyntrace.errors import MissingDataError
from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, panels, single
from dyntrace.plots.theme import NEUTRAL, PALETTE, method_color

__all__ = ["plot_activation_functions", "plot_activation_derivatives", "sweep_curves"]

_F_COLOR, _DF_COLOR = PALETTE[0], PALETTE[3]


def _curves(names, sizes, before, after, lr: float) -> dict:
    """{branch: (x, f(x), f'(x))} from flat parameter vectors before and after one SGD step.

    ``names``/``sizes``: the flattening order of the parameters; ``before``/``after`` (D,);
    branches are the prefixes ``b`` with parameters ``b.x`` and ``b.w``. A parameter the step
    left unchanged (no gradient, e.g. a binary step's input) gives a zero derivative.
    """
    if len(names) != len(sizes):
        raise ValueError(f"{len(names)} names but {len(sizes)} sizes")
    if not lr > 0:
        raise ValueError(f"Invalid lr: {lr!r} (> 0)")
    before = np.asarray(before, dtype=np.float64)
    after = np.asarray(after, dtype=np.float64)
    if before.shape != after.shape or before.size != int(np.sum(sizes)):
        raise ValueError(
            f"flat vectors of shapes {before.shape}, {after.shape} do not hold {int(np.sum(sizes))} values"
        )
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    slices = {n: slice(offsets[i], offsets[i + 1]) for i, n in enumerate(names)}
    out = {}
    for name in names:
        branch, _, leaf = name.rpartition(".")
        if leaf != "x" or f"{branch}.w" not in slices:
            continue
        sx, sw = slices[name], slices[f"{branch}.w"]
        x = before[sx]
        out[branch] = (x, (before[sw] - after[sw]) / lr, (before[sx] - after[sx]) / lr)
    return out


def sweep_curves(run) -> dict:
    """{branch: (x, f(x), f'(x))} of a sweep run, from its trajectory's first two snapshots.

    Sizes come from the 'weights' probe's element counts, the learning rate from the logged
    ``lr/0``. Raises MissingDataError without a trajectory, the weights probe or ``lr/0``.
    """
    steps, names, flat = run.trajectory()
    if len(steps) < 2:
        raise missing(
            run,
            "second trajectory snapshot",
            "a sweep run keeps the parameters before and after its step (trajectory=1)",
        )
    _, count = run.field("weights", "count")
    sizes = np.asarray(count[0], dtype=np.int64)
    weight_names = run.names("weights")
    if weight_names != names:
        raise MissingDataError(f"{run.path}: weights and trajectory name different parameters")
    _, lr = run.scalar("lr/0")
    curves = _curves(names, sizes, flat[0], flat[1], float(lr[0]))
    if not curves:
        raise missing(
            run,
            "sweep parameters (<name>.x and <name>.w)",
            "record a sweep as in the activation_functions gallery entry",
        )
    return curves


def _draw(ax, x, f, df, title):
    finite = np.isfinite(f) & np.isfinite(df)
    ax.axhline(0, color=NEUTRAL, lw=0.8)
    ax.axvline(0, color=NEUTRAL, lw=0.8)
    ax.plot(x[finite], f[finite], color=_F_COLOR, lw=1.8, label="f(x)")
    ax.plot(x[finite], df[finite], color=_DF_COLOR, lw=1.6, ls="--", label="f′(x) (autograd)")
    ax.set_title(title, fontsize="medium")
    ax.set_xlim(x.min(), x.max())
    lo = min(f[finite].min(), df[finite].min())
    hi = max(f[finite].max(), df[finite].max())
    pad = 0.08 * max(hi - lo, 1e-9)
    ax.set_ylim(lo - pad, hi + pad)
    ax.tick_params(labelsize="small")


def plot_activation_functions(run, /, *, ax=None, names=None, titles=None, ncols: int = 4):
    """Each swept activation f (solid) and its autograd derivative f′ (dashed), one panel each.

    ``names``: branches to draw (default: all, in recording order); ``titles``: {branch: title}.
    ``ax``: None, an Axes (split into panels) or a sequence of Axes.
    """
    curves = sweep_curves(run)
    names = list(curves) if names is None else list(names)
    unknown = [n for n in names if n not in curves]
    if unknown:
        raise MissingDataError(f"{run.path}: no swept activation {unknown[0]!r} (has: {', '.join(curves)})")
    titles = titles or {}
    with panels(ax, len(names), ncols=ncols, panel_size=(3.0, 2.4)) as (fig, axes, owns):
        for j, (name, a) in enumerate(zip(names, axes)):
            x, f, df = curves[name]
            _draw(a, x, f, df, titles.get(name, name))
            if j >= len(names) - ncols:
                a.set_xlabel("x", fontsize="small")
        if owns:
            legend(axes[0], owns=True)
            fig.suptitle("Activation functions (solid) and their derivatives (dashed)")
    return fig


_DISPLAY = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "gelu": "GELU", "elu": "ELU", "swish": "swish"}


def plot_activation_derivatives(run, /, *, ax=None, names=("sigmoid", "tanh", "relu"), marks=(0.25, 1.0)):
    """The derivatives of some swept activations overlaid, with horizontal marks at ``marks``
    (sigmoid′ peaks at 1/4, tanh′ at 1: the factor each layer multiplies the backward signal by)."""
    curves = sweep_curves(run)
    missing_names = [n for n in names if n not in curves]
    if missing_names:
        raise MissingDataError(
            f"{run.path}: no swept activation {missing_names[0]!r} (has: {', '.join(curves)})"
        )
    with single(ax, figsize=(5.5, 3.8)) as (fig, ax, owns):
        for mark in marks:
            ax.axhline(mark, color=NEUTRAL, lw=0.9, ls=":")
            ax.annotate(
                f"{mark:g}",
                (1.0, mark),
                xycoords=("axes fraction", "data"),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize="small",
                color=NEUTRAL,
            )
        for i, name in enumerate(names):
            x, _, df = curves[name]
            shown = _DISPLAY.get(name, name)
            ax.plot(
                x,
                df,
                color=method_color(shown, fallback=i),
                lw=1.8,
                label=f"{shown}′, max {np.nanmax(df):.3g}",
            )
        ax.set_xlabel("x")
        ax.set_ylabel("f′(x)")
        ax.set_xlim(min(curves[n][0].min() for n in names), max(curves[n][0].max() for n in names))
        ax.set_title("Derivatives: σ′ ≤ 1/4, tanh′ ≤ 1")
        legend(ax, owns=owns)
    return fig
