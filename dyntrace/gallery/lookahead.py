"""Lookahead's slow and fast weights (Zhang et al. 2019; REFERENCES §5)."""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "Lookahead: k fast steps forward, one step back"
CAPTION = """
Lookahead keeps slow weights φ beside the fast weights θ of an inner optimizer: θ takes k = 5
inner steps from φ, then φ ← φ + α(θ − φ) with α = 0.5 and θ restarts from φ (sync after every
5th step). Top: around SGD (lr 0.95) on the book's bowl f(x, y) = x²/20 + y², 30 steps from
(−7, 2). The fast weights still zig-zag across the valley (blue), but each sync averages the
start and the end of five zig-zag steps, so the slow weights (orange diamonds) keep only
(1 − 0.9⁵)/2 ≈ 0.20 of y per sync where plain SGD (grey) keeps 0.9⁵ ≈ 0.59 — and, the price,
(1 + 0.905⁵)/2 ≈ 0.80 of x where SGD keeps 0.61. Right: y over the steps — φ is constant between
syncs. Bottom: a 64-64 ReLU MLP on scikit-learn's 8×8 digits (the offline stand-in for MNIST),
SGD at a high lr 0.3 (batch 32) alone and inside Lookahead, from the same weights on the same
minibatches. Left: the validation loss after each epoch (dashed) rises by much less between
epochs with Lookahead, though its training loss falls more slowly. Right: the 'steps' probe's
cos(Δθ, −g) per parameter tensor: at inner steps Δθ = −lr·g exactly (cos = 1); at the sync
steps, which the probe marks (its 'synced' scalar), Δθ includes the pull-back and turns away
from −g.
"""

# -- configuration ----------------------------------------------------------------------------
K, ALPHA = 5, 0.5  # REFERENCES §5: sync after every k-th inner step (the authors' code uses α = 0.8)
BOWL_LR, BOWL_STEPS = 0.95, 30  # the book's SGD setting on x²/20 + y² from (−7, 2)
NET = TrainConfig(
    dataset="digits",
    depth=2,
    width=64,
    activation="relu",
    init="he_normal",
    optimizer="sgd",
    lr=0.3,  # high for plain SGD here: the validation loss jumps between epochs
    batch_size=32,
    steps=400,  # 10 epochs; quick: 150
    every=1,  # the 'steps' probe at every step: every sync is seen
    probes=["scalars", "steps"],
    seed=0,
)
LOOKAHEAD = {"optimizer": "lookahead", "optimizer_options": {"inner": "sgd", "k": K, "alpha": ALPHA}}


def _record_bowl(path):
    """Lookahead(SGD) on the bowl, logging θ, θ before the sync, and φ at every step."""
    import torch

    import dyntrace
    from dyntrace.catalog.functions2d import bowl
    from dyntrace.catalog.optimizers import make_optimizer
    from dyntrace.paths import Point

    config = {
        "function": "bowl",
        "optimizer": "lookahead",
        "inner": "sgd",
        "lr": BOWL_LR,
        "k": K,
        "alpha": ALPHA,
        "steps": BOWL_STEPS,
        "start": list(bowl.start),
        "logged": "x, y: θ after the step; presync_x/y: θ after the inner step; slow_x/y: φ",
    }
    point = Point(bowl, bowl.start)
    optimizer = make_optimizer("lookahead", point.parameters(), lr=BOWL_LR, inner="sgd", k=K, alpha=ALPHA)
    presync = {}
    # the inner optimizer's post hook runs inside Lookahead.step, before the sync
    handle = optimizer.optimizer.register_step_post_hook(
        lambda *_: presync.update(xy=point.xy.detach().clone())
    )

    def log(rec, loss):
        xy = point.xy.detach()
        slow = optimizer.state[point.xy].get("slow_param", xy)
        before = presync.get("xy", xy)
        rec.log(
            x=float(xy[0]),
            y=float(xy[1]),
            presync_x=float(before[0]),
            presync_y=float(before[1]),
            slow_x=float(slow[0]),
            slow_y=float(slow[1]),
            loss=float(loss),
        )

    try:
        with dyntrace.Recorder(
            point, optimizer, path, every=1, probes=["scalars", "steps"], config=config
        ) as rec:
            with torch.no_grad():
                log(rec, point())  # step 0: the start
            for _ in range(BOWL_STEPS):
                optimizer.zero_grad()
                loss = point()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    log(rec, point())
    finally:
        handle.remove()


def _record_sgd_bowl(path):
    from dyntrace.paths import optimizer_path

    optimizer_path("bowl", "sgd", lr=BOWL_LR, steps=BOWL_STEPS, path=path, probes=("scalars",))


def runs(quick: bool) -> dict:
    net = NET.replace(steps=150 if quick else NET.steps)
    return {
        "bowl": _record_bowl,
        "bowl_sgd": _record_sgd_bowl,
        "sgd": net,
        "lookahead": net.replace(**LOOKAHEAD),
    }


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.compare import plot_compare_loss
    from dyntrace.plots.lookahead import plot_lookahead_path, plot_slow_fast, plot_sync_geometry

    fig = Figure(figsize=(16, 10.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1, 1))
    a_path, a_y = top.subplots(1, 2, width_ratios=(1.45, 1))
    plot_lookahead_path(
        runs["bowl"],
        reference=runs["bowl_sgd"],
        reference_label=f"SGD alone (lr {BOWL_LR})",
        ax=a_path,
        xlim=(-8, 2),
        ylim=(-2.5, 2.5),
    )
    a_path.set_title(
        f"Lookahead(SGD lr {BOWL_LR}, k {K}, α {ALPHA}) on x²/20 + y² from (−7, 2), {BOWL_STEPS} steps"
    )
    plot_slow_fast(runs["bowl"], ax=a_y, coordinate="y")
    a_loss, a_cos = bottom.subplots(1, 2)
    lr = NET.lr
    from dyntrace.plots.theme import method_colors

    plot_compare_loss(
        [runs["sgd"], runs["lookahead"]],
        labels=[f"SGD (lr {lr:g})", f"Lookahead(SGD lr {lr:g}, k {K}, α {ALPHA})"],
        ax=a_loss,
        beta=0.95,
        colors=method_colors(["SGD", "Lookahead"]),
    )
    a_loss.set_title("Digits MLP: training loss (faint: per step, solid: EWMA) and validation loss per epoch")
    plot_sync_geometry(runs["lookahead"], ax=a_cos, field="cos", first=60)
    a_cos.set_title("Lookahead(SGD) on the MLP: cos(Δθ, −g) per tensor, first 60 steps")
    top.suptitle("The book's bowl: fast and slow weights", fontweight="bold")
    bottom.suptitle("A digits MLP at a high learning rate", fontweight="bold")
    return fig


def claims(runs):
    from dyntrace.plots.lookahead import lookahead_path, sync_steps

    out = []
    path = lookahead_path(runs["bowl"])
    expected_sync = np.arange(K, BOWL_STEPS + 1, K)
    moved = np.any(np.diff(path.slow, axis=0) != 0, axis=1)  # φ changed at step s (s = 1 … T)
    moved_at = path.steps[1:][moved]
    out.append(
        claim(
            "2-D: the slow weights φ change only at the steps that end with a sync (every 5th)",
            f"φ changed at steps {', '.join(map(str, moved_at))}",
            np.array_equal(moved_at, expected_sync),
            f"steps {', '.join(map(str, expected_sync))}",
            kind="check",
        )
    )
    sync = np.flatnonzero(path.synced)
    before = np.vstack([path.slow[:1], path.slow[sync[:-1]]])  # φ before each sync
    error = float(np.max(np.abs(path.slow[sync] - (before + ALPHA * (path.presync[sync] - before)))))
    reset = float(np.max(np.abs(path.fast[sync] - path.slow[sync])))
    out.append(
        claim(
            "2-D: at each sync φ moves by exactly α(θ − φ), θ before the sync, and θ restarts at φ (largest error)",
            {"φ step": error, "θ = φ after sync": reset},
            error < 1e-12 and reset == 0.0,
            "0 (float64 round-off)",
            kind="check",
        )
    )
    ratio = path.slow[sync[1:]] / path.slow[sync[:-1]]
    fx, fy = (1 + 0.905**K) / 2, (1 + (-0.9) ** K) / 2
    out.append(
        claim(
            "2-D: per sync the slow weights keep (1 + 0.905⁵)/2 of x and (1 − 0.9⁵)/2 of y "
            "(SGD alone: 0.905⁵, −0.9⁵ per 5 steps)",
            {"x": float(np.mean(ratio[:, 0])), "y": float(np.mean(ratio[:, 1]))},
            np.allclose(ratio[:, 0], fx, rtol=1e-9) and np.allclose(ratio[:, 1], fy, rtol=1e-9),
            f"x: {fx:.4f}, y: {fy:.4f}",
            kind="check",
        )
    )

    for key, total in (("bowl", BOWL_STEPS), ("lookahead", int(runs["lookahead"].config["steps"]))):
        marked = sync_steps(runs[key])
        want = np.arange(K, total + 1, K)
        out.append(
            claim(
                f"{'2-D' if key == 'bowl' else 'MLP'}: the 'steps' probe's synced scalar marks exactly "
                f"the steps k, 2k, … ({total} steps)",
                f"{len(marked)} steps marked: {', '.join(map(str, marked[:4]))}, …",
                np.array_equal(marked, want),
                f"{len(want)} steps: {', '.join(map(str, want[:4]))}, …",
                kind="check",
            )
        )

    la = runs["lookahead"]
    steps, cos = la.field("steps", "cos")
    synced = np.isin(steps, sync_steps(la))
    inner_dev = float(np.nanmax(np.abs(cos[~synced] - 1)))
    sync_med = float(np.nanmedian(cos[synced]))
    out.append(
        claim(
            "MLP: cos(Δθ, −g) is 1 at every inner step (SGD) and below 1 at the sync steps",
            {"inner steps, largest deviation from 1": inner_dev, "sync steps, median": sync_med},
            inner_dev < 1e-4 and sync_med < 0.95,
            "inner: 1 (float32 round-off); sync: < 1",
            kind="check",
        )
    )

    rises = {}
    for key in ("sgd", "lookahead"):
        _, val = runs[key].scalar("val_loss")
        rises[key] = float(max(np.max(np.diff(val)), 0.0))
    out.append(
        claim(
            "MLP: largest rise of the validation loss from one epoch to the next",
            {"SGD": rises["sgd"], "Lookahead": rises["lookahead"]},
            rises["lookahead"] < rises["sgd"],
            "Lookahead < SGD (the paper: Lookahead is more stable at high learning rates)",
            kind="phenomenon",
        )
    )
    return out
