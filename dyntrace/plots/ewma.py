"""Exponentially weighted moving averages of a recorded series, with and without bias correction."""

from __future__ import annotations

import numpy as np

from dyntrace.analysis import ewma
from dyntrace.plots.layout import legend, single, step_label
from dyntrace.plots.theme import NEUTRAL, PALETTE

__all__ = ["plot_ewma"]


def plot_ewma(run, /, *, name: str = "loss", betas=(0.5, 0.9, 0.98), first: int | None = None, ax=None):
    """The raw series (grey) and its EWMA v_t = βv_{t−1} + (1−β)x_t for each β.

    Solid: bias-corrected v_t/(1−βᵗ); dashed: uncorrected, which starts near 0 and needs
    about 1/(1−β) steps to catch up. ``first`` limits the plot to the first steps, where the
    difference shows.
    """
    steps, values = run.scalar(name)
    if first is not None:
        steps, values = steps[:first], values[:first]
    with single(ax) as (fig, ax, owns):
        _draw(ax, steps, values, name, betas)
        legend(ax, owns=owns)
    return fig


def _draw(ax, steps, values, name, betas):
    ax.plot(steps, values, color=NEUTRAL, lw=0.8, alpha=0.6, label=f"{name} (raw)")
    for beta, color in zip(betas, PALETTE):
        window = 1 / (1 - beta)
        ax.plot(
            steps, ewma(values, beta), color=color, lw=1.6, label=f"β = {beta} (≈ {window:.0f}-step average)"
        )
        ax.plot(steps, ewma(values, beta, bias_correction=False), color=color, lw=1.2, ls="--")
    ax.plot([], [], color="k", ls="--", lw=1.2, label="dashed: no bias correction")
    step_label(ax)
    ax.set_ylabel(name)
    finite = values[np.isfinite(values)]
    if finite.size:
        ax.set_ylim(0, np.percentile(finite, 99.5) * 1.1)
    ax.set_title(f"EWMA of {name}: larger β is smoother but lags; bias correction fixes the start")
