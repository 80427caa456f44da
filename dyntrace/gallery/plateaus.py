"""Plateaus and their escapes (seed 001): SGD vs Momentum vs Adam, compared fairly.

1. A deep linear network from small weights (Saxe, McClelland & Ganguli 2014): the loss falls
   in stages, one per singular mode of the teacher, strongest first, with a plateau before
   each. The levels between stages are known: the loss of the modes not yet learned. SGD and
   Momentum run at the same *effective* learning rate η/(1 − μ) (the step momentum takes once
   its velocity has settled on a slowly changing gradient, as on a plateau): the fair race
   between the two. Adam's step is about lr per coordinate whatever the gradient's size, so no
   Adam rate equals SGD's; it runs at the largest rate of a ×1.25 grid whose loss never rises.
2. The catalog's 2-D "plateau" surface f = 1 − exp(−(x² + y²)/2) from (−3, 2), where the
   gradient is about 5e-3: each optimizer at its best rate, the rate of a grid of powers of two
   that brings f below 1e-3 (and keeps it there) in the fewest updates. Every grid run is
   recorded; the figure shows the grid.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "Plateaus: a deep linear net learns in stages; at their best rates momentum and Adam leave a plateau sooner"
CAPTION = """
Top: full-batch training of a linear network 8 → 16 → 8 from small weights (normal, std 1e-4) on
targets y = W x of a teacher with singular values 4, 2, 1, 0.5 (Saxe et al. 2014). The loss falls
in four stages — one mode of the teacher at a time, strongest first — and sits on a plateau
before each, at the level theory predicts: the loss of the modes not yet learned, Σ s² of the
rest / 8 outputs = 2.66, 0.66, 0.16, 0.03 (dotted). Every one of them is detected (bars) and left
(×). A fair race between SGD and Momentum gives both the same effective learning rate η/(1 − μ) =
0.05 (Momentum: η = 0.005, μ = 0.9): on a plateau, where the gradient hardly changes, momentum's
velocity settles at g/(1 − μ), so it is plain SGD with a larger step — at the same effective step
it is not faster: it learns every stage a little later, while its velocity builds up. Adam (lr
0.004, the largest rate of a ×1.25 grid whose loss never rises; its step is ≈ lr per coordinate
whatever the gradient's size) normalises the tiny plateau gradient and learns all four modes at
once, without stages. Bottom: the same race on the 2-D plateau f = 1 − exp(−(x² + y²)/2) from
(−3, 2), where |∇f| ≈ 5e-3, each optimizer at its best rate (right: the updates each rate of a
grid of powers of two needs to bring f below 1e-3; circled: the best). At their best rates
momentum and Adam leave the plateau 5 to 20 times sooner than SGD: momentum because its stable
range is wider (η < 2(1 + μ) vs 2 for the curvature 1 of the well), Adam because it does not
scale its step by the gradient. Paths: one panel each, equal axes.
"""

# -- configuration ------------------------------------------------------------------------------
DEEP = TrainConfig(
    dataset="deep_linear",  # x ~ N(0, I₈), y = U diag(4, 2, 1, 0.5) Vᵀ x, 700 training examples
    model="mlp",
    depth=1,  # 8 → 16 → 8, linear: two weight matrices
    width=16,
    activation="linear",
    init="normal",
    init_options={"std": 1e-4},  # small init: the product of the weights starts near 0, plateaus are long
    batch_size=700,  # the whole training set: gradient descent, so stages are not hidden by noise
    steps=1500,
    every=50,
    probes=["scalars"],
    seed=0,
)
EFFECTIVE_LR = 0.05  # η/(1 − μ) for SGD and Momentum alike
MU = 0.9
DEEP_RUNS = {  # label: (optimizer, lr)
    "deep_sgd": ("sgd", EFFECTIVE_LR),
    "deep_momentum": ("momentum", EFFECTIVE_LR * (1 - MU)),
    "deep_adam": ("adam", 0.004),  # the largest of 0.002 × 1.25ᵏ whose loss never rises (1500 steps)
}
# Plateaus of a deep linear loss are not flat: a window of 20 steps counts as flat while the loss
# changes by < 10 % over it.
PLATEAU_WINDOW, PLATEAU_THRESHOLD = 20, 0.1
SINGULAR_VALUES = (4.0, 2.0, 1.0, 0.5)  # the catalog's default teacher
N_OUTPUTS = 8
LEVEL_TOLERANCE = 0.15  # a detected plateau is "at" a predicted level within 15 %

SURFACE = "plateau"  # catalog functions2d: 1 − exp(−(x² + y²)/2), start (−3, 2)
GRID = {  # optimizer: learning rates tried on the 2-D plateau (powers of two around the best)
    "sgd": (0.5, 1.0, 2.0, 4.0),
    "momentum": (0.5, 1.0, 2.0, 4.0),
    "adam": (0.125, 0.25, 0.5, 1.0, 2.0, 4.0),
}
PATH_STEPS = 150
CONVERGED = 1e-3  # f below this (and staying below for the rest of the run) counts as converged
ESCAPE_DROP = 0.1  # escaped once the loss is 10 % below where it started

LABELS = {"sgd": "SGD", "momentum": f"Momentum (μ {MU})", "adam": "Adam"}


def _path(optimizer: str, lr: float, steps: int):
    def record(path: str) -> None:
        from dyntrace.paths import optimizer_path

        optimizer_path(SURFACE, optimizer, lr=lr, steps=steps, path=path, probes=["scalars"])

    return record


def runs(quick: bool) -> dict:
    steps = 700 if quick else DEEP.steps  # quick: the first three stages
    out = {label: DEEP.replace(optimizer=opt, lr=lr, steps=steps) for label, (opt, lr) in DEEP_RUNS.items()}
    for opt, rates in GRID.items():
        for lr in rates:
            out[f"path_{opt}_lr{lr:g}"] = _path(opt, lr, 100 if quick else PATH_STEPS)
    return out


def _label(run) -> str:
    config = run.config
    return f"{LABELS[config['optimizer']]}, lr {config['lr']:g}"


def _theory_levels() -> list[float]:
    """Loss with the k strongest modes learned, k = 0 … 3: Σ s² of the rest / outputs."""
    s2 = np.square(SINGULAR_VALUES)
    return [float(s2[k:].sum() / N_OUTPUTS) for k in range(len(s2))]


# -- the 2-D grid -------------------------------------------------------------------------------
def updates_to_converge(run) -> int | None:
    """The first update after which f stays below CONVERGED for the rest of the run (None: never)."""
    steps, loss = run.scalar("loss")
    above = np.flatnonzero(~(loss < CONVERGED))
    if above.size == 0:
        return int(steps[0])
    if above[-1] == len(loss) - 1:
        return None
    return int(steps[above[-1] + 1])


def grid_results(runs) -> dict:
    """{optimizer: [(lr, updates to converge or None)]} over the recorded grid."""
    out = {}
    for opt, rates in GRID.items():
        out[opt] = [
            (lr, updates_to_converge(runs[f"path_{opt}_lr{lr:g}"]))
            for lr in rates
            if f"path_{opt}_lr{lr:g}" in runs
        ]
    return out


def best_rates(runs) -> dict:
    """{optimizer: lr that converges in the fewest updates}."""
    best = {}
    for opt, results in grid_results(runs).items():
        done = [(n, lr) for lr, n in results if n is not None]
        best[opt] = min(done)[1] if done else results[0][0]
    return best


# -- figure -------------------------------------------------------------------------------------
def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.layout import legend
    from dyntrace.plots.optimizer_paths import plot_optimizer_path
    from dyntrace.plots.plateau_escape import plot_plateau_escape, plot_rate_grid
    from dyntrace.plots.theme import NEUTRAL, method_colors

    colors = dict(zip(LABELS, method_colors(LABELS)))
    fig = Figure(figsize=(15, 10), layout="constrained")
    grid = fig.add_gridspec(2, 4, height_ratios=(1.15, 1))
    top = fig.add_subplot(grid[0, :3])
    deep = [runs[k] for k in DEEP_RUNS]
    plot_plateau_escape(
        deep,
        labels=[_label(r) for r in deep],
        colors=[colors[opt] for opt, _ in DEEP_RUNS.values()],
        ax=top,
        window=PLATEAU_WINDOW,
        threshold=PLATEAU_THRESHOLD,
        escape_drop=ESCAPE_DROP,
        logy=True,
        ylabel="training loss (MSE)",
    )
    for i, level in enumerate(_theory_levels()):
        top.axhline(
            level,
            color=NEUTRAL,
            lw=1.0,
            ls=":",
            zorder=1,
            label="predicted levels (Saxe et al.)" if i == 0 else None,
        )
        rest = f"modes {i + 1}–4" if i < 3 else "mode 4"
        top.annotate(
            f"{level:.2f}: {rest} still to learn",
            (1.0, level),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize="small",
            color="dimgray",
        )
    top.set_ylim(0.01, 5)  # the four levels, evenly spaced on the log axis
    handles, labels = top.get_legend_handles_labels()
    top.get_legend().remove()
    legend(top, owns=False, handles=handles, labels=labels)
    top.set_title(
        f"Deep linear net 8 → 16 → 8 from small weights, full batch: SGD and Momentum at the same "
        f"effective rate η/(1 − μ) = {EFFECTIVE_LR:g}",
        fontsize="medium",
    )
    best = best_rates(runs)
    plot_rate_grid(
        grid_results(runs),
        best=best,
        colors=colors,
        labels=LABELS,
        converged=CONVERGED,
        ax=fig.add_subplot(grid[0, 3]),
    )
    paths = {opt: runs[f"path_{opt}_lr{lr:g}"] for opt, lr in best.items()}
    for i, (opt, run) in enumerate(paths.items()):
        ax = fig.add_subplot(grid[1, i])
        plot_optimizer_path(run, ax=ax, color=colors[opt], label=_label(run))
        ax.set_title(f"{_label(run)} (its best)", fontsize="medium")
    right = fig.add_subplot(grid[1, 3])
    plot_plateau_escape(
        list(paths.values()),
        labels=[_label(r) for r in paths.values()],
        colors=[colors[o] for o in paths],
        ax=right,
        escape_drop=ESCAPE_DROP,
        min_level=0.5,
        start_escape=True,
        logy=False,
        ylabel="f(x_t, y_t)",
    )
    right.set_xlabel("updates t")
    right.set_title("f along each path at its best rate", fontsize="medium")
    fig.suptitle("Plateaus: where the gradient is tiny, plain SGD crawls", fontweight="bold")
    return fig


# -- claims -------------------------------------------------------------------------------------
def _plateaus(run):
    from dyntrace.analysis import find_plateaus

    steps, loss = run.scalar("loss")
    return [
        p
        for p in find_plateaus(
            steps, loss, window=PLATEAU_WINDOW, threshold=PLATEAU_THRESHOLD, escape_drop=ESCAPE_DROP
        )
        if p.escape is not None
    ]


def _stage_escapes(run) -> list:
    """For each predicted level, the escape step of the detected plateau within LEVEL_TOLERANCE of
    it (None where no plateau is detected at that level)."""
    found = _plateaus(run)
    out = []
    for level in _theory_levels():
        near = [p for p in found if abs(p.level - level) / level <= LEVEL_TOLERANCE]
        out.append(near[0].escape if near else None)
    return out


def stages_claim(run, label: str | None = None):
    """Phenomenon: a plateau detected (and left) at every predicted level within 15 % — all four
    in a full run, the first three in quick mode — and nowhere else. Adam (no stages) or a large
    init fails it."""
    label = label or _label(run)
    found = _plateaus(run)
    levels = _theory_levels()
    escapes = _stage_escapes(run)
    stray = [p for p in found if min(abs(p.level - t) / t for t in levels) > LEVEL_TOLERANCE]
    steps, _ = run.scalar("loss")
    need = len(levels) if steps[-1] >= DEEP.steps else len(levels) - 1
    matched = sum(e is not None for e in escapes)
    detected = {
        f"{t:.3g}": next(
            (round(p.level, 3) for p in found if abs(p.level - t) / t <= LEVEL_TOLERANCE), "none"
        )
        for t in levels
    }
    return claim(
        f"deep linear, {label}: a plateau detected (and left) at every predicted level, within "
        f"{LEVEL_TOLERANCE:.0%}, and nowhere else",
        {
            "predicted → detected": ", ".join(f"{k} → {v}" for k, v in detected.items()),
            "elsewhere": len(stray),
        },
        matched >= need and not stray,
        "levels Σ_{rest} s²/8 = " + ", ".join(f"{t:.3g}" for t in levels) + " (Saxe et al. 2014); "
        f"{need} of them in this run's length",
        kind="phenomenon",
    )


def claims(runs):
    out = [stages_claim(runs["deep_sgd"]), stages_claim(runs["deep_momentum"])]
    sgd, mom = _stage_escapes(runs["deep_sgd"]), _stage_escapes(runs["deep_momentum"])
    pairs = [(s, m) for s, m in zip(sgd, mom) if s is not None and m is not None]
    ratios = [m / s for s, m in pairs]
    out.append(
        claim(
            f"deep linear, equal effective rate η/(1 − μ) = {EFFECTIVE_LR:g}: each stage's escape step, "
            "Momentum ÷ SGD",
            ratios or "no stage in both",
            bool(ratios) and all(1.0 <= r <= 1.5 for r in ratios),
            "1–1.5: at the same effective step momentum is plain SGD, a little late while its velocity "
            "builds (not sooner)",
            kind="phenomenon",
        )
    )
    adam = _plateaus(runs["deep_adam"])
    adam_stages = [p for p in adam if p.level < 0.9 * _theory_levels()[0]]
    out.append(
        claim(
            f"deep linear, {_label(runs['deep_adam'])}: plateaus after the start (stages)",
            len(adam_stages),
            not adam_stages,
            "0: normalised per coordinate, Adam learns the modes together",
            kind="phenomenon",
        )
    )
    _, loss = runs["deep_adam"].scalar("loss")
    rises = int(np.sum(np.diff(loss) > 1e-9 * loss[:-1]))
    out.append(
        claim(
            f"deep linear, {_label(runs['deep_adam'])}: steps at which the loss rises",
            rises,
            rises == 0,
            "0 (the rate's criterion: the largest of the grid whose loss never rises)",
            kind="check",
        )
    )
    best = best_rates(runs)
    esc = {}
    for opt, lr in best.items():
        steps, loss = runs[f"path_{opt}_lr{lr:g}"].scalar("loss")
        from dyntrace.analysis import first_escape

        esc[opt] = first_escape(steps, loss, drop=ESCAPE_DROP)
    sgd_esc = esc["sgd"] if esc["sgd"] is not None else np.inf
    ok = all(v is not None and 3 * v <= sgd_esc for k, v in esc.items() if k != "sgd")
    out.append(
        claim(
            "2-D plateau, each at its best rate: the update at which f is first 10 % below its start",
            {f"{LABELS[k]} (lr {best[k]:g})": (v if v is not None else "never") for k, v in esc.items()},
            ok,
            "momentum and Adam ≥ 3× sooner than SGD (seed 001: they leave plateaus sooner)",
            kind="phenomenon",
        )
    )
    grid = grid_results(runs)
    edges = {}
    for opt, results in grid.items():
        done = [lr for lr, n in results if n is not None]
        edges[LABELS[opt]] = f"converges up to lr {max(done):g}" if done else "never"
    sgd_limit = max(lr for lr, n in grid["sgd"] if n is not None) if any(n for _, n in grid["sgd"]) else 0
    mom_limit = (
        max(lr for lr, n in grid["momentum"] if n is not None) if any(n for _, n in grid["momentum"]) else 0
    )
    out.append(
        claim(
            "2-D plateau: the largest converging rate of the grid (the well's curvature is 1)",
            edges,
            sgd_limit <= 2 < 4 and 2 <= mom_limit < 3.8,
            "SGD diverges above 2/λ = 2; heavy ball stays stable up to 2(1 + μ)/λ = 3.8",
            kind="check",
        )
    )
    return out
