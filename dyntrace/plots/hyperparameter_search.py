"""A random hyperparameter search drawn from its runs: the best validation curves, and the
final validation accuracy against the sampled values."""

from __future__ import annotations

import numpy as np

from dyntrace.plots.data import missing
from dyntrace.plots.layout import panels, single
from dyntrace.plots.theme import PALETTE, method_color

__all__ = ["plot_best_trials", "plot_search_scatter", "final_metric"]


def final_metric(run, name: str = "val_accuracy") -> float:
    """The last logged value of scalar ``name`` (NaN if it is not finite)."""
    if name not in run.scalar_names:
        raise missing(run, f"scalar {name!r}", "train with dyntrace.train, which logs it every epoch")
    return float(run.scalar(name)[1][-1])


def _value(run, key):
    value = run.config.get(key)
    if not isinstance(value, (int, float)):
        raise missing(
            run, f"config value {key!r}", "record each trial with its hyperparameters in the config"
        )
    return float(value)


def _short(value: float) -> str:
    return f"{value:.1e}".replace("e-0", "e-").replace("e+0", "e")


def plot_search_scatter(
    runs,
    /,
    *,
    x: str = "lr",
    color: str = "l2",
    metric: str = "val_accuracy",
    ax=None,
    highlight: int = 0,
    chance: float | None = None,
    names=None,
):
    """Final ``metric`` of each trial against its config value ``x`` (log axis), coloured by the
    log10 of config value ``color``; the best ``highlight`` trials ringed; ``chance`` a dashed line.
    ``names``: display names of config keys and of the metric (e.g. {"l2": "weight decay λ"}).
    """
    names = dict(names or {})
    runs = list(runs)
    xs = np.array([_value(r, x) for r in runs])
    cs = np.array([_value(r, color) for r in runs])
    ys = np.array([final_metric(r, metric) for r in runs])
    with single(ax) as (fig, ax, owns):
        points = ax.scatter(
            xs, ys, c=np.log10(cs), cmap="viridis", s=36, edgecolors="k", linewidths=0.4, zorder=3
        )
        if highlight:
            best = np.argsort(-ys, kind="stable")[:highlight]
            ax.scatter(
                xs[best],
                ys[best],
                s=110,
                facecolors="none",
                edgecolors=PALETTE[3],
                linewidths=1.6,
                zorder=4,
                label=f"best {len(best)}",
            )
        if chance is not None:
            ax.axhline(chance, color="gray", ls="--", lw=1, label=f"chance ({chance:g})")
        ax.set_xscale("log")
        ax.set_xlabel(f"{names.get(x, x)} (log scale)")
        ax.set_ylabel(f"final {names.get(metric, metric)}")
        bar = fig.colorbar(points, ax=ax, pad=0.01)
        bar.set_label(f"log10 {names.get(color, color)}")
        ax.set_title(f"Final {names.get(metric, metric)} of each trial")
        if highlight or chance is not None:
            ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_best_trials(
    runs,
    /,
    *,
    best: int = 20,
    metric: str = "accuracy",
    ax=None,
    ncols: int = 5,
    keys=("lr", "l2"),
    names=None,
    sharey: bool = True,
):
    """The book's figure: one small panel per trial, the ``best`` trials by final validation
    ``metric``, best first; validation (solid) and training (dashed) ``metric`` per epoch,
    titled with the rank and the config values ``keys`` (shown as ``names[key]`` if given).
    """
    names = dict(names or {})
    runs = list(runs)
    scores = np.array([final_metric(r, f"val_{metric}") for r in runs])
    order = np.argsort(-scores, kind="stable")[:best]
    with panels(ax, len(order), ncols=ncols, panel_size=(2.6, 1.9), sharex=True, sharey=sharey) as (
        fig,
        axes,
        owns,
    ):
        for rank, (i, a) in enumerate(zip(order, axes), start=1):
            run = runs[i]
            _, val = run.scalar(f"val_{metric}")
            epochs = np.arange(1, len(val) + 1)
            if f"train_{metric}" in run.scalar_names:
                _, train = run.scalar(f"train_{metric}")
                a.plot(
                    epochs[: len(train)],
                    train[: len(epochs)],
                    color=method_color("train"),
                    lw=1.1,
                    ls="--",
                    label="training",
                )
            a.plot(epochs, val, color=method_color("validation"), lw=1.5, label="validation")
            values = ", ".join(f"{names.get(k, k)} {_short(_value(run, k))}" for k in keys)
            a.set_title(f"#{rank}: {values}", fontsize="small")
            a.tick_params(labelsize="small")
            if rank > len(order) - ncols:
                a.set_xlabel("epoch", fontsize="small")
            if (rank - 1) % ncols == 0:
                a.set_ylabel(metric, fontsize="small")
            if metric == "accuracy":
                a.set_ylim(0, 1)
        axes[0].legend(loc="lower right", fontsize="x-small")
        if owns:
            fig.suptitle(f"Best {len(order)} trials by final validation {metric}")
    return fig
