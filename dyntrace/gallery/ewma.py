"""Exponentially weighted averages and bias correction (seed 001) on a real minibatch loss."""

from __future__ import annotations

import numpy as np

from dyntrace.analysis import ewma
from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "EWMA with β = 0.5, 0.9, 0.98, with and without bias correction"
CAPTION = """
The per-step loss of a small MLP trained on digits with minibatches of 8 (noisy, grey) and its
exponentially weighted moving average v_t = βv_{t−1} + (1−β)θ_t. β = 0.5 averages about
2 steps (follows the noise), 0.9 about 10, 0.98 about 50 (smooth, but it lags). Without bias
correction (dashed) v_t starts at (1−β)θ_1 — near zero for β = 0.98 — and needs about 1/(1−β)
steps to catch up; dividing by 1−βᵗ removes that low start (the lecture's temperature example
with a training loss in place of the temperatures).
"""

BETAS = (0.5, 0.9, 0.98)


def runs(quick: bool) -> dict:
    return {
        "minibatch8": TrainConfig(
            dataset="digits",
            depth=2,
            width=64,
            activation="relu",
            optimizer="sgd",
            lr=0.05,
            batch_size=8,  # small minibatches: a noisy loss worth smoothing
            steps=150 if quick else 400,
            every=50,
            seed=0,
        )
    }


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.ewma import plot_ewma

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(2, 1))
    plot_ewma(runs["minibatch8"], betas=BETAS, ax=left)
    plot_ewma(runs["minibatch8"], betas=BETAS, first=60, ax=right)
    right.set_title("The first 60 steps")
    right.get_legend().remove()
    fig.suptitle("Exponentially weighted moving averages of a minibatch loss (batch 8)", fontweight="bold")
    return fig


def claims(runs):
    _, loss = runs["minibatch8"].scalar("loss")
    out = []
    raw = [ewma(loss, b, bias_correction=False) for b in BETAS]
    fixed = [ewma(loss, b) for b in BETAS]
    out.append(
        claim(
            "uncorrected EWMA starts at (1−β)·θ₁; corrected starts at θ₁",
            {f"β={b}": r[0] / loss[0] for b, r in zip(BETAS, raw)},
            all(np.isclose(r[0], (1 - b) * loss[0]) for b, r in zip(BETAS, raw))
            and all(np.isclose(f[0], loss[0]) for f in fixed),
            "ratio v₁/θ₁ = 1 − β: 0.5, 0.1, 0.02",
            kind="check",
        )
    )
    # roughness: std of step-to-step changes of each average
    rough = [float(np.std(np.diff(f))) for f in fixed]
    out.append(
        claim(
            "larger β is smoother (std of step-to-step change)",
            rough,
            rough[0] > rough[1] > rough[2],
            "decreasing with β",
            kind="phenomenon",
        )
    )
    # the uncorrected β = 0.98 average is still low after 10 steps; the corrected one is not
    early = float(np.mean(loss[:10]))
    out.append(
        claim(
            "β = 0.98 at step 10: uncorrected / corrected, relative to the mean of the first 10 losses",
            [raw[2][9] / early, fixed[2][9] / early],
            raw[2][9] / early < 0.3 and 0.7 < fixed[2][9] / early < 1.3,
            "uncorrected ≈ 1 − 0.98¹⁰ = 0.18; corrected ≈ 1",
            kind="check",
        )
    )
    return out
