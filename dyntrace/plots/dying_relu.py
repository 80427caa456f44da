"""Dying ReLU panels, from the scalars a run logs on the whole training set (see
:mod:`dyntrace.gallery.dying_relu`): ``negative_units/layer{k}`` (share of units whose
pre-activation is ≤ 0 on every input), ``grad_negative/layer{k}`` and ``grad_positive/layer{k}``
(mean gradient norm of a unit's incoming weights over those units and over the others),
``still_negative/layer{k}`` (of the units negative at an early step, the share that still are)
and ``train_loss``.
"""

from __future__ import annotations

import re

import numpy as np

from dyntrace.plots.compare import run_labels
from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, single, step_label
from dyntrace.plots.theme import NEUTRAL, layer_colors, method_color

__all__ = [
    "plot_negative_units",
    "plot_full_loss",
    "plot_negative_gradient",
    "plot_recovery",
    "plot_dead_share_by_seed",
    "run_color",
    "negative_share",
    "final_dead",
    "gradient_ratio",
]

_LAYER = re.compile(r"^negative_units/layer(\d+)$")
#: line style by learning rate: the too-high rate solid, the safe one dotted
_STYLES = ("-", ":", "--", "-.")


def run_color(run):
    """The activation's fixed colour (:func:`dyntrace.plots.theme.method_color`)."""
    return method_color(run.config.get("activation", ""))


def _layers(run) -> list[int]:
    found = sorted(int(m.group(1)) for n in run.scalar_names if (m := _LAYER.match(n)))
    if not found:
        raise missing(
            run, "scalar 'negative_units/layer1'", "the dying-ReLU entry logs it on the whole training set"
        )
    return found


def _scalar(run, name):
    if name not in run.scalar_names:
        raise missing(run, f"scalar {name!r}", "the dying-ReLU entry logs it on the whole training set")
    return run.scalar(name)


def negative_share(run, layers=None):
    """(steps (R,), share (R, layers)): the share of each layer's units negative on every input."""
    layers = _layers(run) if layers is None else layers
    columns = [_scalar(run, f"negative_units/layer{k}") for k in layers]
    return columns[0][0], np.stack([v for _, v in columns], axis=1)


def final_dead(run, layers=(2, 3)) -> np.ndarray:
    """The share of units negative on every input at the last record, per layer of ``layers``."""
    return negative_share(run, layers)[1][-1]


def gradient_ratio(run, layers=(2, 3)):
    """(steps, ratio): the mean gradient norm of a unit's incoming weights over the units
    negative on every input divided by the same over the other units, each pooled over
    ``layers`` (layers of equal width: weighted by their share of such units); NaN where no
    unit is negative."""
    steps, share = negative_share(run, layers)
    neg = np.stack([_scalar(run, f"grad_negative/layer{k}")[1] for k in layers], axis=1)
    pos = np.stack([_scalar(run, f"grad_positive/layer{k}")[1] for k in layers], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        num = np.nansum(neg * share, axis=1) / share.sum(axis=1)
        den = np.nansum(pos * (1 - share), axis=1) / (1 - share).sum(axis=1)
        ratio = np.where(share.sum(axis=1) > 0, num / den, np.nan)
    return steps, ratio


def plot_negative_units(runs, /, *, labels=None, ax=None):
    """Share of each layer's units whose pre-activation is ≤ 0 on every training input, over
    training: one colour per layer, one line style per run (first solid, then dotted …)."""
    from matplotlib.lines import Line2D

    labels = run_labels(runs, labels)
    with single(ax) as (fig, ax, owns):
        n = max(len(_layers(r)) for r in runs)
        colors = layer_colors(n)
        handles, names = [], []
        for j, (run, label) in enumerate(zip(runs, labels)):
            style = _STYLES[j % len(_STYLES)]
            for k in _layers(run):
                steps, share = _scalar(run, f"negative_units/layer{k}")
                ax.plot(
                    steps,
                    share,
                    color=colors[k - 1],
                    ls=style,
                    lw=2.0 if j == 0 else 1.6,
                    gid=f"{label}:layer{k}",
                )
            if len(runs) > 1:  # one key entry per run: its line style
                handles.append(Line2D([], [], color="k", ls=style, lw=1.6))
                names.append(label)
        handles += [Line2D([], [], color=colors[k], lw=2.0) for k in range(n)]
        names += [f"layer {k + 1}" for k in range(n)]
        ax.set_ylim(-0.02, 0.6)
        ax.set_ylabel("share of the layer's units")
        step_label(ax)
        ax.set_title("Units with pre-activation ≤ 0 on every input")
        legend(ax, owns=owns, handles=handles, labels=names)
    return fig


def plot_full_loss(runs, /, *, labels=None, ax=None):
    """The loss on the whole training set at each record step (``train_loss``), one colour per
    activation, one line style per learning rate; log y."""
    labels = run_labels(runs, labels)
    with single(ax) as (fig, ax, owns):
        rates = sorted({r.config.get("lr") for r in runs}, reverse=True)
        for j, (run, label) in enumerate(zip(runs, labels)):
            steps, loss = _scalar(run, "train_loss")
            style = _STYLES[rates.index(run.config.get("lr")) % len(_STYLES)]
            # the first run wide underneath: a later run on the same values stays visible on top
            ax.plot(
                steps,
                loss,
                color=run_color(run),
                ls=style,
                lw=4.0 if j == 0 else 1.8,
                alpha=0.6 if j == 0 else 1.0,
                label=label,
                gid=label,
            )
            if j == 0 and len(loss) > 1:
                peak = int(np.nanargmax(loss))
                if loss[peak] > 2 * loss[0]:
                    ax.annotate(
                        f"overshoot: × {loss[peak] / loss[0]:.0f}",
                        (steps[peak], loss[peak]),
                        xytext=(12, -4),
                        textcoords="offset points",
                        fontsize="small",
                        va="top",
                    )
        ax.set_yscale("log")
        ax.set_ylabel("loss on the whole training set (MSE)")
        step_label(ax)
        ax.set_title("Training loss: the too-high rate overshoots")
        legend(ax, owns=owns)
    return fig


def plot_negative_gradient(runs, /, *, labels=None, layers=None, ax=None):
    """Gradient reaching the units negative on every input, relative to the other units': the
    mean norm of ∂L/∂W's rows over the negative units of ``layers`` (all by default) divided
    by that over the others, one line per run. A dead ReLU unit's gradient is exactly 0."""
    labels = run_labels(runs, labels)
    with single(ax) as (fig, ax, owns):
        for run, label in zip(runs, labels):
            for k in layers or _layers(run):
                _scalar(run, f"grad_negative/layer{k}")
            steps, ratio = gradient_ratio(run, tuple(layers or _layers(run)))
            exact_zero = np.nanmax(ratio) == 0 if np.isfinite(ratio).any() else False
            ax.plot(
                steps,
                ratio,
                color=run_color(run),
                lw=2.0,
                marker="o" if exact_zero else None,
                ms=2.5,
                label=label + (" (exactly 0)" if exact_zero else ""),
                gid=label,
            )
        ax.axhline(0, color=NEUTRAL, lw=0.8)
        which = "layers " + "–".join(str(k) for k in (layers[0], layers[-1])) if layers else "all layers"
        ax.set_ylabel(f"gradient per unit: negative ÷ live units ({which})")
        step_label(ax)
        ax.set_title("Gradient reaching the negative units")
        legend(ax, owns=owns)
    return fig


def plot_recovery(runs, /, *, labels=None, layers=None, early: int = 20, ax=None):
    """Of the units negative on every input at step ``early``, the share still negative, per
    layer (line style) and run (the activation's colour; the first run drawn wide underneath,
    so a later run on the same values stays visible on top of it)."""
    labels = run_labels(runs, labels)
    with single(ax) as (fig, ax, owns):
        for j, (run, label) in enumerate(zip(runs, labels)):
            for i, k in enumerate(layers or _layers(run)):
                steps, share = _scalar(run, f"still_negative/layer{k}")
                ax.plot(
                    steps,
                    share,
                    color=run_color(run),
                    ls=_STYLES[i % len(_STYLES)],
                    lw=4.5 if j == 0 else 1.8,
                    alpha=0.6 if j == 0 else 1.0,
                    zorder=2 + j,
                    label=f"{label}, layer {k}",
                    gid=f"{label}:layer{k}",
                )
        ax.set_ylim(0.5, 1.02)
        ax.set_ylabel("share still negative everywhere")
        step_label(ax)
        ax.set_title(f"Recovery? Units negative at step {early} that still are")
        legend(ax, owns=owns)
    return fig


def plot_dead_share_by_seed(
    groups: dict, /, *, layers=(2, 3), band=None, band_label: str = "reference", ax=None
):
    """Share of dead units at the end of each run, per layer, for groups of runs that differ
    only in their seed (``{group label: [runs]}``): one dot per run and layer, the groups side
    by side, ``band`` = (low, high) shaded as a reference."""
    with single(ax) as (fig, ax, owns):
        colors = layer_colors(max(layers))
        offsets = np.linspace(-0.12, 0.12, len(layers))
        if band is not None:
            ax.axhspan(*band, color=NEUTRAL, alpha=0.25, lw=0, label=band_label)
        for g, (group, group_runs) in enumerate(groups.items()):
            values = np.array([final_dead(run, tuple(layers)) for run in group_runs])  # [runs, layers]
            for i, k in enumerate(layers):
                x = g + offsets[i] + np.linspace(-0.05, 0.05, len(group_runs))
                ax.plot(
                    x,
                    values[:, i],
                    "o",
                    color=colors[k - 1],
                    ms=7,
                    mec="k",
                    mew=0.5,
                    label=f"layer {k}" if g == 0 else None,
                    gid=f"{group}:layer{k}",
                )
        ax.set_xticks(range(len(groups)), list(groups))
        ax.set_xlim(-0.5, len(groups) - 0.5)
        ax.set_ylim(-0.02, 0.6)
        ax.set_ylabel("share of the layer's units dead at the end")
        ax.set_xlabel(f"ReLU, learning rate ({len(next(iter(groups.values())))} seeds each)")
        ax.set_title("Seeds: dead share at the end")
        legend(ax, owns=owns)
    return fig
