"""The learning rate: too small, good, too large, diverging (seeds 002 and 004: "학습률이 너무 작으면
학습 시간이 너무 길어지고, 반대로 너무 크면 발산하여 학습이 제대로 이뤄지지 않는다").

1. Gradient descent on the 1-D bowl f(w) = w² (curvature 2) from w₀ = 2 at four rates, 12 steps:
   w_t = w₀(1 − 2η)ᵗ exactly, so it creeps for small η, lands in one step at η = 0.5, zig-zags
   inwards for 0.5 < η < 1 and outwards for η > 1 (= 2 / curvature).
2. One network, the same four kinds of rate: an MLP 64 → [100] × 2 → 10 (ReLU, He init) on
   digits, plain SGD on minibatches of 64, 1000 steps, at eight learning rates from 0.001 to 3,
   the same initial weights and minibatches for all. The activations probe records the share of
   dead ReLU units (output 0 on the whole minibatch).
"""

from __future__ import annotations

import math

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "Learning rate too small, good, too large, diverging: on a bowl and on a network"
CAPTION = """
Top: gradient descent on the bowl f(w) = w² from w = 2, twelve steps at four learning rates.
At η = 0.03 each step shrinks w by only 6 %: after 12 steps it is half-way. At η = 0.3 it is at the
bottom within a few steps. At η = 0.9 every step overshoots to the other side, and it zig-zags
slowly inwards. At η = 1.05 each step overshoots further than the last: the iterates leave the
bowl (diverge). For this bowl the boundary is exactly η = 1 = 2 / curvature.
Bottom: the same four kinds of rate training one network (MLP 64 → [100] × 2 → 10 on digits, SGD,
minibatch 64, 1000 steps). Left, the training loss (smoothed; faint: each minibatch): lr 0.003
creeps; lr 0.3 trains best; lr 1 jumps far above its starting loss, sits near uniform guessing
for hundreds of steps and recovers only to a worse end (at this rate the outcome changes from seed
to seed: the edge of stability); at lr 3 the loss explodes within a few steps and the network never recovers —
its ReLU units die (output 0 for every input) and it ends at ln 10 = 2.30, uniform guessing.
Right: the loss at the end against the learning rate, eight rates: the valley between too small
and too large; the four rates on the left are the coloured points.
"""

# -- configuration (saved into each run file) --------------------------------------------------
BOWL_CURVATURE = 2.0  # f(w) = w² = curvature · w² / 2
BOWL_START = 2.0
BOWL_STEPS = 12
BOWL_RATES = {"too_small": 0.03, "good": 0.3, "too_large": 0.9, "diverging": 1.05}

NET = TrainConfig(
    dataset="digits",
    depth=2,  # 64 → [100] × 2 → 10
    width=100,
    activation="relu",
    init="he_normal",
    optimizer="sgd",
    lr=0.3,
    batch_size=64,
    steps=1000,
    every=50,
    probes=["scalars", "activations"],  # activations: dead ReLU units
    seed=0,  # the same initial weights and minibatches at every rate
)
NET_RATES = {"too_small": 0.003, "good": 0.3, "too_large": 1.0, "diverging": 3.0}
SCAN = (0.001, 0.01, 0.03, 0.1)  # the other rates of the right panel (full mode only)
KINDS = {"too_small": "too small", "good": "good", "too_large": "too large", "diverging": "diverging"}
COLORS = {"too_small": "#0173b2", "good": "#029e73", "too_large": "#e69f00", "diverging": "#cc3311"}


def _bowl(lr: float):
    def record(path: str) -> None:
        import torch

        import dyntrace

        class Bowl(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.tensor(BOWL_START, dtype=torch.float64))

            def forward(self):
                return BOWL_CURVATURE * self.w**2 / 2

        bowl = Bowl()
        optimizer = torch.optim.SGD(bowl.parameters(), lr=lr)
        config = {
            "function": "curvature · w² / 2",
            "curvature": BOWL_CURVATURE,
            "start": BOWL_START,
            "optimizer": "sgd",
            "lr": lr,
            "steps": BOWL_STEPS,
        }
        with dyntrace.Recorder(bowl, optimizer, path, every=1, probes=["scalars"], config=config) as rec:
            for _ in range(BOWL_STEPS):
                optimizer.zero_grad()
                loss = bowl()
                rec.log(w=bowl.w.detach().clone(), loss=loss.detach())  # step t: the point after t updates
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                rec.log(w=bowl.w.detach().clone(), loss=bowl().detach())

    return record


def runs(quick: bool) -> dict:
    out = {f"bowl_{k}": _bowl(lr) for k, lr in BOWL_RATES.items()}
    # quick mode keeps the four network runs whole (lr 1 recovers only after ~450 steps) and
    # leaves out the other rates of the right panel
    out.update({f"net_{k}": NET.replace(lr=lr) for k, lr in NET_RATES.items()})
    if not quick:
        out.update({f"scan_{lr:g}": NET.replace(lr=lr, probes=["scalars"]) for lr in SCAN})
    return out


def dead_fraction(run):
    """Share of each ReLU layer's units dead (0 on the whole minibatch) at the last record."""
    names = [n for n, kind in run.kinds("activations").items() if kind == "relu"]
    return [float(run.stat("activations", n, "frac_dead")[1][-1]) for n in names]


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.curves import plot_curves
    from dyntrace.plots.learning_rates import plot_bowl_steps, plot_loss_by_lr

    fig = Figure(figsize=(15, 9), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1, 1.25))
    for ax, (k, lr) in zip(top.subplots(1, 4, sharey=True), BOWL_RATES.items()):
        plot_bowl_steps(
            runs[f"bowl_{k}"],
            ax=ax,
            color=COLORS[k],
            wlim=3.0,
            title=f"{KINDS[k]}: η = {lr:g}, w ← {1 - BOWL_CURVATURE * lr:.2f}·w",
        )
        ax.title.set_color(COLORS[k])
    for ax in top.axes[1:]:
        ax.set_ylabel("")
    top.suptitle("Gradient descent on the bowl f(w) = w² from w = 2, 12 steps (○ start, + minimum)")

    left, right = bottom.subplots(1, 2, width_ratios=(1.6, 1))
    net = [f"net_{k}" for k in NET_RATES]
    labels = [f"{KINDS[k]}: lr {lr:g}" for k, lr in NET_RATES.items()]
    colors = [COLORS[k] for k in NET_RATES]
    plot_curves(
        [runs[k] for k in net],
        labels=labels,
        colors=colors,
        beta=0.95,
        ax=left,
        ylabel="training loss (cross-entropy)",
        logy=True,
    )
    left.axhline(math.log(10), color="gray", lw=0.9, ls=":")
    left.text(
        0.99,
        math.log(10) * 1.15,
        "ln 10: uniform guessing",
        transform=left.get_yaxis_transform(),
        ha="right",
        fontsize="small",
        color="dimgray",
    )
    left.get_legend().remove()
    left.set_title("Training loss (faint: each minibatch; solid: EWMA β = 0.95)")
    scan = net + [k for k in runs if k.startswith("scan_")]
    plot_loss_by_lr(
        [runs[k] for k in scan],
        ax=right,
        colors=colors + [None] * (len(scan) - len(net)),
        labels=labels + [None] * (len(scan) - len(net)),
        reference=math.log(10),
    )
    right.set_title("Loss at the end (last 5 % of steps) by learning rate")
    handles, texts = left.get_legend_handles_labels()
    bottom.legend(handles, texts, loc="outside lower center", ncols=4)
    bottom.suptitle(
        "One network at those four kinds of rate: MLP 64 → [100] × 2 → 10 on digits, SGD, minibatch 64"
    )
    return fig


def claims(runs):
    from dyntrace.plots.learning_rates import bowl_steps, final_losses

    out = []
    error = 0.0
    grows = {}
    for k, lr in BOWL_RATES.items():
        steps, w, _ = bowl_steps(runs[f"bowl_{k}"])
        error = max(error, float(np.max(np.abs(w - BOWL_START * (1 - BOWL_CURVATURE * lr) ** steps))))
        grows[k] = abs(w[-1]) > abs(w[0])
    out.append(
        claim(
            "bowl: every iterate is w₀(1 − 2η)ᵗ (largest deviation over the four rates)",
            error,
            error < 1e-12,
            "exact (float64 round-off)",
        )
    )
    out.append(
        claim(
            "bowl: |w| grows only above η = 2 / curvature = 1 (the iterates that ended further out)",
            [KINDS[k] for k, g in grows.items() if g] or "none",
            grows == {k: lr > 1 for k, lr in BOWL_RATES.items()},
            "diverging only (η = 1.05 > 1)",
        )
    )
    out.append(claim_too_small(runs["net_too_small"]))
    loss = {k: final_losses(runs[f"net_{k}"]) for k in NET_RATES}  # (start, end, largest)
    ends = {KINDS[k]: v[1] for k, v in loss.items()}
    out.append(
        claim(
            f"lr {NET_RATES['good']:g} ends with the lowest loss of the four",
            ends,
            min(ends, key=ends.get) == "good",
            "the valley of the right panel",
            kind="phenomenon",
        )
    )
    start, end, largest = loss["too_large"]
    out.append(
        claim(
            f"lr {NET_RATES['too_large']:g} is too large: the loss jumps above its start and ends ≥ 10 × "
            "above the good rate's",
            {"largest / start": largest / start, "end / good rate's end": end / loss["good"][1]},
            largest > start and end >= 10 * loss["good"][1],
            "largest / start > 1; end ratio ≥ 10",
            kind="phenomenon",
        )
    )
    out.append(claim_diverges(runs["net_diverging"]))
    out.append(claim_dead_after_divergence(runs["net_diverging"]))
    return out


def claim_too_small(run):
    """The too-small rate's claim, on the run recorded at that rate (a control: any other run)."""
    from dyntrace.plots.learning_rates import final_losses

    start, end, _ = final_losses(run)
    return claim(
        f"lr {NET_RATES['too_small']:g} is too small: the loss at the end is still ≥ 25 % of its start",
        end / start,
        end / start >= 0.25,
        "< 1 % at the good rate",
        kind="phenomenon",
    )


def claim_diverges(run):
    """The diverging rate's claim: the loss explodes and ends at uniform guessing."""
    from dyntrace.plots.learning_rates import final_losses

    start, end, largest = final_losses(run)
    return claim(
        f"lr {NET_RATES['diverging']:g} diverges: the loss explodes ≥ 10 × its start and the network "
        "ends at uniform guessing",
        {"largest / start": largest / start, "end": end},
        largest >= 10 * start and abs(end - math.log(10)) < 0.05,
        f"ln 10 = {math.log(10):.3f}",
        kind="phenomenon",
    )


def claim_dead_after_divergence(run):
    """After the explosion the ReLU units are dead."""
    dead = dead_fraction(run)
    return claim(
        f"lr {NET_RATES['diverging']:g}: after the explosion ≥ 90 % of the ReLU units of each layer are dead",
        dead,
        min(dead) >= 0.9,
        "a dead ReLU gets no gradient: no recovery",
        kind="phenomenon",
    )
