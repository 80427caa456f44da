"""Vanishing sigmoid: the book's activation histograms by init, and a deep sigmoid net whose top
layer saturates during training while its gradients shrink towards the input."""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "Vanishing sigmoid: saturated histograms at init, a saturating top layer in training"
CAPTION = """
Top three rows (the book's figure, "Deep Learning from Scratch" ch. 6): histograms of the
outputs of 5 sigmoid layers of 100 units (no bias) for 1000 Gaussian inputs, recorded in one
forward step. With weights of std 1 the outputs pile up at 0 and 1 (U shape): there the
sigmoid's slope is nearly 0 and gradients vanish. With std 0.01 every unit outputs almost
exactly 0.5 (the units are interchangeable: no expressive power). With the book's "Xavier"
std √(1/n) the outputs stay broad in every layer. Bottom row (Glorot & Bengio 2010): a
4 × 256 sigmoid net (U[±1/√fan_in] weights, zero biases) trained with SGD on minibatches of 10
digits (scikit-learn's 8×8 digits stand in for MNIST). Left: the top hidden layer's mean
output falls from 0.5 towards 0 (it saturates) while the lower layers stay near 0.5; right:
the gradient norm falls by about 10× per layer from the output towards the input.
"""

# -- the book's histograms: one recorded forward step, lr 0 ------------------------------------
BOOK = dict(
    samples=1000,  # input: randn(samples, units)
    units=100,
    layers=5,  # Linear(units, units, bias=False) → activation, five times
    bins=30,  # the book's 30 bins on (0, 1)
    seed=0,
)
BOOK_INITS = {  # label → (catalog init, options)
    "std1": ("normal", {"std": 1.0}),
    "std0.01": ("normal", {"std": 0.01}),
    "xavier": ("book_xavier", {}),  # the book's "Xavier": std √(1/n) (LeCun normal)
}
BOOK_TITLES = {
    "std1": "weights N(0, 1)",
    "std0.01": "weights N(0, 0.01²)",
    "xavier": "book's Xavier: N(0, 1/n)",
}

# -- Glorot & Bengio: a deep sigmoid net in training -------------------------------------------
GLOROT = TrainConfig(
    dataset="digits",
    depth=4,  # four sigmoid hidden layers, as the paper (1000 units there; 256 here for time)
    width=256,
    activation="sigmoid",
    init="torch_default",  # U[±1/√fan_in], biases 0: the paper's "standard" initialisation
    optimizer="sgd",
    lr=0.1,
    batch_size=10,  # the paper's minibatch size
    steps=1500,
    every=25,
    seed=0,
)
GLOROT_QUICK = dict(steps=300)


def book_histogram_run(activation: str, init: str, init_options: dict, config: dict = BOOK):
    """A recorder ``path -> None``: the book's 5-layer net, one recorded forward step (lr 0).

    Every layer's output is binned whole (no sampling) by the activations probe, so its
    counts, zeros and saturated fractions are exact.
    """

    def record(path: str) -> None:
        from collections import OrderedDict

        import torch
        from torch import nn

        import dyntrace
        from dyntrace.catalog.activations import make_activation
        from dyntrace.catalog.inits import init_
        from dyntrace.probes.activations import ActivationsProbe

        c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c["seed"])
            x = torch.randn(c["samples"], c["units"])
            layers = []
            for i in range(1, c["layers"] + 1):
                layers += [
                    (f"fc{i}", nn.Linear(c["units"], c["units"], bias=False)),
                    (f"act{i}", make_activation(activation)),
                ]
            model = init_(nn.Sequential(OrderedDict(layers)), init, **init_options)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # a measurement, not training
            probe = ActivationsProbe(bins=c["bins"], hist_sample=c["samples"] * c["units"])
            saved = {**c, "activation": activation, "init": init, "init_options": init_options, "lr": 0.0}
            with dyntrace.Recorder(model, optimizer, path, every=1, probes=[probe], config=saved):
                model(x)
                optimizer.step()  # lr 0 and no gradients: only advances the recorder to step 1

    return record


def runs(quick: bool) -> dict:
    out = {label: book_histogram_run("sigmoid", init, opts) for label, (init, opts) in BOOK_INITS.items()}
    config = GLOROT.replace(**GLOROT_QUICK) if quick else GLOROT
    out["training"] = config
    return out


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.activations import plot_activation_histograms
    from dyntrace.plots.gradient_flow import plot_gradient_norm_by_depth
    from dyntrace.plots.saturation_training import plot_saturation_training

    fig = Figure(figsize=(14, 14.5), layout="constrained")
    rows = fig.subfigures(4, 1, height_ratios=(1, 1, 1, 1.45))
    for sub, label in zip(rows, BOOK_INITS):
        axes = sub.subplots(1, BOOK["layers"])
        plot_activation_histograms(runs[label], ax=list(axes), titles="depth")
        top = max(a.dataLim.y1 for a in axes) * 1.05  # one y scale per row: layers compare
        for j, a in enumerate(axes):
            a.set_xlim(0, 1)
            a.set_ylim(0, top)
            if j:
                a.tick_params(labelleft=False)
            a.set_xlabel("sigmoid output" if label == "xavier" else "")
            if j:
                a.set_ylabel("")
        sub.suptitle(f"{BOOK_TITLES[label]}: 5 sigmoid layers at initialisation", fontweight="bold")
    left, right = rows[3].subplots(1, 2)
    depth = GLOROT.depth
    plot_saturation_training(
        runs["training"],
        ax=left,
        labels=[
            f"hidden layer {k}" + (" (input side)" if k == 1 else " (top)" if k == depth else "")
            for k in range(1, depth + 1)
        ],
    )
    left.set_title("Mean output of each sigmoid layer over training")
    plot_gradient_norm_by_depth(
        runs["training"], ax=right, tick_labels=[f"hidden {k}" for k in range(1, depth + 1)] + ["output"]
    )
    right.set_title("Gradient norm of each layer's weights, one line per record")
    rows[3].suptitle(
        "Training a 4-layer sigmoid net (Glorot & Bengio): the top layer saturates, gradients vanish towards the input",
        fontweight="bold",
    )
    return fig


def _per_layer(run, stat):
    """(steps, names, values [records, layers]) of a per-layer activation statistic."""
    if stat in ("min", "max"):
        names = run.names("activations")
        series = [run.stat("activations", n, stat) for n in names]
        return series[0][0], names, np.stack([v for _, v in series], axis=1)
    from dyntrace.plots.data import layer_stat

    return layer_stat(run, "activations", stat)


def saturation_claim(run, label: str = "std 1"):
    """Phenomenon: 55–85 % of every layer's outputs within 0.05 of 0 or 1 at initialisation.
    The book's Xavier run, a control, fails it."""
    _, _, sat = _per_layer(run, "frac_saturated")
    sat = sat[0]
    lo, hi = 0.64, 0.77
    inside = (sat >= lo) & (sat <= hi)
    band = (
        "inside in every layer"
        if inside.all()
        else (
            "outside in layer "
            + ", ".join(str(i + 1) for i in np.flatnonzero(~inside))
            + " (one draw of weights, low: six numpy draws of this setup give 64–77 %)"
        )
    )
    return claim(
        f"{label}: fraction of outputs < 0.05 or > 0.95, layers 1–5",
        sat,
        np.all((sat >= 0.55) & (sat <= 0.85)),
        f"55–85 % in every layer; book 64–77 %: {band}",
        kind="phenomenon",
    )


def top_layer_claim(run):
    """Phenomenon: the top hidden layer's mean output falls from 0.5 to below 0.35 in training."""
    steps, _, mean = _per_layer(run, "mean")
    first, last = mean[0], mean[-1]
    return claim(
        f"training: top hidden layer's mean output at step {int(steps[0])} → step {int(steps[-1])}",
        [first[-1], last[-1]],
        abs(first[-1] - 0.5) < 0.02 and last[-1] < 0.35,
        "0.5 → < 0.35; calibration 0.499 → 0.028 in 2000 steps (1000 units, synthetic data: "
        "wider layers saturate further)",
        kind="phenomenon",
    )


def claims(runs):
    from dyntrace.analysis import gradient_flow

    out = [saturation_claim(runs["std1"])]
    _, _, sd = _per_layer(runs["std0.01"], "std")
    _, _, lo = _per_layer(runs["std0.01"], "min")
    _, _, hi = _per_layer(runs["std0.01"], "max")
    sd = sd[0]
    out.append(
        claim(
            "std 0.01: output std, layers 1–5",
            sd,
            abs(sd[0] - 0.025) < 0.004 and np.all(np.abs(sd[1:] - 0.012) < 0.004),
            "book 0.025 → 0.012 (±0.004)",
            kind="check",
        )
    )
    spread = float(max(0.5 - lo.min(), hi.max() - 0.5))
    out.append(
        claim(
            "std 0.01: largest distance from 0.5 of any of the 500 000 outputs",
            spread,
            spread < 0.15,
            "< 0.15: all near 0.5 (no unit saturates)",
            kind="phenomenon",
        )
    )
    _, _, sd = _per_layer(runs["xavier"], "std")
    sd = sd[0]
    ref = np.array([0.21, 0.12, 0.11, 0.12, 0.12])
    out.append(
        claim(
            "book's Xavier: output std, layers 1–5",
            sd,
            np.all(np.abs(sd - ref) < 0.03),
            "book 0.21, 0.12, 0.11, 0.12, 0.12 (±0.03)",
            kind="check",
        )
    )
    run = runs["training"]
    out.append(top_layer_claim(run))
    _, _, mean = _per_layer(run, "mean")
    last = mean[-1]
    out.append(
        claim(
            "training: lower layers' mean output at the end (layers 1–3)",
            last[:-1],
            np.all(last[:-1] > 0.48),
            "> 0.48: stay near or above 0.5 (Glorot & Bengio)",
            kind="phenomenon",
        )
    )
    _, layers, norms = gradient_flow(run)
    avg = np.nanmean(norms, axis=0)
    names = [f"hidden {k}" for k in range(1, len(layers))] + ["output"]
    out.append(
        claim(
            f"gradient norm per layer ({', '.join(names)}), mean over records",
            avg,
            np.all(np.diff(avg) > 0) and avg[0] / avg[-1] < 1e-2,
            "grows towards the output, first ÷ last < 0.01 (each sigmoid passes back ≤ 1/4)",
            kind="phenomenon",
        )
    )
    return out
