"""Initialisations compared during training (the book's Fig. 6-15) and the symmetry of a constant
initialisation (seed 002: "초기값을 모두 0으로 해서는 안된다").

REFERENCES §1, "init comparison": a ReLU MLP 784 → [100] × 4 → 10, SGD lr 0.01, minibatches of 128,
2000 iterations; weights N(0, 0.01²) vs the book's "Xavier" N(0, 1/n) vs He N(0, 2/n), biases 0.
Here on digits (64 inputs). A fourth run starts every weight at the same value, 0.01: each unit
of a layer then computes the same output and receives the same gradient, so the units stay
copies of each other however long they train. The runs keep their parameters every 500 steps
(the trajectory), from which the units' incoming weights are drawn and compared.
"""

from __future__ import annotations

import math

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "Weight initialisation during training: std 0.01 vs Xavier vs He, and the symmetry of equal weights"
CAPTION = """
Left: training loss of a ReLU MLP 64 → [100] × 4 → 10 on digits (SGD lr 0.01, minibatches of 128,
the book's Fig. 6-15 setup) from four initialisations. With weights N(0, 0.01²) the network never
learns: its loss stays at ln 10 = 2.303, the loss of guessing uniformly. The book's "Xavier"
N(0, 1/n) learns, He N(0, 2/n) learns fastest. Middle: why — the size (root mean square) of each
layer's outputs on the first minibatch. Each ReLU layer multiplies it by σ·√(n/2) (dashed: that
prediction): 0.07 for std 0.01, so the signal reaching the output is 3 × 10⁻⁴ of the first layer's
and the gradients are as small; 0.71 for Xavier; exactly 1 for He. Right: the incoming weights of
eight units of the first layer after training, drawn as 8×8 images (red positive, blue negative).
With He every unit has learned its own pattern; with every weight started at 0.01 all 100 units
of each layer received identical updates and are still identical copies — a layer of 100 units
that works as one (its loss barely moves). This is why weights must start random, not equal.
"""

# -- configuration (saved into each run file) --------------------------------------------------
BOOK = TrainConfig(
    dataset="digits",  # 64 inputs (the book: MNIST, 784)
    depth=4,  # [100] × 4
    width=100,
    activation="relu",
    init="he_normal",
    optimizer="sgd",
    lr=0.01,
    batch_size=128,
    replacement=True,
    steps=2000,
    every=100,
    probes=["scalars", "activations"],  # activations: each layer's output size at the first step
    trajectory=500,  # the weights every 500 steps (and first and last)
    seed=0,
)
INITS = {  # label: (catalog init, options)
    "std_0.01": ("normal", {"std": 0.01}),
    "xavier": ("book_xavier", {}),  # the book's "Xavier": N(0, 1/n_in) (LeCun normal)
    "he": ("he_normal", {}),
    "constant": ("constant", {"value": 0.01}),  # every weight 0.01: the symmetry problem
}
LABELS = {
    "std_0.01": "normal, std 0.01",
    "xavier": "Xavier (book): std √(1/n)",
    "he": "He: std √(2/n)",
    "constant": "all weights equal (0.01)",
}
SHORT = {"std_0.01": "std 0.01", "xavier": "Xavier", "he": "He", "constant": "equal"}
COLORS = {"std_0.01": "#56b4e9", "xavier": "#0173b2", "he": "#d55e00", "constant": "#882255"}
STD = {"std_0.01": 0.01, "xavier": math.sqrt(1 / 100), "he": math.sqrt(2 / 100)}  # weight std, hidden layers
BOOK_AT_1900 = {"std_0.01": 2.305, "xavier": 0.377, "he": 0.286}  # REFERENCES §1
HIDDEN = ("fc1.weight", "fc2.weight", "fc3.weight", "fc4.weight")
QUICK_STEPS = 300


def runs(quick: bool) -> dict:
    steps = QUICK_STEPS if quick else BOOK.steps
    return {
        label: BOOK.replace(
            init=init, init_options=options, steps=steps, trajectory=min(BOOK.trajectory, steps)
        )
        for label, (init, options) in INITS.items()
    }


def _loss_at(run, step):
    from dyntrace.analysis import kaiser_smooth

    steps, loss = run.scalar("loss")
    return float(kaiser_smooth(loss)[min(np.searchsorted(steps, step), len(loss) - 1)])


def layer_rms(run, record: int = 0):
    """Root mean square of each ReLU layer's outputs at one record (default: the first), (layers,)."""
    names = [n for n, kind in run.kinds("activations").items() if kind == "relu"]
    mean = np.array([run.stat("activations", n, "mean")[1][record] for n in names])
    std = np.array([run.stat("activations", n, "std")[1][record] for n in names])
    return np.sqrt(mean**2 + std**2)


def spreads(run, index: int = -1) -> list[float]:
    """:func:`~dyntrace.plots.unit_weights.unit_spread` of each hidden layer at one trajectory snapshot."""
    from dyntrace.plots.unit_weights import trajectory_parameter, unit_spread

    out = []
    for name, inputs in zip(HIDDEN, (64, 100, 100, 100)):
        _, flat = trajectory_parameter(run, name, index=index)
        out.append(unit_spread(flat.reshape(-1, inputs)))
    return out


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.curves import plot_curves
    from dyntrace.plots.unit_weights import plot_unit_weights

    labels = list(INITS)
    fig = Figure(figsize=(15, 5.4), layout="constrained")
    left, middle, right = fig.subfigures(1, 3, width_ratios=(1.25, 0.9, 1.05))
    ax = left.subplots()
    plot_curves(
        [runs[k] for k in labels],
        labels=[LABELS[k] for k in labels],
        colors=[COLORS[k] for k in labels],
        styles=["--" if k == "constant" else "-" for k in labels],
        smooth="kaiser",
        ax=ax,
        ylabel="training loss (cross-entropy)",
        logy=True,
    )
    ax.axhline(math.log(10), color="gray", lw=0.9, ls=":")
    ax.text(
        0.99,
        math.log(10) * 1.12,
        "std 0.01 and equal weights stay at ln 10 (uniform guessing)",
        transform=ax.get_yaxis_transform(),
        ha="right",
        fontsize="small",
        color="dimgray",
    )
    ax.get_legend().remove()
    ax.set_title("Training loss (Kaiser-smoothed)", fontsize="medium")

    ax = middle.subplots()
    depth = np.arange(1, len(HIDDEN) + 1)
    for k in labels:
        rms = layer_rms(runs[k])
        ax.plot(depth, rms, color=COLORS[k], marker="o", lw=1.8, label=LABELS[k])
        if k in STD:  # the prediction from layer 1 on: × σ√(n/2) per layer
            ax.plot(
                depth, rms[0] * (STD[k] * math.sqrt(100 / 2)) ** (depth - 1), color=COLORS[k], ls="--", lw=1
            )
    ax.set_yscale("log")
    ax.set_xticks(depth)
    ax.set_xlabel("hidden layer (1 = input side)")
    ax.set_ylabel("size of the layer's outputs (root mean square)")
    ax.set_title("Signal size at the start, layer by layer\n(dashed: × σ√(n/2) per layer)", fontsize="medium")

    top, bottom = right.subfigures(2, 1)
    for sub, key in ((top, "he"), (bottom, "constant")):
        plot_unit_weights(runs[key], param="fc1.weight", units=6, ax=list(sub.subplots(1, 6)))
        sub.suptitle(f"{LABELS[key]}: first-layer units after training", fontsize="medium")
    handles, texts = middle.axes[0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="outside lower center", ncols=len(handles))
    fig.suptitle("ReLU MLP 64 → [100] × 4 → 10 on digits, SGD lr 0.01, batch 128: four initialisations")
    return fig


def claims(runs):
    end = int(runs["he"].scalar("loss")[0][-1])
    at = min(1900, end)
    loss = {k: _loss_at(runs[k], at) for k in INITS}
    book = ", ".join(f"{SHORT[k]} {v}" for k, v in BOOK_AT_1900.items())
    out = [
        claim_never_learns(runs["std_0.01"], at),
        claim(
            f"He learns fastest: its loss at iteration {at} is below Xavier's, which is below std 0.01's",
            {SHORT[k]: loss[k] for k in BOOK_AT_1900},
            loss["he"] < loss["xavier"] < loss["std_0.01"],
            f"book (MNIST, 1900): {book}",
            kind="phenomenon",
        ),
    ]
    ratios = {}
    for k in STD:
        rms = layer_rms(runs[k])
        ratios[k] = float((rms[-1] / rms[0]) ** (1 / (len(rms) - 1)))  # geometric mean per layer
    predicted = {k: std * math.sqrt(100 / 2) for k, std in STD.items()}
    out.append(
        claim(
            "each ReLU layer scales the signal by σ√(n/2) at the start (measured: geometric mean, layers 1 → 4)",
            {SHORT[k]: v for k, v in ratios.items()},
            all(abs(ratios[k] / predicted[k] - 1) < 0.15 for k in STD),
            "predicted " + ", ".join(f"{v:.3f}" for v in predicted.values()) + " (± 15 %)",
        )
    )
    out.append(claim_identical_units(runs["constant"]))
    he = spreads(runs["he"])
    out.append(
        claim(
            "He (random) initialisation: the units stay different (spread across units / weight size, per layer)",
            he,
            min(he) > 0.5,
            "≈ 1 for independent random rows",
        )
    )
    _, first = _first_and_last(runs["constant"])
    out.append(
        claim(
            "equal initial weights: the first layer's weights did change (relative change, all units alike)",
            first,
            first > 1e-3,
            "> 0: the units learn, but all the same thing",
        )
    )
    return out


def claim_never_learns(run, at=None):
    """The std-0.01 run stays at ln 10 (a control: the He run)."""
    at = min(1900, int(run.scalar("loss")[0][-1])) if at is None else at
    loss, chance = _loss_at(run, at), math.log(10)
    return claim(
        f"std 0.01 never learns: its loss at iteration {at} is within 0.01 of ln 10",
        loss,
        abs(loss - chance) < 0.01,
        f"ln 10 = {chance:.3f}; book 2.305",
        kind="phenomenon",
    )


def claim_identical_units(run):
    """Every snapshot's hidden layers have identical units (a control: a randomly initialised run)."""
    every = [max(spreads(run, i)) for i in range(len(run.trajectory()[0]))]
    return claim(
        "equal initial weights: the units of every hidden layer stay identical at every snapshot "
        "(spread across units / weight size; largest)",
        max(every),
        max(every) < 1e-6,
        "0: identical units get identical updates",
        kind="phenomenon",
    )


def _first_and_last(run):
    from dyntrace.plots.unit_weights import trajectory_parameter

    _, w0 = trajectory_parameter(run, "fc1.weight", index=0)
    step, w1 = trajectory_parameter(run, "fc1.weight", index=-1)
    return step, float(np.linalg.norm(w1 - w0) / np.linalg.norm(w0))
