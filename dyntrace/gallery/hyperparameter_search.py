"""Random search of learning rate and weight decay on a validation split (Saito ch. 6.5).

The book: 500 MNIST examples, 20 % of them held out for validation, an MLP [100] × 6 trained
with SGD for 50 epochs per trial, 100 trials with lr = 10^U(−6, −2) and weight decay
λ = 10^U(−8, −4), the 20 best validation curves plotted. Here on digits, with 30 trials (the
budget of the gallery: a trial costs about half a second) and the 10 best plotted.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "Random search over learning rate and weight decay: the best trials have lr ≈ 1e-3 – 1e-2"
CAPTION = """
Random search as in the book (ch. 6.5) on scikit-learn's digits (in place of MNIST): 500
examples, 400 to train and 100 held out for validation; an MLP [100] × 6 (ReLU, He init) trained
with SGD on minibatches of 100 for 50 epochs per trial, with learning rate 10^U(−6, −2) and
weight decay (½λΣW²) λ = 10^U(−8, −4). The book runs 100 trials and plots the best 20; for the
gallery's time budget this runs 30 trials and plots the best 10 (left: validation accuracy solid,
training accuracy dashed, per epoch). Right: every trial's final validation accuracy against
its learning rate, coloured by weight decay. Only learning rates above about 1e-3 learn anything
in 50 epochs, and the higher the better up to the range's end at 1e-2; the weight decay shows no
clear pattern in 30 trials. The next search would narrow lr to about 1e-3 – 1e-2 (or beyond).
"""

# -- configuration ------------------------------------------------------------------------------
BASE = TrainConfig(
    dataset="digits",
    dataset_options={"limit": 400, "val_fraction": 100 / 1797},  # 400 to train, 100 to validate
    depth=6,
    width=100,
    activation="relu",
    init="he_normal",
    optimizer="sgd",
    batch_size=100,
    replacement=True,
    epochs=50,
    every=1000,  # only the per-epoch scalars matter here
    probes=["scalars"],
    seed=0,  # the same split and initial weights for every trial: only lr and λ vary
)
TRIALS = 30  # the book: 100
BEST = 10  # plotted; the book: 20 of 100
LR_LOG10 = (-6, -2)  # lr = 10^U(−6, −2)
WD_LOG10 = (-8, -4)  # λ = 10^U(−8, −4)
SEARCH_SEED = 0
CHANCE = 0.1  # ten classes
NAMES = {"lr": "lr", "l2": "λ", "val_accuracy": "validation accuracy"}


def _samples(n: int):
    """The first n (lr, λ) pairs of the search (the same pairs in quick and full mode)."""
    rng = np.random.default_rng(SEARCH_SEED)
    pairs = [(10 ** rng.uniform(*LR_LOG10), 10 ** rng.uniform(*WD_LOG10)) for _ in range(n)]
    return [(float(lr), float(wd)) for lr, wd in pairs]


def runs(quick: bool) -> dict:
    n, epochs = (8, 25) if quick else (TRIALS, BASE.epochs)
    return {f"trial_{i:03d}": BASE.replace(lr=lr, l2=wd, epochs=epochs)
            for i, (lr, wd) in enumerate(_samples(n))}


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.hyperparameter_search import plot_best_trials, plot_search_scatter

    trials = list(runs.values())
    best = min(BEST, len(trials))
    fig = Figure(figsize=(15, 6.2), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=(1.9, 1))
    host = left.add_subplot()
    plot_best_trials(trials, best=best, ax=host, ncols=5, names=NAMES)
    left.suptitle(f"Best {best} of {len(trials)} trials: validation (solid) and training (dashed) accuracy per epoch",
                  fontsize="medium")
    ax = right.add_subplot()
    plot_search_scatter(trials, x="lr", color="l2", ax=ax, highlight=best, chance=CHANCE, names=NAMES)
    ax.set_title("Final validation accuracy of every trial", fontsize="medium")
    ax.axvspan(1e-3, 1e-2, color="gray", alpha=0.12, lw=0)
    ax.text(10 ** -2.5, 0.98, "book's good\nregion", ha="center", va="top", fontsize="small", color="dimgray")
    ax.set_ylim(0, 1)
    return fig


def claims(runs):
    from dyntrace.plots.hyperparameter_search import final_metric, rank_correlation

    trials = list(runs.values())
    lr = np.array([r.config["lr"] for r in trials])
    acc = np.array([final_metric(r) for r in trials])
    order = np.argsort(-acc, kind="stable")
    top = order[: max(3, len(trials) // 6)]
    out = [
        claim(f"the best {len(top)} trials all have lr in 1e-3 – 1e-2",
              {f"#{k + 1}": f"lr {lr[i]:.1e}, acc {acc[i]:.2f}" for k, i in enumerate(top)},
              bool(np.all((lr[top] >= 1e-3) & (lr[top] <= 1e-2))), "good region lr ≈ 1e-3 – 1e-2 (book)"),
        claim("no trial with lr < 1e-4 learns: final validation accuracy ≤ 2 × chance",
              float(acc[lr < 1e-4].max()) if np.any(lr < 1e-4) else "no such trial",
              bool(np.all(acc[lr < 1e-4] <= 2 * CHANCE)), "too small a rate barely moves in 50 epochs"),
    ]
    learned = acc >= 1.5 * CHANCE
    rho_lr = rank_correlation(np.log10(lr[learned]), acc[learned])
    out.append(claim("among the trials that learn (accuracy ≥ 1.5 × chance), a higher lr is better: Spearman ρ(lr, accuracy) ≥ 0.8",
                     {"trials": int(learned.sum()), "ρ": rho_lr}, learned.sum() >= 3 and rho_lr >= 0.8,
                     "lr up to 1e-2 (the range's end) still gains in 50 epochs"))
    return out
