"""Overfitting and three remedies: weight decay, dropout, early stopping (Saito ch. 6, seed 004).

The book's setup (REFERENCES §1) on scikit-learn's digits instead of MNIST: the first 300
training examples, an MLP [100] × 6 with ReLU and He init, SGD lr 0.01 on minibatches of 100
drawn with replacement, 201 epochs; weight decay ½λΣW² with λ = 0.1; dropout 0.2 of the book's
(non-inverted) kind for 301 epochs; early stopping with a patience of 20 epochs on the
validation loss.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "Overfitting on 300 examples: no regularisation vs weight decay vs dropout vs early stopping"
CAPTION = """
The book's overfitting experiment (ch. 6) on scikit-learn's digits (8×8 images, in place of
MNIST): 300 training examples, an MLP [100] × 6 (ReLU, He init), SGD on minibatches of 100, 300
epochs; accuracy on the whole training set and on a held-out validation set (270 images) per
epoch (top row), training loss (mean minibatch loss of the epoch) and validation loss (middle
row; the dot marks the lowest validation loss), and the four validation losses together on a
linear scale (bottom). The book's rate, 0.01, barely starts to overfit digits in
201 epochs; at lr 0.1 it does: without regularisation the training loss falls to 5e-4 while the
validation loss bottoms out at epoch ~55 and then rises by a sixth — the net grows confident on
the validation images it gets wrong. Weight decay (½λΣW², λ = 0.003) stops that rise and ends
with the lowest test loss. Dropout 0.2 (the book's kind) trains to the same training accuracy but
keeps its training loss 100× higher (the dropped units keep it from memorising); on digits its
validation loss still rises. Early stopping (patience 20) trains the unregularised net until its
validation loss has not improved for 20 epochs, stops at epoch ~75 and keeps the weights of the
best epoch, whose test loss beats the unregularised net's at epoch 300. Digits generalise from 300
examples far better than MNIST: every accuracy gap here is smaller than the book's.
"""

# -- configuration ------------------------------------------------------------------------------
BOOK = TrainConfig(
    dataset="digits",
    dataset_options={"limit": 300},  # the book's first 300 training examples
    depth=6,  # [100] × 6
    width=100,
    activation="relu",
    init="he_normal",
    optimizer="sgd",
    lr=0.1,  # the book's 0.01 hardly overfits digits in 201 epochs (its validation loss still falls)
    batch_size=100,
    replacement=True,  # the book draws minibatches with replacement
    epochs=300,
    every=50,
    probes=["scalars"],
    seed=0,
)
VARIANTS = {
    "no_regularisation": {},
    "weight_decay": {"l2": 0.003},  # ½λΣW², the book's weight decay (λ = 0.01 collapses at lr 0.1)
    "dropout": {"dropout": 0.2, "dropout_style": "book"},
    "early_stopping": {"early_stopping": 20, "epochs": 1000},  # stops by itself (≈ epoch 75)
}
QUICK = {  # the validation minimum comes at epoch ~55: 150 epochs still show the rise after it
    "no_regularisation": {"epochs": 200},
    "weight_decay": {"epochs": 150},
    "dropout": {"epochs": 150},
    "early_stopping": {},
}
TITLES = {
    "no_regularisation": "No regularisation",
    "weight_decay": "Weight decay λ = 0.003",
    "dropout": "Dropout 0.2 (book's kind)",
    "early_stopping": "Early stopping, patience {patience}",
}


def runs(quick: bool) -> dict:
    out = {}
    for label, changes in VARIANTS.items():
        config = BOOK.replace(**changes)
        if quick:
            config = config.replace(**QUICK[label])
        out[label] = config
    return out


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.overfitting import plot_train_val, plot_val_losses
    from dyntrace.plots.theme import method_colors

    fig = Figure(figsize=(16, 10.5), layout="constrained")
    grid = fig.add_gridspec(3, len(VARIANTS), height_ratios=(1, 1, 1.1))
    axes = [[fig.add_subplot(grid[i, j]) for j in range(len(VARIANTS))] for i in range(2)]
    for j, label in enumerate(VARIANTS):
        for i, metric in enumerate(("accuracy", "loss")):
            ax = axes[i][j]
            plot_train_val(runs[label], metric=metric, ax=ax)
            title = TITLES[label].format(patience=runs[label].config.get("early_stopping"))
            ax.set_title(title if i == 0 else "", fontsize="medium")
            ax.get_legend().remove()
            if metric == "loss":
                ax.set_ylim(1e-4, 5)
    # one key for the panels above, from the early-stopping panel (it has every kind of line)
    handles, labels = axes[1][-1].get_legend_handles_labels()
    labels[0] = "training (accuracy: whole training set; loss: epoch mean of the minibatch losses)"
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize="small")
    bottom = fig.add_subplot(grid[2, :])
    order = ["early_stopping", "no_regularisation", "weight_decay", "dropout"]  # early stopping underneath
    names = [TITLES[k].format(patience=runs[k].config.get("early_stopping")) for k in order]
    colors = dict(zip(VARIANTS, method_colors(["none", "weight decay", "dropout", "early stopping"])))
    plot_val_losses([runs[k] for k in order], labels=names, colors=[colors[k] for k in order], ax=bottom)
    bottom.set_title(
        "Validation loss of the four runs, on a linear scale: it rises after its lowest point (dot) "
        "unless the net is regularised or stopped",
        fontsize="medium",
    )
    fig.suptitle(
        "Digits, 300 training examples, MLP [100] × 6, SGD lr 0.1, minibatches of 100", fontweight="bold"
    )
    return fig


def _end(run):
    """(train acc, val acc, train loss, val loss) at the last epoch."""
    from dyntrace.plots.overfitting import epoch_curves

    _, train_acc, val_acc = epoch_curves(run, "accuracy")
    _, train_loss, val_loss = epoch_curves(run, "loss")
    return train_acc[-1], val_acc[-1], train_loss[-1], val_loss[-1]


def overfit_claim(run, label: str = "no regularisation"):
    """Phenomenon: the validation loss has a minimum well inside the run and ends ≥ 10 % above it,
    while the training loss ends ≥ 100 × below the validation loss. An untrained model, or the
    weight-decay run (a control), fails it."""
    epochs, train, val = _losses(run)
    best = int(np.nanargmin(val))
    rise = float(val[-1] / val[best])
    ratio = float(val[-1] / train[-1])
    ok = 5 <= best + 1 <= 0.7 * len(val) and rise >= 1.1 and ratio >= 100
    return claim(
        f"{label}: the validation loss's lowest epoch; its rise from there to the end; validation ÷ "
        "training loss at the end",
        {"lowest at epoch": best + 1, "rise": rise, "validation ÷ training": ratio},
        ok,
        "lowest in the first 70 % of the run, rise ≥ 1.1, ratio ≥ 100: the net memorises",
        kind="phenomenon",
    )


def _losses(run):
    from dyntrace.plots.overfitting import epoch_curves

    return epoch_curves(run, "loss")


def claims(runs):
    end = {label: _end(runs[label]) for label in VARIANTS}
    none, drop = end["no_regularisation"], end["dropout"]
    out = [overfit_claim(runs["no_regularisation"])]
    _, _, val = _losses(runs["weight_decay"])
    _, test_decay = runs["weight_decay"].scalar("test_loss")
    _, test_none = runs["no_regularisation"].scalar("test_loss")
    rise = float(val[-1] / np.nanmin(val))
    out.append(
        claim(
            "weight decay: rise of the validation loss from its lowest epoch to the end; test loss at the end "
            "(vs no regularisation's)",
            {"rise": rise, "test loss": test_decay[-1], "no regularisation": test_none[-1]},
            rise < 1.1 and test_decay[-1] < 0.9 * test_none[-1],
            "< 1.1 (no overfitting rise); test loss ≥ 10 % lower",
            kind="phenomenon",
        )
    )
    out.append(
        claim(
            "dropout: training and validation accuracy at the end; its training loss ÷ no regularisation's",
            {"train": drop[0], "validation": drop[1], "training-loss ratio": drop[2] / none[2]},
            drop[0] >= 0.98 and drop[1] >= 0.9 and drop[2] >= 10 * none[2],
            "it trains (≥ 0.98, ≥ 0.9) but cannot memorise as hard (≥ 10×)",
            kind="phenomenon",
        )
    )
    gaps = {label.replace("_", " "): e[0] - e[1] for label, e in end.items() if label != "early_stopping"}
    out.append(
        claim(
            "accuracy gap (training − validation) at the end",
            gaps,
            none[0] >= 0.98 and all(0 <= g < 0.12 for g in gaps.values()),
            "book (MNIST, lr 0.01): ≈ 0.24, 0.21, 0.12 — all outside, smaller: digits generalise from 300 "
            "examples far better; here 0–0.12 with the training accuracy at 1",
            kind="phenomenon",
        )
    )
    run = runs["early_stopping"]
    _, val_loss = run.scalar("val_loss")
    best = int(np.nanargmin(val_loss)) + 1
    stop = int(run.scalar("early_stop")[1][-1]) if "early_stop" in run.scalar_names else None
    _, test_es = run.scalar("test_loss")
    patience = run.config["early_stopping"]
    n_none = len(_losses(runs["no_regularisation"])[2])
    out.append(
        claim(
            f"early stopping: the epoch of the lowest validation loss, the stop, and the test loss of the "
            f"weights kept (vs no regularisation's at epoch {n_none})",
            {
                "lowest at epoch": best,
                "stopped at epoch": stop or "never",
                "test loss": test_es[-1],
                "no regularisation": test_none[-1],
            },
            stop is not None
            and stop == best + patience
            and stop < 0.5 * n_none
            and test_es[-1] < 0.95 * test_none[-1],
            f"stops {patience} epochs after the lowest, before half the run; test loss ≥ 5 % lower",
            kind="phenomenon",
        )
    )
    return out
