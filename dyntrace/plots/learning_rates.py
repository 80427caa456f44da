"""What the learning rate does: gradient descent on a 1-D bowl, and one network's loss by rate.

A bowl run holds the scalars ``w`` and ``loss`` at steps 0 … T (step t: after t updates) of
gradient descent on f(w) = w²/2 · ``curvature`` (its config says ``curvature`` and ``lr``), so
the bowl is redrawn from the file. Plain gradient descent there is w_t = w₀(1 − η·c)ᵗ: it
creeps for η·c ≪ 1, lands in one step at η·c = 1, zig-zags inwards for 1 < η·c < 2 and
outwards (diverges) for η·c > 2.
"""

from __future__ import annotations

import numpy as np

from dyntrace.plots.data import missing
from dyntrace.plots.layout import single
from dyntrace.plots.theme import NEUTRAL, series_color

__all__ = ["bowl_steps", "plot_bowl_steps", "final_losses", "plot_loss_by_lr"]

_HOW = "record gradient descent on the bowl with rec.log(w=..., loss=...) every step"


def bowl_steps(run):
    """(steps (T,), w (T,), loss (T,)) of a bowl run; MissingDataError without ``w``/``loss``."""
    for name in ("w", "loss"):
        if name not in run.scalar_names:
            raise missing(run, f"scalar {name!r}", _HOW)
    steps, w = run.scalar("w")
    _, loss = run.scalar("loss")
    return steps, w, loss


def plot_bowl_steps(run, /, *, ax=None, color=None, title: str | None = None, wlim: float | None = None):
    """The bowl f(w) = c·w²/2 (grey) and the iterates (w_t, f(w_t)) of one bowl run joined in
    order, the start as an open circle. ``wlim``: half-width of the w axis (default: the
    largest |w_t|, at least the start's); iterates outside are clipped by the axes."""
    _, w, loss = bowl_steps(run)
    curvature = float(run.config.get("curvature", 2.0))
    color = series_color(0) if color is None else color
    finite = np.isfinite(w)
    lim = float(wlim if wlim is not None else 1.1 * np.max(np.abs(w[finite])))
    with single(ax, figsize=(4.2, 3.4)) as (fig, ax, owns):
        grid = np.linspace(-lim, lim, 201)
        ax.plot(grid, curvature * grid**2 / 2, color=NEUTRAL, lw=1.2, gid="bowl")
        ax.plot(w[finite], loss[finite], color=color, lw=1.1, marker="o", ms=3.5, gid="iterates")
        ax.plot(w[0], loss[0], marker="o", ms=8, mfc="white", mec="k", ls="none", gid="start")
        ax.plot(0, 0, marker="+", ms=10, mew=2, color="k", ls="none", gid="minimum")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-0.05 * curvature * lim**2 / 2, 1.08 * curvature * lim**2 / 2)
        ax.set_xlabel("weight w")
        ax.set_ylabel("loss f(w)")
        ax.set_title(title or f"lr {run.config.get('lr')}: {len(w) - 1} steps")
    return fig


def final_losses(run, *, fraction: float = 0.05):
    """(initial loss, mean loss over the last ``fraction`` of the steps, largest loss) of a
    run's per-step ``loss``; non-finite values count as +inf for the largest."""
    if "loss" not in run.scalar_names:
        raise missing(run, "scalar 'loss'", "log it every step with rec.log(loss=...)")
    _, loss = run.scalar("loss")
    k = max(1, round(len(loss) * fraction))
    largest = float(np.max(np.where(np.isfinite(loss), loss, np.inf)))
    return float(loss[0]), float(np.mean(loss[-k:])), largest


def plot_loss_by_lr(runs, /, *, ax=None, colors=None, labels=None, reference: float | None = None):
    """Final training loss (mean over the last 5 % of the steps) of each run against its
    learning rate (``run.config["lr"]``), log-log, joined in order of lr; runs with a colour
    (``colors``, None for grey) are drawn large and labelled. ``reference``: a horizontal
    line (e.g. the loss of uniform guessing)."""
    runs = list(runs)
    colors = list(colors) if colors is not None else [None] * len(runs)
    labels = list(labels) if labels is not None else [None] * len(runs)
    lrs = np.array([float(r.config["lr"]) for r in runs])
    finals = np.array([final_losses(r)[1] for r in runs])
    order = np.argsort(lrs)
    with single(ax, figsize=(5.5, 4.2)) as (fig, ax, owns):
        ax.plot(lrs[order], finals[order], color=NEUTRAL, lw=1.2, marker="o", ms=4, gid="all")
        for lr, final, color, label in zip(lrs, finals, colors, labels):
            if color is not None:
                ax.plot(
                    lr, final, marker="o", ms=10, color=color, mec="k", ls="none", label=label, gid=str(label)
                )
        if reference is not None:
            ax.axhline(reference, color="gray", lw=0.9, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss at the end")
    return fig
