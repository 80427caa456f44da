"""The gradient a classifier's loss sends back to the logit of the true class, by how sure the
network is of the true class: softmax + cross-entropy vs sigmoid + squared error.

Softmax + cross-entropy: ∂L/∂z_k = p_k − y_k, so on the true class |∂L/∂z_y| = 1 − p_y — largest
when the network is confidently wrong (p_y → 0). Sigmoid outputs with a squared error
½Σ(σ(z_k) − y_k)²: ∂L/∂z_k = (σ_k − y_k)·σ_k(1 − σ_k), so on the true class
|∂L/∂z_y| = σ_y(1 − σ_y)² — which vanishes when the network is confidently wrong (σ_y → 0): the
sigmoid is saturated and its slope is ~0. (Per example; a mean loss divides by the batch size.)
"""

from __future__ import annotations

import numpy as np

from dyntrace.plots.layout import legend, single

__all__ = ["ce_true_gradient", "mse_sigmoid_true_gradient", "plot_logit_gradients"]


def ce_true_gradient(p):
    """|∂L/∂z_y| of softmax + cross-entropy for true-class probability p: 1 − p."""
    return 1.0 - np.asarray(p, dtype=np.float64)


def mse_sigmoid_true_gradient(p):
    """|∂L/∂z_y| of sigmoid + ½(σ − 1)² for true-class output σ = p: p(1 − p)²."""
    p = np.asarray(p, dtype=np.float64)
    return p * (1.0 - p) ** 2


def plot_logit_gradients(*, ax=None, colors=("#d55e00", "#0173b2"), points=None):
    """Both formulas against the predicted probability of the true class, 0 … 1, log y.

    ``points``: optional ``{label: (p, gradient, color)}`` of measured pairs to overlay.
    """
    p = np.linspace(1e-4, 1 - 1e-4, 400)
    with single(ax, figsize=(5.8, 4.2)) as (fig, ax, owns):
        ax.plot(p, ce_true_gradient(p), color=colors[0], lw=2.2, label="softmax + cross-entropy: 1 − p")
        ax.plot(
            p,
            mse_sigmoid_true_gradient(p),
            color=colors[1],
            lw=2.2,
            label="sigmoid + squared error: p(1 − p)²",
        )
        for label, (px, gy, color) in (points or {}).items():
            ax.plot(px, gy, ls="none", marker="o", ms=4, color=color, alpha=0.7, label=label)
        ax.axvspan(0, 0.1, color="0.9", zorder=0)
        ax.text(
            0.05, 1.3, "confident\nand wrong", ha="center", va="bottom", fontsize="small", color="dimgray"
        )
        ax.set_yscale("log")
        ax.set_ylim(1e-4, 3)
        ax.set_xlim(0, 1)
        ax.set_xlabel("predicted probability of the true class")
        ax.set_ylabel("|gradient on the true class's logit| (per example)")
        legend(ax, owns=owns)
    return fig
