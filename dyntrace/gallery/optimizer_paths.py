"""Optimizer paths on the book's anisotropic bowl f(x, y) = x²/20 + y² (Saito ch. 6; seed 002)."""

from __future__ import annotations

from functools import partial

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Eight optimizers on the anisotropic bowl f(x, y) = x²/20 + y²"
CAPTION = """
Thirty updates of each optimizer from (−7, 2) on the bowl of Saito's book (chapter 6), the point
recorded after every update. Top row, the book's four with its settings: SGD (lr 0.95)
zig-zags across the steep y direction — exactly y_t = 2·(−0.9)ᵗ — while it crawls along the
shallow x direction (x_t = −7·0.905ᵗ); Momentum (lr 0.1, μ 0.9) overshoots and swings around
the minimum; AdaGrad (lr 1.5) kills the y motion in a few steps and then slows down as its
accumulator grows; Adam (lr 0.3) heads for the minimum on a curved path. Bottom row: Nesterov (lr
0.1, μ 0.9) swings less than Momentum at the same settings; RMSprop (lr 0.1, decay 0.99) moves
like AdaGrad but keeps its pace; RAdam at Adam's lr 0.3 takes five plain momentum steps
(lr·m̂) and then rectified steps scaled by r_t ≈ 0.03–0.1, so it covers a fraction of Adam's way in
30 updates; Lookahead around SGD (lr 0.95, k 5, α 0.5) pulls the fast weights halfway back every
5th step, which cancels SGD's zig-zag but also halves its progress along x. Right: f along each path.
"""

FUNCTION = "bowl"  # f(x, y) = x²/20 + y², start (−7, 2): REFERENCES §1
STEPS = 30  # updates; the book's figure shows the first 30 points (the start and 29 updates)

# label: (catalog optimizer, lr, options). book=True: the book's ε conventions (AdaGrad/RMSprop
# ε 1e-7, Adam's ε before bias correction); SGD and Momentum are the same rules either way.
OPTIMIZERS = {
    "sgd": ("sgd", 0.95, {}),
    "momentum": ("momentum", 0.1, {"momentum": 0.9}),
    "adagrad": ("adagrad", 1.5, {"book": True}),
    "adam": ("adam", 0.3, {"book": True}),
    "nesterov": ("nesterov", 0.1, {"momentum": 0.9}),  # Momentum's settings: less overshoot
    "rmsprop": ("rmsprop", 0.1, {"book": True}),  # decay 0.99 (the book's), ε 1e-7
    "radam": ("radam", 0.3, {}),  # Adam's lr: the rectification's caution shows
    "lookahead": ("lookahead", 0.95, {"inner": "sgd", "k": 5, "alpha": 0.5}),  # around SGD's settings
}
TITLES = {
    "sgd": "SGD (lr 0.95)",
    "momentum": "Momentum (lr 0.1, μ 0.9)",
    "adagrad": "AdaGrad (lr 1.5)",
    "adam": "Adam (lr 0.3)",
    "nesterov": "Nesterov (lr 0.1, μ 0.9)",
    "rmsprop": "RMSprop (lr 0.1)",
    "radam": "RAdam (lr 0.3)",
    "lookahead": "Lookahead(SGD lr 0.95, k 5, α 0.5)",
}

# REFERENCES §1: the book's points after 29 updates (its last plotted point).
BOOK_AT_29 = {
    "sgd": (-0.387, -0.094),
    "momentum": (0.814, 0.273),
    "adagrad": (-0.136, 0.000),
    "adam": (0.020, 0.322),
}


def _record(name, lr, options, path):
    from dyntrace.paths import optimizer_path

    optimizer_path(FUNCTION, name, lr=lr, steps=STEPS, path=path, **options)


def runs(quick: bool) -> dict:
    # 8 × 30 updates of a 2-number model take about a second: quick mode runs the same.
    return {label: partial(_record, name, lr, options) for label, (name, lr, options) in OPTIMIZERS.items()}


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.optimizer_paths import plot_optimizer_paths, plot_path_losses

    fig = Figure(figsize=(17, 5.4), layout="constrained")  # equal axes: the panels are twice as wide as high
    left, right = fig.subfigures(1, 2, width_ratios=(3.3, 1))
    plot_optimizer_paths(
        list(runs.values()),
        labels=[TITLES[k] for k in runs],
        ax=list(left.subplots(2, 4, sharex=True, sharey=True).ravel()),
    )
    for i, a in enumerate(left.axes):
        if i % 4:
            a.set_ylabel("")
        if i < 4:
            a.set_xlabel("")
    left.suptitle(
        "Paths over the contour of f(x, y) = x²/20 + y² from (−7, 2), 30 updates (○ start, ■ end, + minimum)",
        fontweight="bold",
    )
    ax = right.subplots()
    plot_path_losses(
        list(runs.values()), labels=[TITLES[k].split(" (")[0].split("(")[0] for k in runs], ax=ax
    )
    legend = ax.get_legend()
    if legend is not None:
        legend.remove()
    right.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small")
    return fig


def _xy(run):
    steps, x = run.scalar("x")
    _, y = run.scalar("y")
    return steps, x, y


def claims(runs):
    out = []
    steps, x, y = _xy(runs["sgd"])
    t = steps.astype(np.float64)
    error = max(np.max(np.abs(x - (-7.0 * 0.905**t))), np.max(np.abs(y - 2.0 * (-0.9) ** t)))
    out.append(
        claim(
            "SGD zig-zags exactly: x_t = −7·0.905ᵗ, y_t = 2·(−0.9)ᵗ for every recorded t (largest deviation)",
            error,
            error < 1e-12,
            "exact (0 up to float64 round-off)",
            kind="check",
        )
    )
    got, worst = {}, 0.0
    for label, (bx, by) in BOOK_AT_29.items():
        steps, x, y = _xy(runs[label])
        i = int(np.flatnonzero(steps == 29)[0])
        got[TITLES[label].split(" (")[0]] = f"({x[i]:.3f}, {y[i]:.3f})"
        worst = max(worst, abs(x[i] - bx), abs(y[i] - by))
    out.append(
        claim(
            "after 29 updates, the book's four at the book's positions",
            got,
            worst < 1e-3,
            "book: "
            + ", ".join(f"({bx:.3f}, {by:.3f})" for bx, by in BOOK_AT_29.values())
            + f"; largest difference {worst:.1e} (< 1e-3)",
            kind="check",
        )
    )

    f_end = {label: float(run.scalar("loss")[1][-1]) for label, run in runs.items()}
    out.append(
        claim(
            "Nesterov ends lower than Momentum at the same lr and μ (f after 30 updates)",
            {"Nesterov": f_end["nesterov"], "Momentum": f_end["momentum"]},
            f_end["nesterov"] < f_end["momentum"],
            "Nesterov < Momentum",
            kind="phenomenon",
        )
    )

    _, ax_, ay = _xy(runs["adam"])
    _, rx, ry = _xy(runs["radam"])
    # RAdam's first update is unrectified: −lr·m̂₁ = −lr·g₀ with g₀ = (x₀/10, 2y₀) = (−0.7, 4)
    first = (rx[1] - rx[0], ry[1] - ry[0])
    length = {
        name: float(np.sum(np.hypot(np.diff(px[5:]), np.diff(py[5:]))))
        for name, px, py in (("RAdam", rx, ry), ("Adam", ax_, ay))
    }
    out.append(
        claim(
            "RAdam's first update is the plain momentum step −lr·g₀ (not rectified)",
            f"({first[0]:.3f}, {first[1]:.3f})",
            np.allclose(first, (0.21, -1.2), atol=1e-9),
            "(0.210, −1.200)",
            kind="check",
        )
    )
    out.append(
        claim(
            "rectified RAdam (updates 6–30, r_t ≤ 0.1) travels under a quarter of Adam's path length",
            length,
            length["RAdam"] < 0.25 * length["Adam"],
            "RAdam < ¼ Adam",
            kind="phenomenon",
        )
    )

    _, sx, sy = _xy(runs["sgd"])
    _, lx, ly = _xy(runs["lookahead"])
    out.append(
        claim(
            "Lookahead around SGD cancels the zig-zag (y after 30 updates, in size) but lags along x",
            {"y Lookahead": ly[-1], "y SGD": sy[-1], "x Lookahead": lx[-1], "x SGD": sx[-1]},
            abs(ly[-1]) < 0.1 * abs(sy[-1]) and lx[-1] < sx[-1],
            "size of y: Lookahead ≪ SGD; x: Lookahead further from 0",
            kind="phenomenon",
        )
    )
    return out
