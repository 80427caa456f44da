"""L1 vs L2 penalties: what each does to the distribution of the weights (seed 003: "L1(절댓값),
L2(제곱)", seed 004: the L2 penalty).

An MLP 64 → 100 → 10 (ReLU, He init) on digits, SGD lr 0.1 on minibatches of 64, 800 steps, three
times from the same start: no penalty, L2 ½λΣW² with λ = 0.01, L1 λΣ|W| with λ = 0.002. The two λ
are matched so that both runs end with weights of the same size (root mean square ≈ 0.11) and
the same validation accuracy; what differs is the shape. The weights probe records the histogram
of every weight matrix with 1000 bins over each record's range [−h, h] (h = 1 here: 0.002 a bin),
and "near zero" is |w| < 0.01, five bins either side of 0; the trajectory keeps the weights for
the unit images.
"""

from __future__ import annotations

import math

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "L1 vs L2 penalty: L1 sets most weights to zero, L2 shrinks them all"
CAPTION = """
The first layer's 6400 weights of an MLP 64 → 100 → 10 on digits after 800 SGD steps without a
penalty, with L2 (½λΣw², λ = 0.01) and with L1 (λΣ|w|, λ = 0.002); the two λ are chosen so that
both end with weights of the same typical size (root mean square ≈ 0.11) and the same validation
accuracy. Left: the density of the weights by value (bins 0.02 wide; log scale). L2 narrows the bell but keeps its
shape — a penalty pulling each weight back in proportion to its size rarely takes it all the way
to 0. L1 pulls every weight with the same force, so every weight whose gradient cannot hold
against it is pushed to 0 and stays there (SGD steps it back and forth across 0 by lr·λ = 0.0002):
a spike at 0 with more than half of the weights. Middle: the share within 0.01 of 0 over training,
from the weights probe; dashed, the share a bell curve (Gaussian) of the same size would have. Right:
the incoming weights of six first-layer units as 8×8 images: with L1 each unit looks at a few pixels
(sparse), with L2 at all of them a little. (The border pixels of digits are almost always blank;
their weights get no data gradient, so either penalty decays them.)
"""

# -- configuration (saved into each run file) --------------------------------------------------
WIDTH = 100  # 64 → 100 → 10
LR = 0.1
BATCH = 64
STEPS = 800
EVERY = 50
BINS = 1000  # weights histogram: 1000 bins over [−h, h] (h: 0.5 … 5) → ±0.01 falls on bin edges
DELTA = 0.01  # "near zero": |w| < 0.01
SEED = 0
PENALTIES = {"none": ("none", 0.0), "l2": ("l2", 0.01), "l1": ("l1", 0.002)}
LABELS = {"none": "no penalty", "l2": "L2, λ = 0.01", "l1": "L1, λ = 0.002"}
COLORS = {"none": "#222222", "l2": "#0173b2", "l1": "#d55e00"}
PARAM = "fc1.weight"
HE_STD = math.sqrt(2 / 64)  # He init of the first layer


def penalty_run(kind: str, lam: float, steps: int = STEPS):
    """A callable ``path -> None`` training the MLP with penalty ``kind`` ("none", "l1", "l2") of weight λ."""

    def record(path: str) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            _train(path, kind, lam, steps)

    return record


def _train(path: str, kind: str, lam: float, steps: int) -> None:
    import torch
    import torch.nn.functional as F

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.catalog.models import make_model
    from dyntrace.catalog.regularizers import l1_penalty, l2_penalty
    from dyntrace.probes.weights import WeightsProbe

    torch.manual_seed(SEED)
    data = make_dataset("digits", seed=SEED)
    model = make_model("mlp", 64, 10, depth=1, width=WIDTH, activation="relu", init="he_normal")
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    penalty = {"l1": l1_penalty, "l2": l2_penalty}.get(kind)
    draws = torch.Generator().manual_seed(SEED)
    config = {
        "dataset": "digits",
        "model": "mlp",
        "depth": 1,
        "width": WIDTH,
        "activation": "relu",
        "init": "he_normal",
        "optimizer": "sgd",
        "lr": LR,
        "batch_size": BATCH,
        "steps": steps,
        "penalty": kind,
        "lambda": lam,
        "weights_bins": BINS,
        "seed": SEED,
    }
    with dyntrace.Recorder(
        model,
        optimizer,
        path,
        every=EVERY,
        probes=["scalars", WeightsProbe(bins=BINS)],
        config=config,
        trajectory=steps // 2,
    ) as rec:
        for step in range(1, steps + 1):
            index = torch.randint(len(data.X_train), (BATCH,), generator=draws)
            loss = F.cross_entropy(model(data.X_train[index]), data.y_train[index])
            extra = penalty(model, lam) if penalty else torch.zeros(())
            optimizer.zero_grad(set_to_none=True)
            (loss + extra).backward()
            optimizer.step()
            rec.log(loss=loss.detach(), penalty=extra.detach())
            if step % 100 == 0:
                with torch.no_grad():
                    accuracy = (model(data.X_val).argmax(1) == data.y_val).float().mean()
                rec.log(val_accuracy=accuracy)


def runs(quick: bool) -> dict:
    # 3 × 800 steps of a 64 → 100 → 10 MLP take about two seconds: quick mode runs the same
    return {label: penalty_run(kind, lam) for label, (kind, lam) in PENALTIES.items()}


def gaussian_share(rms: float, delta: float) -> float:
    """P(|w| < δ) for w ~ N(0, rms²): erf(δ / (rms·√2))."""
    return math.erf(delta / (rms * math.sqrt(2)))


def claim_l1_sparse(run, others=None):
    """The L1 run has ≥ 40 % of its first-layer weights within one bin of 0 at its last record (a control:
    a run without the penalty); ``others``: shares of other runs to show beside it."""
    from dyntrace.plots.weight_distribution import near_zero_fraction

    _, fraction = near_zero_fraction(run, PARAM, DELTA)
    share, delta = float(fraction[-1]), DELTA
    return claim(
        f"L1 sets most first-layer weights to zero: at least 40 % within ±{delta:g} at the last record",
        {**(others or {}), _name(run): share},
        share >= 0.4,
        f"a bell of the same size: {gaussian_share(_rms(run), delta):.3f}",
        kind="phenomenon",
    )


def _name(run) -> str:
    kind, lam = run.config["penalty"], run.config["lambda"]
    return "no penalty" if kind == "none" else f"{kind.upper()}, λ = {lam:g}"


def _rms(run):
    return float(
        run.stat("weights", PARAM, "norm")[1][-1] / math.sqrt(run.stat("weights", PARAM, "count")[1][-1])
    )


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.unit_weights import plot_unit_weights
    from dyntrace.plots.weight_distribution import (
        plot_near_zero,
        plot_weight_distribution,
    )

    keys = list(PENALTIES)
    fig = Figure(figsize=(16, 5.4), layout="constrained")
    left, middle, right = fig.subfigures(1, 3, width_ratios=(1.1, 1, 1.1))
    ax = left.subplots()
    plot_weight_distribution(
        [runs[k] for k in keys],
        param=PARAM,
        labels=[LABELS[k] for k in keys],
        colors=[COLORS[k] for k in keys],
        ax=ax,
        xlim=0.8,
        width=2 * DELTA,
    )
    ax.get_legend().remove()
    ax.set_title("First-layer weights after training", fontsize="medium")
    ax = middle.subplots()
    plot_near_zero(
        [runs[k] for k in keys],
        param=PARAM,
        delta=DELTA,
        labels=[LABELS[k] for k in keys],
        colors=[COLORS[k] for k in keys],
        ax=ax,
    )
    ax.get_legend().remove()
    for k in keys:
        ax.axhline(gaussian_share(_rms(runs[k]), DELTA), color=COLORS[k], ls="--", lw=1)
    ax.set_title(
        "Share of weights near 0 (dashed: a bell curve\nof the same size at the end)", fontsize="medium"
    )
    top, bottom = right.subfigures(2, 1)
    for sub, key in ((top, "l2"), (bottom, "l1")):
        plot_unit_weights(runs[key], param=PARAM, units=6, ax=list(sub.subplots(1, 6)))
        sub.suptitle(f"{LABELS[key]}: six first-layer units (red +, blue −)", fontsize="medium")
    handles, texts = left.axes[0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="outside lower center", ncols=3)
    fig.suptitle(
        "The same network and data without a penalty, with L2 and with L1 (MLP 64 → 100 → 10 on digits, SGD)"
    )
    return fig


def claims(runs):
    from dyntrace.plots.unit_weights import trajectory_parameter
    from dyntrace.plots.weight_distribution import near_zero_fraction

    near = {k: near_zero_fraction(runs[k], PARAM, DELTA) for k in PENALTIES}
    delta = DELTA
    share = {k: float(v[1][-1]) for k, v in near.items()}
    rms = {k: _rms(runs[k]) for k in PENALTIES}
    bell = {k: gaussian_share(rms[k], delta) for k in PENALTIES}
    out = [
        claim_l1_sparse(runs["l1"], others={LABELS[k]: share[k] for k in ("none", "l2")}),
        claim(
            f"L2 shrinks the weights but keeps the bell: its share within ±{delta:g} is within 1.5 × a "
            "Gaussian's of the same size",
            {"L2": share["l2"], "Gaussian": bell["l2"]},
            bell["l2"] / 1.5 <= share["l2"] <= 1.5 * bell["l2"],
            "erf(δ / (rms·√2))",
            kind="phenomenon",
        ),
        claim(
            f"without a penalty the share within ±{delta:g} stays near He init's",
            share["none"],
            abs(share["none"] / gaussian_share(HE_STD, delta) - 1) < 0.3,
            f"erf(δ / (√(2/64)·√2)) = {gaussian_share(HE_STD, delta):.3f} ± 30 %",
        ),
    ]
    acc = {k: float(runs[k].scalar("val_accuracy")[1][-1]) for k in PENALTIES}
    out.append(
        claim(
            "the comparison is fair: L1 and L2 end with weights of the same size (rms within 20 %) "
            "and validation accuracy within 2 points",
            {"rms L1": rms["l1"], "rms L2": rms["l2"], "acc L1": acc["l1"], "acc L2": acc["l2"]},
            abs(rms["l1"] / rms["l2"] - 1) < 0.2 and abs(acc["l1"] - acc["l2"]) <= 0.02,
            "matched λ: 0.002 (L1) vs 0.01 (L2)",
        )
    )
    # the trajectory's middle snapshot holds the weights after step 400; the record of step 401 binned
    # the same weights (a record reads the weights its step's forward pass used)
    snapshot, weights = trajectory_parameter(runs["l1"], PARAM, index=1)
    exact = float(np.mean(np.abs(weights) < delta))
    steps, fraction = near["l1"]
    binned = float(fraction[np.flatnonzero(steps == snapshot + 1)[0]])
    out.append(
        claim(
            f"the probe's histogram counts the near-zero weights exactly (L1, step {snapshot + 1}, against "
            "the saved weights)",
            {"histogram": binned, "saved weights": exact},
            abs(binned - exact) < 1e-12,
            "equal",
        )
    )
    return out
