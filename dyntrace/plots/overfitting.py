"""Training vs validation curves by epoch: the gap that overfitting opens."""

from __future__ import annotations

import numpy as np

from dyntrace.analysis.stats import interval_means
from dyntrace.plots.compare import run_labels
from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, single
from dyntrace.plots.theme import NEUTRAL, method_color, series_color

__all__ = ["plot_train_val", "plot_val_losses", "epoch_curves"]


def epoch_curves(run, metric: str = "accuracy"):
    """(epochs (E,), train (E,), val (E,)) of a run written by :func:`dyntrace.train`.

    ``metric`` "accuracy": ``train_accuracy`` (whole training set, eval mode) and
    ``val_accuracy``; "loss": the mean per-step minibatch ``loss`` over each epoch (train mode,
    so with dropout active) and ``val_loss``. Epochs count from 1.
    """
    if metric not in ("accuracy", "loss"):
        raise ValueError(f"metric must be 'accuracy' or 'loss', got {metric!r}")
    val_name = f"val_{metric}"
    train_name = "train_accuracy" if metric == "accuracy" else "loss"
    for name in (val_name, train_name):
        if name not in run.scalar_names:
            raise missing(run, f"scalar {name!r}", "train with dyntrace.train, which logs it every epoch")
    ends, val = run.scalar(val_name)
    if metric == "accuracy":
        _, train = run.scalar(train_name)
    else:
        steps, loss = run.scalar(train_name)
        train = interval_means(steps, loss, ends)
    n = min(len(train), len(val))
    return np.arange(1, n + 1), train[:n], val[:n]


def plot_train_val(run, /, *, metric: str = "accuracy", ax=None, early_stop: bool = True):
    """Training and validation ``metric`` per epoch (see :func:`epoch_curves`), the gap between
    them shaded; with ``early_stop`` and an ``early_stop`` scalar in the run, the epoch of the
    lowest validation loss (the weights kept) and the stopping epoch are marked. Loss on a log axis.
    """
    epochs, train, val = epoch_curves(run, metric)
    with single(ax) as (fig, ax, owns):
        ax.plot(
            epochs,
            train,
            color=method_color("train"),
            lw=1.8,
            label="training" + (" (minibatch, epoch mean)" if metric == "loss" else ""),
            gid="train",
        )
        ax.plot(epochs, val, color=method_color("validation"), lw=1.8, label="validation", gid="val")
        ax.fill_between(epochs, train, val, color=NEUTRAL, alpha=0.2, lw=0, label="gap")
        if metric == "loss" and np.isfinite(val).any():
            low = int(np.nanargmin(val))
            ax.plot(
                epochs[low],
                val[low],
                "o",
                color=method_color("validation"),
                mec="k",
                ms=7,
                zorder=4,
                label="lowest validation loss",
                gid="val_min",
            )
        if early_stop and "early_stop" in run.scalar_names:
            _, val_loss = run.scalar("val_loss")
            best = int(np.nanargmin(val_loss)) + 1
            stop = int(run.scalar("early_stop")[1][-1])
            ax.axvline(
                best, color="k", ls="--", lw=1.2, label=f"lowest validation loss (epoch {best}, weights kept)"
            )
            ax.axvline(stop, color="k", ls=":", lw=1.2, label=f"stopped (epoch {stop})")
        if metric == "loss":
            ax.set_yscale("log")
        else:
            ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"Training vs validation {metric}")
        legend(ax, owns=owns)
    return fig


def plot_val_losses(runs, /, *, labels=None, colors=None, ax=None):
    """The validation loss per epoch of several runs on a linear axis (a rise of a sixth, flat
    on a log axis, shows), each run's lowest point marked with a dot; the y range is zoomed on
    the values from each run's lowest point on (the fall of the first epochs is cut off). The
    first run is drawn wide underneath, so a later run on the same values stays visible."""
    labels = run_labels(runs, labels)
    with single(ax) as (fig, ax, owns):
        tail = []
        for i, (run, label) in enumerate(zip(runs, labels)):
            epochs, _, val = epoch_curves(run, "loss")
            color = colors[i] if colors is not None else series_color(i)
            ax.plot(
                epochs,
                val,
                color=color,
                lw=5 if i == 0 else 1.8,
                alpha=0.45 if i == 0 else 1.0,
                label=label,
                gid=label,
            )
            low = int(np.nanargmin(val))
            ax.plot(epochs[low], val[low], "o", color=color, mec="k", ms=8, zorder=4, gid=f"{label}:lowest")
            tail.append(val[low:])
        values = np.concatenate(tail)
        values = values[np.isfinite(values)]
        if values.size:
            lo, hi = values.min(), values.max()
            ax.set_ylim(lo - 0.3 * (hi - lo), hi + 0.3 * (hi - lo))
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation loss")
        legend(ax, owns=owns)
    return fig
