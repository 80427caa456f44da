"""Random search of learning rate and weight decay on a validation split (Saito ch. 6.5).

The book: 500 MNIST examples, 20 % of them held out for validation, an MLP [100] × 6 trained
with SGD for 50 epochs per trial, 100 trials with lr = 10^U(−6, −2) and weight decay
λ = 10^U(−8, −4), the 20 best validation curves plotted. On digits the book's lr range stops
short of the optimum (accuracy still rises at 1e-2, its end), so this search samples lr =
10^U(−4, 0): a range that brackets it (lr above ~0.5 diverges). 30 trials (the budget of the
gallery: a trial costs about half a second), the 10 best plotted.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "Random search over learning rate and weight decay: a range that brackets the best learning rate"
CAPTION = """
Random search as in the book (ch. 6.5) on scikit-learn's digits (in place of MNIST): 500
examples, 400 to train and 100 held out for validation; an MLP [100] × 6 (ReLU, He init) trained
with SGD on minibatches of 100 for 50 epochs per trial, with learning rate lr = 10^U(−4, 0) and
weight decay (½λΣW²) λ = 10^U(−8, −4). The book samples lr from 10^U(−6, −2), tuned to MNIST; on
digits that range ends before the optimum (accuracy still rising at its end, 1e-2), so the
search here is moved up until it brackets it. The book runs 100 trials and plots the best 20;
for the gallery's time budget this runs 30 trials and plots the best 10 (left: training accuracy
blue dashed, validation orange, per epoch). Right: every trial's final validation accuracy against its
learning rate, coloured by weight decay. Too small a rate barely moves in 50 epochs (left side);
too large a rate diverges (right side, back at chance); the best trials sit between, around
lr ≈ 0.02 – 0.35 (shaded). The weight decay, at most 1e-4, shows no pattern in 30 trials. The
next search would narrow lr to the shaded range and widen λ.
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
LR_LOG10 = (-4, 0)  # lr = 10^U(−4, 0); the book's 10^U(−6, −2) stops short of the optimum on digits
WD_LOG10 = (-8, -4)  # λ = 10^U(−8, −4)
SEARCH_SEED = 0
CHANCE = 0.1  # ten classes
GOOD = (0.02, 0.35)  # the lr range of the best trials (shaded)
NAMES = {"lr": "learning rate", "l2": "weight decay λ", "val_accuracy": "validation accuracy"}
SHORT = {"lr": "lr", "l2": "λ"}


def _samples(n: int):
    """The first n (lr, λ) pairs of the search (quick mode takes 10 of the same pairs)."""
    rng = np.random.default_rng(SEARCH_SEED)
    pairs = [(10 ** rng.uniform(*LR_LOG10), 10 ** rng.uniform(*WD_LOG10)) for _ in range(n)]
    return [(float(lr), float(wd)) for lr, wd in pairs]


def runs(quick: bool) -> dict:
    pairs = list(enumerate(_samples(TRIALS)))
    epochs = BASE.epochs
    if quick:  # 10 of the same trials, spread over the lr range (both of its ends included)
        by_lr = sorted(pairs, key=lambda p: p[1][0])
        pairs = [by_lr[round(k)] for k in np.linspace(0, len(by_lr) - 1, 10)]
        epochs = 25
    return {f"trial_{i:03d}": BASE.replace(lr=lr, l2=wd, epochs=epochs) for i, (lr, wd) in pairs}


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.hyperparameter_search import plot_best_trials, plot_search_scatter

    trials = list(runs.values())
    best = min(BEST, len(trials))
    fig = Figure(figsize=(15, 6.2), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=(1.9, 1))
    host = left.add_subplot()
    plot_best_trials(trials, best=best, ax=host, ncols=5, names=SHORT)
    left.suptitle(
        f"Best {best} of {len(trials)} trials: training and validation accuracy per epoch", fontweight="bold"
    )
    ax = right.add_subplot()
    plot_search_scatter(trials, x="lr", color="l2", ax=ax, highlight=best, chance=CHANCE, names=NAMES)
    ax.set_title("Final validation accuracy of every trial", fontweight="bold")
    lo, hi = GOOD
    ax.axvspan(lo, hi, color="gray", alpha=0.12, lw=0)
    ax.text(np.sqrt(lo * hi), 0.98, "best\ntrials", ha="center", va="top", fontsize="small", color="dimgray")
    ax.text(1.2e-4, 0.3, "too small:\nbarely moves", fontsize="small", color="dimgray")
    ax.text(0.95, 0.3, "too large:\ndiverges", fontsize="small", color="dimgray", ha="right")
    ax.set_ylim(0, 1)
    ax.set_xlim(10 ** LR_LOG10[0] / 1.3, 10 ** LR_LOG10[1] * 1.3)
    return fig


def bracket_claim(trials):
    """Phenomenon: the search brackets the optimum — the best trial's lr has, on each side, a
    trial whose accuracy is at least 0.3 lower. The book's range (10^U(−6, −2)) fails it on
    digits: its best trial sits at its upper end."""
    from dyntrace.plots.hyperparameter_search import final_metric

    lr = np.array([r.config["lr"] for r in trials])
    acc = np.array([final_metric(r) for r in trials])
    best = int(np.argmax(acc))
    below = acc[lr < lr[best]]
    above = acc[lr > lr[best]]
    low = float(below.min()) if below.size else float("nan")
    high = float(above.min()) if above.size else float("nan")
    ok = below.size > 0 and above.size > 0 and low <= acc[best] - 0.3 and high <= acc[best] - 0.3
    return claim(
        "the optimum is bracketed: the best trial, and the worst trial at a smaller and at a larger lr",
        {"best": f"lr {lr[best]:.2g}, accuracy {acc[best]:.2f}", "worst below": low, "worst above": high},
        ok,
        "both ≤ best − 0.3 (a range whose end is its best trial would be moved)",
        kind="phenomenon",
    )


def claims(runs):
    from dyntrace.plots.hyperparameter_search import final_metric

    trials = list(runs.values())
    lr = np.array([r.config["lr"] for r in trials])
    acc = np.array([final_metric(r) for r in trials])
    order = np.argsort(-acc, kind="stable")
    top = order[: min(BEST, len(trials) // 3)]
    out = [bracket_claim(trials)]
    lo, hi = GOOD
    out.append(
        claim(
            f"the best {len(top)} trials: lr in {lo:g} – {hi:g}; every one well above chance",
            {f"#{k + 1}": f"lr {lr[i]:.1e}, acc {acc[i]:.2f}" for k, i in enumerate(top)},
            bool(np.all((lr[top] >= lo) & (lr[top] <= hi)) and np.all(acc[top] >= 0.6)),
            f"lr in {lo:g} – {hi:g}; accuracy ≥ 0.6 (six times chance)",
            kind="phenomenon",
        )
    )
    small, large = lr < 1e-3, lr > 0.5
    out.append(
        claim(
            "trials with lr < 1e-3 (too slow) and lr > 0.5 (diverge): largest final validation accuracy",
            {
                "lr < 1e-3": float(acc[small].max()) if small.any() else "no such trial",
                "lr > 0.5": float(acc[large].max()) if large.any() else "no such trial",
            },
            bool(np.all(acc[small | large] <= 3 * CHANCE)),
            "≤ 3 × chance at both ends of the range",
            kind="phenomenon",
        )
    )
    return out
