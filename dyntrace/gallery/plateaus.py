"""Plateaus and their escapes (seed 001): SGD vs Momentum vs Adam on two flat starts.

1. A deep linear network from small weights (Saxe, McClelland & Ganguli 2014): the loss falls
   in stages, one per singular mode of the teacher, strongest first, with a plateau before
   each. The levels between stages are known: the loss of the modes not yet learned.
2. The catalog's 2-D "plateau" surface f = 1 − exp(−(x² + y²)/2) from (−3, 2), where the
   gradient is about 5e-3: plain SGD barely moves for dozens of steps.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "Plateaus: a deep linear net learns in stages; momentum and Adam leave a plateau sooner"
CAPTION = """
Top: full-batch training of a linear network 8 → 16 → 8 from small weights (normal, std 0.001)
on targets y = W x of a teacher with singular values 4, 2, 1, 0.5 (Saxe et al. 2014). With SGD
the loss falls in stages — one mode of the teacher at a time, strongest first — and sits on a
plateau before each; the plateaus that find_plateaus detects (bars) lie at the levels theory
predicts, the loss of the modes not yet learned (Σ s² of the rest / 8 outputs = 2.66, 0.66,
0.16, 0.03). Momentum (μ 0.9) at the same learning rate, and Adam at a tenth of it, leave the
first plateau much sooner (× marks the escape from each detected plateau; the dotted lines mark the first step
10 % below the starting loss, the escape the claims compare).
Bottom: the same race on the 2-D plateau f = 1 − exp(−(x² + y²)/2) from (−3, 2), where the
gradient is ≈ 5e-3: plain SGD creeps for dozens of steps; momentum builds up speed and Adam
normalises the tiny gradient, so both drop into the well sooner.
"""

# -- configuration ------------------------------------------------------------------------------
DEEP = TrainConfig(
    dataset="deep_linear",  # x ~ N(0, I₈), y = U diag(4, 2, 1, 0.5) Vᵀ x, 700 training examples
    model="mlp",
    depth=1,  # 8 → 16 → 8, linear: two weight matrices
    width=16,
    activation="linear",
    init="normal",
    init_options={"std": 0.001},  # small init: the product of the weights starts near 0
    batch_size=700,  # the whole training set: gradient descent, so stages are not hidden by noise
    steps=1500,
    every=50,
    probes=["scalars"],
    seed=0,
)
DEEP_RUNS = {  # label: (optimizer, lr)
    "deep_sgd": ("sgd", 0.05),
    "deep_momentum": ("momentum", 0.05),
    "deep_adam": ("adam", 0.05 / 10),  # Adam's lr is a step length; 0.05 oscillates at the end
}
# Plateaus of a deep linear loss are not flat: a window of 15 steps counts as flat while the loss
# changes by < 5 % over it.
PLATEAU_WINDOW, PLATEAU_THRESHOLD = 15, 0.05
SINGULAR_VALUES = (4.0, 2.0, 1.0, 0.5)  # the catalog's default teacher
N_OUTPUTS = 8

SURFACE = "plateau"  # catalog functions2d: 1 − exp(−(x² + y²)/2), start (−3, 2)
PATH_RUNS = {  # label: (optimizer, lr)
    "path_sgd": ("sgd", 1.0),
    "path_momentum": ("momentum", 1.0),
    "path_adam": ("adam", 0.1),
}
PATH_STEPS = 150
ESCAPE_DROP = 0.1  # escaped once the loss is 10 % below where it started

LABELS = {"sgd": "SGD", "momentum": "Momentum (μ 0.9)", "adam": "Adam"}


def _path(optimizer: str, lr: float, steps: int):
    def record(path: str) -> None:
        from dyntrace.paths import optimizer_path

        optimizer_path(SURFACE, optimizer, lr=lr, steps=steps, path=path, probes=["scalars"])

    return record


def runs(quick: bool) -> dict:
    steps = 500 if quick else DEEP.steps  # quick: the first two stages
    out = {label: DEEP.replace(optimizer=opt, lr=lr, steps=steps) for label, (opt, lr) in DEEP_RUNS.items()}
    out.update({label: _path(opt, lr, 100 if quick else PATH_STEPS) for label, (opt, lr) in PATH_RUNS.items()})
    return out


def _label(run) -> str:
    config = run.config
    return f"{LABELS[config['optimizer']]}, lr {config['lr']:g}"


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots._layout import legend
    from dyntrace.plots.optimizer_paths import plot_optimizer_path
    from dyntrace.plots.plateau_escape import plot_plateau_escape
    from dyntrace.plots.theme import series_color

    fig = Figure(figsize=(12, 8.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(1.1, 1))
    top = fig.add_subplot(grid[0, :])
    deep = [runs[k] for k in DEEP_RUNS]
    plot_plateau_escape(deep, labels=[_label(r) for r in deep], ax=top, window=PLATEAU_WINDOW,
                        threshold=PLATEAU_THRESHOLD, escape_drop=ESCAPE_DROP, start_escape=True,
                        ylabel="training loss (MSE)")
    for i, level in enumerate(_theory_levels()):
        top.axhline(level, color="gray", lw=0.9, ls=":", label="predicted plateau levels" if i == 0 else None)
    handles, labels = top.get_legend_handles_labels()
    top.get_legend().remove()
    legend(top, owns=False, handles=handles, labels=labels)
    top.set_title("Deep linear net 8 → 16 → 8 from small init (full batch): stages, plateaus (bars), escapes (×); "
                  "dotted: predicted levels", fontsize="medium")
    top.set_ylim(1e-11, 10)
    paths = [runs[k] for k in PATH_RUNS]
    left, right = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    for i, run in enumerate(paths):
        plot_optimizer_path(run, ax=left, contour=i == 0, color=series_color(i), label=_label(run))
    handles = [h for h in left.get_lines() if h.get_gid() == "path"]
    legend(left, owns=False, handles=handles, labels=[_label(r) for r in paths])
    left.set_title("Paths on f = 1 − exp(−(x² + y²)/2) from (−3, 2)", fontsize="medium")
    plot_plateau_escape(paths, labels=[_label(r) for r in paths], ax=right, escape_drop=ESCAPE_DROP,
                        min_level=0.5, start_escape=True, logy=False, ylabel="f(x_t, y_t)")
    right.set_xlabel("updates t")
    right.set_title("f along each path: plateau (bar), escapes (× and dotted)", fontsize="medium")
    return fig


def _theory_levels() -> list[float]:
    """Loss with the k strongest modes learned, k = 0 … 3: Σ s² of the rest / outputs."""
    s2 = np.square(SINGULAR_VALUES)
    return [float(s2[k:].sum() / N_OUTPUTS) for k in range(len(s2))]


def _escape(run):
    from dyntrace.plots.plateau_escape import first_escape

    steps, loss = run.scalar("loss")
    return first_escape(steps, loss, drop=ESCAPE_DROP)


def claims(runs):
    from dyntrace.analysis import find_plateaus

    out = []
    steps, loss = runs["deep_sgd"].scalar("loss")
    found = [p for p in find_plateaus(steps, loss, window=PLATEAU_WINDOW, threshold=PLATEAU_THRESHOLD,
                                      escape_drop=ESCAPE_DROP) if p.escape is not None]
    levels = _theory_levels()
    off = [min(abs(p.level - t) / t for t in levels) for p in found]
    out.append(claim("deep linear, SGD: the loss falls in ≥ 2 stages (plateaus found and left)",
                     {f"plateau {p.start}–{p.end}, level": p.level for p in found} or "none", len(found) >= 2,
                     "stages at 2.66, 0.66, 0.16, 0.03 (Saxe et al.)"))
    out.append(claim("deep linear, SGD: each plateau's level is within 15 % of a predicted level",
                     off, bool(off) and max(off) <= 0.15, "levels Σ_{rest} s²/8 = " + ", ".join(f"{t:.3g}" for t in levels)))
    for prefix, what in (("deep", "deep linear"), ("path", "2-D plateau")):
        esc = {k.split("_", 1)[1]: _escape(runs[k]) for k in runs if k.startswith(prefix + "_")}
        sgd = esc["sgd"] if esc["sgd"] is not None else np.inf
        ok = all(v is not None and v < sgd for k, v in esc.items() if k != "sgd")
        out.append(claim(f"{what}: momentum and Adam escape the starting plateau before SGD (step 10 % below the start)",
                         {LABELS[k]: (v if v is not None else "never") for k, v in esc.items()}, ok,
                         "momentum and adaptive methods leave plateaus sooner (seed 001)"))
    return out
