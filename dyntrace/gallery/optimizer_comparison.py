"""SGD, Momentum, AdaGrad and Adam on a real network: the book's Fig. 6-9 on digits (seed 002).

REFERENCES §1, "optimizers on MNIST": an MLP 784 → [100] × 4 → 10 (ReLU, He init), minibatches
of 128 drawn with replacement, 2000 iterations; SGD, Momentum and AdaGrad at lr 0.01, Adam at
lr 0.001 (the book's ε conventions). Here on scikit-learn's digits (64 → [100] × 4 → 10), and
with one more run: SGD at Momentum's effective step lr/(1 − μ) = 0.1, which shows how much of
Momentum's lead is its larger step.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "Four optimizers training the same network (the book's Fig. 6-9, on digits)"
CAPTION = """
Training loss of one MLP 64 → [100] × 4 → 10 (ReLU, He init) on scikit-learn's digits (in place of
MNIST), minibatches of 128, 2000 iterations, the same initial weights and the same minibatches for
every optimizer, smoothed with the book's 11-tap Kaiser window (left, log scale), and validation
accuracy after every epoch (right). As in the book, SGD (lr 0.01) is by far the slowest; Momentum
(lr 0.01, μ 0.9), AdaGrad (lr 0.01) and Adam (lr 0.001) are close to each other, AdaGrad ahead at
the start. Digits are easier than MNIST, so every loss ends lower than the book's. The dashed line
is SGD at lr 0.1 = 0.01 / (1 − 0.9), Momentum's effective step size once its velocity has built
up: it lands on Momentum's curve — on this network most of Momentum's lead over SGD at lr 0.01 is
the larger step.
"""

# -- configuration (saved into each run file) --------------------------------------------------
BOOK = TrainConfig(
    dataset="digits",  # 8×8 images, 64 inputs (the book: MNIST, 784)
    depth=4,  # [100] × 4
    width=100,
    activation="relu",
    init="he_normal",
    optimizer="sgd",
    lr=0.01,
    batch_size=128,
    replacement=True,  # the book draws each minibatch at random
    steps=2000,
    every=100,
    probes=["scalars"],
    seed=0,  # the same initial weights and minibatches in every run
)
MOMENTUM = 0.9
OPTIMIZERS = {  # label: (catalog optimizer, lr, options); book=True: the book's ε conventions
    "sgd": ("sgd", 0.01, {}),
    "momentum": ("momentum", 0.01, {"momentum": MOMENTUM}),
    "adagrad": ("adagrad", 0.01, {"book": True}),
    "adam": ("adam", 0.001, {"book": True}),
    "sgd_effective": ("sgd", 0.01 / (1 - MOMENTUM), {}),  # Momentum's effective step
}
LABELS = {
    "sgd": "SGD (lr 0.01)",
    "momentum": "Momentum (lr 0.01, μ 0.9)",
    "adagrad": "AdaGrad (lr 0.01)",
    "adam": "Adam (lr 0.001)",
    "sgd_effective": "SGD at lr 0.1 = Momentum's effective step",
}
COLORS = {"sgd": "sgd", "momentum": "momentum", "adagrad": "adagrad", "adam": "adam", "sgd_effective": "sgd"}
BOOK_AT_1900 = {"sgd": 0.150, "momentum": 0.050, "adagrad": 0.016, "adam": 0.032}  # REFERENCES §1
EARLY = 100  # "AdaGrad ahead at the start": the smoothed loss at this iteration
QUICK_STEPS = 200


def runs(quick: bool) -> dict:
    steps = QUICK_STEPS if quick else BOOK.steps
    return {
        label: BOOK.replace(optimizer=name, lr=lr, optimizer_options=options, steps=steps)
        for label, (name, lr, options) in OPTIMIZERS.items()
    }


def smoothed_loss(run):
    """(steps, the training loss smoothed with the book's Kaiser window)."""
    from dyntrace.analysis import kaiser_smooth

    steps, loss = run.scalar("loss")
    return steps, kaiser_smooth(loss)


def _at(run, step):
    steps, loss = smoothed_loss(run)
    return float(loss[min(np.searchsorted(steps, step), len(loss) - 1)])


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.curves import plot_curves
    from dyntrace.plots.theme import method_color

    labels = list(OPTIMIZERS)
    colors = [method_color(COLORS[k]) for k in labels]
    styles = ["--" if k == "sgd_effective" else "-" for k in labels]
    fig = Figure(figsize=(13, 5.2), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": (1.5, 1)})
    plot_curves(
        [runs[k] for k in labels],
        labels=[LABELS[k] for k in labels],
        colors=colors,
        styles=styles,
        smooth="kaiser",
        ax=left,
        ylabel="training loss (cross-entropy)",
        logy=True,
    )
    left.get_legend().remove()
    left.set_title("Training loss (faint: each minibatch; solid: Kaiser-smoothed)")
    plot_curves(
        [runs[k] for k in labels],
        scalar="val_accuracy",
        labels=[LABELS[k] for k in labels],
        colors=colors,
        styles=styles,
        ax=right,
        ylabel="validation accuracy",
        logy=False,
        smooth="none",
        raw=False,
    )
    right.get_legend().remove()
    right.set_ylim(0.5, 1.0)
    right.set_title("Validation accuracy after each epoch")
    handles, texts = left.get_legend_handles_labels()
    fig.legend(handles, texts, loc="outside lower center", ncols=len(handles), fontsize="small")
    fig.suptitle("Same network, same start, same minibatches: MLP 64 → [100] × 4 → 10 on digits, batch 128")
    return fig


def claims(runs):
    at = _compared_at(runs["sgd"])
    final = {k: _at(runs[k], at) for k in OPTIMIZERS}
    out = [
        claim_sgd_slowest(runs["sgd"], {k: runs[k] for k in ("momentum", "adagrad", "adam")}),
        claim(
            f"Momentum, AdaGrad and Adam each end at least 3 × below SGD (iteration {at})",
            {LABELS[k].split(" (")[0]: final["sgd"] / final[k] for k in ("momentum", "adagrad", "adam")},
            all(final["sgd"] >= 3 * final[k] for k in ("momentum", "adagrad", "adam")),
            "book: SGD / others = 3.0, 9.4, 4.7",
            kind="phenomenon",
        ),
    ]
    early = {LABELS[k].split(" (")[0]: _at(runs[k], EARLY) for k in ("momentum", "adagrad", "adam")}
    out.append(
        claim(
            f"AdaGrad is ahead at the start: the lowest smoothed loss at iteration {EARLY}",
            early,
            min(early, key=early.get) == "AdaGrad",
            "book: AdaGrad slightly ahead",
            kind="phenomenon",
        )
    )
    out.append(claim_effective_step(runs["sgd_effective"], runs["momentum"]))
    return out


def _compared_at(run):
    """The iteration the book compares at (1900), or the run's last if it is shorter."""
    return min(1900, int(run.scalar("loss")[0][-1]))


def claim_sgd_slowest(sgd, others: dict):
    """SGD's smoothed loss is the highest (a control: SGD at Momentum's effective lr in its place)."""
    at = _compared_at(sgd)
    final = {"SGD": _at(sgd, at), **{LABELS[k].split(" (")[0]: _at(r, at) for k, r in others.items()}}
    book = ", ".join(f"{LABELS[k].split(' (')[0]} {v}" for k, v in BOOK_AT_1900.items())
    return claim(
        f"SGD is the slowest: its smoothed loss at iteration {at} is the highest of the four",
        final,
        max(final, key=final.get) == "SGD",
        f"book (MNIST, iteration 1900): {book}",
        kind="phenomenon",
    )


def claim_effective_step(sgd_effective, momentum):
    """SGD at lr / (1 − μ) lands on Momentum (a control: SGD at Momentum's lr 0.01)."""
    at = _compared_at(momentum)
    ratio = _at(sgd_effective, at) / _at(momentum, at)
    lr = sgd_effective.config["lr"]
    return claim(
        f"SGD at lr 0.01 / (1 − μ) = 0.1 ends within a factor 1.5 of Momentum (iteration {at}; SGD's lr here "
        f"{lr:g})",
        {"SGD / Momentum": ratio},
        1 / 1.5 <= ratio <= 1.5,
        "effective step of heavy-ball momentum: lr / (1 − μ)",
        kind="phenomenon",
    )
