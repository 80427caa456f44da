"""Activation histograms by weight initialisation for sigmoid, tanh and ReLU (the book's ch. 6)."""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.gallery.vanishing_sigmoid import BOOK, book_histogram_run

TITLE = "Activation histograms by initialisation: std 0.01, Xavier, He × sigmoid, tanh, ReLU"
CAPTION = """
The book's experiment ("Deep Learning from Scratch" ch. 6) for three activations: 1000 Gaussian
inputs through 5 layers of 100 units (no bias), each layer's outputs recorded in one forward
step (colour: layer 1 → 5). Weights N(0, 0.01²), the book's "Xavier" N(0, 1/n) (= LeCun
normal) and He N(0, 2/n). Right column: each layer's output std (log scale). With ReLU, He
keeps the same spread in every layer while Xavier's halves the variance per layer (the
std shrinks with depth) and std 0.01 collapses to 0 within two layers; about half of every
ReLU layer's outputs are exact zeros (left out of the histograms, counted in the legends).
tanh with std 0.01 collapses as well; sigmoid with std 0.01 does not shrink but sits at 0.5
(its outputs carry the offset, not the signal).
"""

ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = {  # label → (catalog init, options, legend)
    "std0.01": ("normal", {"std": 0.01}, "N(0, 0.01²)"),
    "xavier": ("book_xavier", {}, "Xavier N(0, 1/n)"),
    "he": ("book_he", {}, "He N(0, 2/n)"),
}
BINS = {"sigmoid": 30, "tanh": 30, "relu": 60}  # the book's 30 on (0, 1); ReLU's range is wider
ROW_TITLES = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU"}


def runs(quick: bool) -> dict:
    # One forward step per run (milliseconds): quick and full mode record the same runs.
    return {
        f"{act}_{label}": book_histogram_run(act, init, opts, {**BOOK, "bins": BINS[act]})
        for act in ACTIVATIONS
        for label, (init, opts, _) in INITS.items()
    }


def figure(runs):
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from dyntrace.plots.init_histograms import plot_init_histograms, plot_init_spread
    from dyntrace.plots.theme import layer_colors

    fig = Figure(figsize=(16, 11), layout="constrained")
    grid = fig.subplots(len(ACTIVATIONS), len(INITS) + 1)
    for row, act in zip(grid, ACTIVATIONS):
        for a, (label, (_, _, name)) in zip(row, INITS.items()):
            plot_init_histograms(runs[f"{act}_{label}"], ax=a, title=f"{ROW_TITLES[act]}, {name}", key=False)
            if act != ACTIVATIONS[-1]:
                a.set_xlabel("output value")
        plot_init_spread({name: runs[f"{act}_{label}"] for label, (_, _, name) in INITS.items()}, ax=row[-1])
        row[-1].set_title(f"{ROW_TITLES[act]}: output std by layer")
    colors = layer_colors(BOOK["layers"])
    handles = [Line2D([], [], color=c, lw=2) for c in colors]
    fig.legend(
        handles,
        [f"layer {i + 1}" for i in range(len(colors))],
        loc="outside lower center",
        ncols=len(colors),
        title="histograms: one colour per layer (1 = input side)",
    )
    fig.suptitle(
        "Layer outputs at initialisation: 5 layers × 100 units, 1000 Gaussian inputs", fontweight="bold"
    )
    return fig


def _stat(run, stat):
    from dyntrace.plots.data import layer_stat

    return layer_stat(run, "activations", stat)[2][0]


def _band(values, lo, hi) -> str:
    """ "inside" or which layers fall outside [lo, hi] (1-based), for a reference band."""
    values = np.atleast_1d(values)
    out = [i + 1 for i, v in enumerate(values) if not lo <= v <= hi]
    if not out:
        return "inside"
    if len(values) == 1:
        return "outside (" + ("below" if values[0] < lo else "above") + ")"
    return "outside in layer " + ", ".join(map(str, out))


def claims(runs):
    out = []
    sd = _stat(runs["relu_he"], "std")
    out.append(
        claim(
            "ReLU + He: output std, layers 1–5",
            sd,
            np.all((sd > 0.65) & (sd < 1.1)) and sd.max() / sd.min() < 1.4,
            "same spread in every layer (largest ÷ smallest < 1.4); book sd ≈ 0.8–1.0: "
            + _band(sd, 0.8, 1.0)
            + " (four numpy draws of this setup: 0.71–1.0 by layer 5)",
            kind="phenomenon",
        )
    )
    sd = _stat(runs["relu_xavier"], "std")
    out.append(
        claim(
            "ReLU + Xavier: output std, layers 1–5",
            sd,
            np.all(np.diff(sd) < 0) and abs(sd[0] - 0.58) < 0.06 and 0.1 < sd[-1] < 0.25,
            "shrinks with depth; book 0.58 → 0.18: layer 5 "
            + _band(sd[-1:], 0.15, 0.21)
            + " (four numpy draws: 0.13–0.18)",
            kind="phenomenon",
        )
    )
    zeros = np.concatenate([_stat(runs[f"relu_{label}"], "frac_zero") for label in ("xavier", "he")])
    out.append(
        claim(
            "ReLU (Xavier and He): fraction of exact zeros per layer, lowest and highest",
            [zeros.min(), zeros.max()],
            np.all((zeros > 0.4) & (zeros < 0.6)),
            "≈ 50 %",
            kind="phenomenon",
        )
    )
    sd = _stat(runs["relu_std0.01"], "std")
    out.append(
        claim(
            "ReLU + std 0.01: output std, layers 1–5",
            sd,
            np.all(sd[1:] / sd[:-1] < 0.15),
            "collapses ≈ 14× per layer (0.01·√(n/2))",
            kind="phenomenon",
        )
    )
    tanh_x, tanh_s = _stat(runs["tanh_xavier"], "std"), _stat(runs["tanh_std0.01"], "std")
    out.append(
        claim(
            "tanh: last layer's std with Xavier vs with std 0.01",
            [tanh_x[-1], tanh_s[-1]],
            tanh_x[-1] > 0.2 and tanh_s[-1] < 1e-3,
            "broad vs collapsed (× 0.1 per layer)",
            kind="phenomenon",
        )
    )
    return out
