"""BatchNorm vs none across 16 weight-init scales (the book's ch. 6 experiment)."""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "BatchNorm vs none across weight-init scales"
CAPTION = """
The book's experiment ("Deep Learning from Scratch" ch. 6) on scikit-learn's 8×8 digits in
place of MNIST: 1000 training images, a 5 × 100 ReLU net with weights N(0, s²) for 16 scales
s from 1 to 10⁻⁴, trained with SGD (lr 0.01, batches of 100 drawn with replacement, 20
epochs) with BatchNorm before every ReLU (solid) and without (dashed), on the same batches.
With BatchNorm the net learns at almost every scale; without it only scales near 0.1–0.3
learn: larger weights blow the signal up, smaller ones let it vanish. Curves: training
accuracy after every epoch; the dotted line is chance (0.1). Right: the last epoch's training
and validation accuracy (270 held-out digits) against the scale.
"""

SCALES = tuple(float(s) for s in np.logspace(0, -4, 16))  # the book's 16 weight scales
QUICK_SCALES = (0, 2, 6, 12)  # indices into SCALES: 1, 0.29, 0.025, 6.3e-4
BASE = TrainConfig(
    dataset="digits",
    dataset_options={"limit": 1000},  # the book's "first 1000 samples" (of the training split)
    depth=5,
    width=100,
    activation="relu",
    init="normal",  # std set per run
    optimizer="sgd",
    lr=0.01,
    batch_size=100,
    epochs=20,
    replacement=True,  # the book draws minibatches with replacement
    every=10,
    probes=["scalars"],  # the figure needs the accuracy curves; the recorder logs them
    seed=0,  # same seed: same batches and same weights with and without BatchNorm
)
VARIANTS = {"bn": dict(norm="batch", norm_options={"book": True}), "plain": dict(norm="none")}
LEARNS = 0.3  # final training accuracy that counts as "learns" (chance: 0.1)
SWEET_SPOT = (0.05, 0.6)  # where the book's net learns without BatchNorm: scales near 0.1–0.3


def runs(quick: bool) -> dict:
    indices = QUICK_SCALES if quick else range(len(SCALES))
    return {
        f"{variant}_{i:02d}": BASE.replace(init_options={"std": SCALES[i]}, **options)
        for variant, options in VARIANTS.items()
        for i in indices
    }


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.batchnorm_grid import plot_batchnorm_by_scale, plot_batchnorm_grid

    n = len(runs) // 2
    ncols = 4
    nrows = -(-n // ncols)
    fig = Figure(figsize=(15, max(5.5, 2.3 * nrows + 1.6)), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=(2.2, 1))
    grid = left.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    plot_batchnorm_grid(runs, ax=list(grid))
    left.suptitle("Training accuracy per epoch, one panel per weight scale", fontweight="bold")
    ax, below = right.subplots(2, 1, sharex=True)
    plot_batchnorm_by_scale(runs, ax=ax)
    plot_batchnorm_by_scale(runs, ax=below, metric="val_accuracy")
    ax.set_xlabel("")
    handles = list(ax.lines)
    for a in (ax, below):
        a.get_legend().remove()
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncols=3)
    right.suptitle("Where each learns", fontweight="bold")
    return fig


def claims(runs):
    from dyntrace.plots.batchnorm_grid import runs_by_scale

    scales, by_norm = runs_by_scale(runs)
    final = {
        norm: np.array([r.scalar("train_accuracy")[1][-1] for r in row]) for norm, row in by_norm.items()
    }
    bn, plain = final["batch"], final["none"]
    out = []
    out.append(
        claim(
            f"with BatchNorm: scales that learn (final train accuracy ≥ {LEARNS}) out of {len(scales)}",
            f"{int(np.sum(bn >= LEARNS))} of {len(scales)} (accuracy {bn.min():.2f}–{bn.max():.2f})",
            np.mean(bn >= LEARNS) >= 0.85,
            "almost every scale",
            kind="phenomenon",
        )
    )
    learned = scales[plain >= LEARNS]
    out.append(
        claim(
            f"without: scales that learn (final train accuracy ≥ {LEARNS})",
            ", ".join(f"{s:.2g}" for s in learned) or "none",
            learned.size >= 1
            and np.all((learned >= SWEET_SPOT[0]) & (learned <= SWEET_SPOT[1]))
            and learned.size <= 0.3 * len(scales),
            "only scales near 0.1–0.3",
            kind="phenomenon",
        )
    )
    outside = (scales < SWEET_SPOT[0]) | (scales > SWEET_SPOT[1])
    out.append(
        claim(
            "outside 0.05–0.6: scales where BatchNorm ends ahead",
            f"{int(np.sum(bn[outside] > plain[outside]))} of {int(outside.sum())}",
            np.all(bn[outside] > plain[outside]),
            "all",
            kind="phenomenon",
        )
    )
    return out
