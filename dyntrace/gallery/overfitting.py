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
The book's overfitting experiment on scikit-learn's digits (8×8 images, in place of MNIST): 300
training examples, an MLP [100] × 6 (ReLU, He init), SGD lr 0.01, minibatches of 100; training
accuracy on the whole training set and accuracy on a held-out validation set (270 images) per
epoch (top), and the training loss (mean minibatch loss of the epoch) and validation loss
(bottom). Without regularisation the training accuracy reaches 1 and the training loss keeps
falling while the validation loss levels off: a validation loss several times the training loss.
Weight decay (λ = 0.1) stops the fit short of 1 and keeps the two losses together; dropout 0.2
(the book's kind) learns more slowly, with a small gap; early stopping (patience 20 epochs, cap
1000) trains the unregularised net until its validation loss stops improving and keeps the
weights of the best epoch. Digits generalise from 300 examples far better than MNIST does, so
every accuracy gap here is smaller than the book's; the ordering of the loss gaps is the point.
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
    lr=0.01,
    batch_size=100,
    replacement=True,  # the book draws minibatches with replacement
    epochs=201,
    every=50,
    probes=["scalars"],
    seed=0,
)
VARIANTS = {
    "no_regularisation": {},
    "weight_decay": {"l2": 0.1},  # ½λΣW², the book's weight decay
    "dropout": {"dropout": 0.2, "dropout_style": "book", "epochs": 301},
    "early_stopping": {"early_stopping": 20, "epochs": 1000},  # stops by itself (≈ epoch 320)
}
QUICK = {
    "no_regularisation": {"epochs": 150},
    "weight_decay": {"epochs": 100},
    "dropout": {"epochs": 100},
    "early_stopping": {"early_stopping": 10},
}
TITLES = {
    "no_regularisation": "No regularisation",
    "weight_decay": "Weight decay λ = 0.1",
    "dropout": "Dropout 0.2 (book's kind)",
    "early_stopping": "Early stopping, patience {patience}",
}
BOOK_NUMBERS = {  # train / test accuracy at the end (REFERENCES §1)
    "no_regularisation": "train 1.0, large test gap (≈ 0.76)",
    "weight_decay": "train ≈ 0.93, test ≈ 0.72",
    "dropout": "train 0.67, test 0.55",
}


def runs(quick: bool) -> dict:
    out = {}
    for label, changes in VARIANTS.items():
        config = BOOK.replace(**changes)
        if quick:  # shorter: the unregularised gap needs ~150 epochs to open; a shorter patience
            config = config.replace(**QUICK[label])
        out[label] = config
    return out


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.overfitting import plot_train_val

    fig = Figure(figsize=(16, 7.5), layout="constrained")
    axes = fig.subplots(2, len(VARIANTS))
    for j, label in enumerate(VARIANTS):
        for i, metric in enumerate(("accuracy", "loss")):
            ax = axes[i, j]
            plot_train_val(runs[label], metric=metric, ax=ax)
            title = TITLES[label].format(patience=runs[label].config.get("early_stopping"))
            ax.set_title(title if i == 0 else "", fontsize="medium")
            ax.get_legend().remove()
            if metric == "loss":
                ax.set_ylim(5e-3, 5)
    # one key for all panels, from the early-stopping panel (it has every kind of line)
    handles, labels = axes[0, -1].get_legend_handles_labels()
    labels[0] = "train (accuracy: whole training set; loss: epoch mean of the minibatch losses)"
    fig.legend(handles, labels, loc="outside lower center", ncols=len(handles))
    fig.suptitle("Digits, 300 training examples, MLP [100] × 6, SGD lr 0.01 (the book's setup, ch. 6)")
    return fig


def _end(run):
    """(train acc, val acc, train loss, val loss) at the last epoch."""
    from dyntrace.plots.overfitting import epoch_curves

    _, train_acc, val_acc = epoch_curves(run, "accuracy")
    _, train_loss, val_loss = epoch_curves(run, "loss")
    return train_acc[-1], val_acc[-1], train_loss[-1], val_loss[-1]


def claims(runs):
    end = {label: _end(runs[label]) for label in VARIANTS}
    none, decay, drop = end["no_regularisation"], end["weight_decay"], end["dropout"]
    out = [
        claim("no regularisation: training accuracy reaches ≥ 0.98", {"train": none[0], "val": none[1]},
              none[0] >= 0.98, BOOK_NUMBERS["no_regularisation"]),
        claim("weight decay λ = 0.1 keeps training accuracy ≤ 0.95", {"train": decay[0], "val": decay[1]},
              decay[0] <= 0.95, BOOK_NUMBERS["weight_decay"]),
        claim("dropout learns more slowly: its final training accuracy (301 epochs) is below no-regularisation's (201)",
              {"train": drop[0], "val": drop[1]}, drop[0] < none[0], BOOK_NUMBERS["dropout"]),
    ]
    ratio = {label: e[3] / e[2] for label, e in end.items() if label != "early_stopping"}
    out.append(claim("validation / training loss at the end: no regularisation ≥ 2 × weight decay's and ≥ 2 × dropout's",
                     ratio, ratio["no_regularisation"] >= 2 * max(ratio["weight_decay"], ratio["dropout"]),
                     "a large gap without regularisation, a small one with it"))
    gaps = {label: e[0] - e[1] for label, e in end.items() if label != "early_stopping"}
    out.append(claim("accuracy gap (train − validation) at the end: each smaller than the book's MNIST gap",
                     gaps, gaps["no_regularisation"] < 0.24 and gaps["weight_decay"] < 0.21 and gaps["dropout"] < 0.12,
                     "book: ≈ 0.24, 0.21, 0.12 (digits generalise better)"))
    run = runs["early_stopping"]
    _, val_loss = run.scalar("val_loss")
    best = int(np.nanargmin(val_loss)) + 1
    stop = int(run.scalar("early_stop")[1][-1]) if "early_stop" in run.scalar_names else None
    _, test_es = run.scalar("test_loss")
    _, test_none = runs["no_regularisation"].scalar("test_loss")
    patience = run.config["early_stopping"]
    out.append(claim(f"early stopping fires {patience} epochs after the lowest validation loss, well before the 1000-epoch cap",
                     {"lowest at epoch": best, "stopped at epoch": stop or "never"},
                     stop is not None and stop == best + patience and stop < 1000, f"patience {patience}"))
    out.append(claim("test loss of the weights early stopping keeps ≤ the unregularised run's at its end",
                     {"early stopping": test_es[-1], "no regularisation": test_none[-1]}, test_es[-1] <= test_none[-1],
                     "early stopping keeps the best validation point"))
    return out
