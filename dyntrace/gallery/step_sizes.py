"""Step sizes by optimizer (seed 001's adaptive methods): how far each weight moves per update,
|Δθ|, and the per-coordinate learning rate each optimizer applies.

The same MLP, data, initial weights and minibatches for five optimizers at the book's MNIST
rates. On every record step (log-spaced: early training is where the rates change) the entry
logs, over the weight coordinates whose gradient is not 0:

- ``step_q05`` … ``step_q95``: quantiles (5, 25, 50, 75, 95 %) of |Δθ| = |θ after − θ before|;
- ``rate_q05`` … ``rate_q95``: quantiles of the per-coordinate learning rate read from the
  optimizer's state: Adam lr/(√v̂ + ε) (v̂ = v/(1 − β₂ᵗ)), RMSprop lr/(√v + ε), AdaGrad
  lr/(√G + ε) (G = Σg²); SGD and Momentum apply lr to every coordinate (Momentum to its
  velocity: lr/(1 − μ) on a steady gradient).

The 'steps' probe records η_eff = |Δθ|/|g| (SGD's must equal lr exactly) and the 'adaptive'
probe ψ, whose mean must equal the one computed here from the same state.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Step sizes by optimizer: how far each weight moves, and the learning rate each coordinate gets"
CAPTION = """
The same MLP (64-64, ReLU, He init, float64) trained on scikit-learn's 8×8 digits (the offline
stand-in for MNIST) from the same weights on the same minibatches (batch 32) by five optimizers
at the book's MNIST rates: SGD, Momentum (μ 0.9) and AdaGrad at lr 0.01, RMSprop and Adam at lr
0.001. Top row: how far each weight moves in one update, |Δθ| per coordinate (line: median;
bands: 25–75 % and 5–95 % of the weights whose gradient is not 0; dotted: the learning rate).
Bottom row: the learning rate each coordinate gets, read from the optimizer's state. SGD applies
lr to every coordinate, so its steps lr·|g| are as spread as the gradients (three decades);
Momentum multiplies the velocity (≈ g/(1 − μ) on a steady gradient: 10× SGD's steps).
AdaGrad divides lr by √(Σg²): its rate only shrinks (about as t^−0.4 here), and so do its steps.
RMSprop and Adam divide by a forgetting average √v: their rate spreads over two decades across
coordinates — large where the gradient is small — but does not decay, and their steps stay near
lr for most weights (Adam's first step is exactly lr in every coordinate). Steps on a log axis.
"""

# -- configuration (stored in every run file) ------------------------------------------------
SEED = 0  # data split, initial weights and minibatch order: the same for every optimizer
DATASET = "digits"
DEPTH, WIDTH, ACTIVATION, INIT = 2, 64, "relu", "he_normal"
DTYPE = "float64"  # so that SGD's η_eff = lr holds to ~1e-12 (float32 rounds Δθ to θ's spacing)
BATCH = 32
STEPS = 1000  # quick: 200
PER_DECADE = 12  # log-spaced records: 12 a decade of steps
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# log10 η_eff histogram range, 5 bins a decade: shifted half a bin from whole decades so that
# lr = 0.01 and 0.001 sit in the middle of a bin, not on an edge where rounding splits them
DECADES = (-10.1, 5.9)
# key: (catalog optimizer, lr, options) — the book's MNIST comparison rates (REFERENCES §1)
OPTIMIZERS = {
    "sgd": ("sgd", 0.01, {}),
    "momentum": ("momentum", 0.01, {"momentum": 0.9}),
    "adagrad": ("adagrad", 0.01, {}),
    "rmsprop": ("rmsprop", 0.001, {}),
    "adam": ("adam", 0.001, {}),
}
LABELS = {"sgd": "SGD", "momentum": "Momentum", "adagrad": "AdaGrad", "rmsprop": "RMSprop", "adam": "Adam"}


def _rates(optimizer, weights):
    """The per-coordinate learning rate of each weight tensor, from the optimizer's state."""
    import torch

    out = []
    for group in optimizer.param_groups:
        lr = group["lr"]
        for p in group["params"]:
            if not any(p is w for w in weights):
                continue
            state = optimizer.state.get(p, {})
            if "exp_avg_sq" in state:  # Adam: lr / (√v̂ + ε)
                t = float(state["step"])
                v_hat = state["exp_avg_sq"] / (1 - group["betas"][1] ** t)
                out.append(lr / (v_hat.sqrt() + group["eps"]))
            elif "square_avg" in state:  # RMSprop: lr / (√v + ε)
                out.append(lr / (state["square_avg"].sqrt() + group["eps"]))
            elif "sum" in state:  # AdaGrad: lr_t / (√G + ε)
                t = float(state["step"])
                out.append(lr / (1 + (t - 1) * group["lr_decay"]) / (state["sum"].sqrt() + group["eps"]))
            else:  # SGD, Momentum: one rate for every coordinate
                out.append(torch.full_like(p, lr))
    return out


def _record(key, steps, path):
    import torch

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.catalog.models import make_model
    from dyntrace.catalog.optimizers import make_optimizer
    from dyntrace.probes.steps import StepsProbe
    from dyntrace.schedules import LogSpaced

    name, lr, options = OPTIMIZERS[key]
    config = {
        "dataset": DATASET,
        "model": "mlp",
        "depth": DEPTH,
        "width": WIDTH,
        "activation": ACTIVATION,
        "init": INIT,
        "dtype": DTYPE,
        "steps_decades": list(DECADES),
        "optimizer": name,
        "lr": lr,
        "optimizer_options": options,
        "batch_size": BATCH,
        "steps": steps,
        "seed": SEED,
        "record": f"log-spaced, {PER_DECADE} a decade",
        "quantiles": list(QUANTILES),
    }
    schedule = LogSpaced(PER_DECADE)
    q = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        data = make_dataset(DATASET, seed=SEED)
        model = make_model(
            "mlp", data.n_features, data.n_outputs, depth=DEPTH, width=WIDTH, activation=ACTIVATION, init=INIT
        ).to(torch.float64)
        X, y = data.X_train.to(torch.float64), data.y_train
        weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
        q = torch.tensor(QUANTILES, dtype=torch.float64)
        optimizer = make_optimizer(name, model.parameters(), lr=lr, **options)
        criterion = torch.nn.CrossEntropyLoss()
        batches = torch.Generator().manual_seed(SEED)
        step = 0
        probes = ["scalars", StepsProbe(decades=DECADES), "adaptive"]
        with dyntrace.Recorder(model, optimizer, path, every=schedule, probes=probes, config=config) as rec:
            while step < steps:
                for index in torch.randperm(len(X), generator=batches).split(BATCH):
                    loss = criterion(model(X[index]), y[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    measure = schedule(step + 1)
                    if measure:
                        before = [w.detach().clone() for w in weights]
                    optimizer.step()
                    step += 1
                    if measure:
                        moved = torch.cat([(w.detach() - b).abs().flatten() for w, b in zip(weights, before)])
                        live = torch.cat([(w.grad != 0).flatten() for w in weights])
                        rate = torch.cat([r.flatten() for r in _rates(optimizer, weights)])
                        rec.log(
                            **{
                                f"step_q{round(100 * p):02d}": v
                                for p, v in zip(QUANTILES, torch.quantile(moved[live], q))
                            },
                            **{
                                f"rate_q{round(100 * p):02d}": v
                                for p, v in zip(QUANTILES, torch.quantile(rate[live], q))
                            },
                            rate_mean=rate.mean(),
                        )  # over every weight coordinate, as the 'adaptive' probe
                    rec.log(loss=loss.detach())
                    if step == steps:
                        break


def runs(quick: bool) -> dict:
    steps = 200 if quick else STEPS
    return {key: partial(_record, key, steps) for key in OPTIMIZERS}


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.steps import plot_coordinate_quantiles
    from dyntrace.plots.theme import method_colors

    colors = dict(zip(runs, method_colors(LABELS[k] for k in runs)))
    fig = Figure(figsize=(17, 7.8), layout="constrained")
    axes = fig.subplots(2, len(runs), sharex=True, sharey="row")
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_ylim(1e-7, 3e-2)  # set before drawing: SGD's rate is one value, a zero-height range
    axes[1, 0].set_yscale("log")
    axes[1, 0].set_ylim(3e-4, 1e2)
    for j, (key, run) in enumerate(runs.items()):
        name, lr, options = OPTIMIZERS[key]
        top, bottom = axes[0, j], axes[1, j]
        plot_coordinate_quantiles(run, "step", ax=top, color=colors[key], reference={"lr": lr})
        top.set_title(f"{LABELS[key]} (lr {lr:g})", color=colors[key], fontweight="bold")
        reference = {"lr": lr}
        if key == "momentum":
            reference[f"lr/(1 − μ) = {lr / (1 - options['momentum']):g}"] = lr / (1 - options["momentum"])
        plot_coordinate_quantiles(run, "rate", ax=bottom, color=colors[key], reference=reference)
        top.set_title(f"{LABELS[key]} (lr {lr:g})", color=colors[key], fontweight="bold")
        bottom.set_title("")
        if j:
            top.set_ylabel("")
            bottom.set_ylabel("")
        else:
            top.set_ylabel("|Δθ| of one update, per weight")
            bottom.set_ylabel("learning rate of each weight")
        top.set_xlabel("")
    for ax in axes.ravel():
        ax.set_xscale("log")
        ax.get_legend().remove()  # one key for the figure, below
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    key = [
        Line2D([], [], color="dimgray", lw=2),
        Patch(color="dimgray", alpha=0.45),
        Patch(color="dimgray", alpha=0.2),
        Line2D([], [], color="k", lw=1, ls=":"),
    ]
    fig.legend(
        key,
        ["median over the weights (g ≠ 0)", "25–75 %", "5–95 %", "the optimizer's lr"],
        loc="outside lower center",
        ncols=4,
    )
    fig.suptitle(
        "How far each weight moves per update (top) and the learning rate it gets (bottom): "
        "median, 25–75 % and 5–95 % of the weights",
        fontweight="bold",
    )
    return fig


# -- claims -------------------------------------------------------------------------------------
def _quantiles(run, what):
    """(steps, [records, 5]) quantiles 5/25/50/75/95 % of ``what`` ("step" or "rate")."""
    names = [f"{what}_q{round(100 * p):02d}" for p in QUANTILES]
    steps = run.scalar(names[0])[0]
    return steps, np.stack([run.scalar(n)[1] for n in names], axis=1)


def _late_spread(run, what) -> float:
    """Decades between the 5 % and 95 % quantiles, median over the second half of the records."""
    steps, q = _quantiles(run, what)
    late = steps >= steps[-1] / 2
    return float(np.median(np.log10(q[late, 4] / q[late, 0])))


def claims(runs):
    out = []
    lr = {key: OPTIMIZERS[key][1] for key in runs}
    spread = {LABELS[k]: _late_spread(runs[k], "step") for k in runs}
    out.append(
        claim(
            "decades between the 5 % and 95 % of |Δθ| across weights (median over the second half)",
            spread,
            spread["SGD"] >= spread["Adam"] + 0.5,
            "SGD's steps lr·|g| as spread as the gradients; Adam's ≥ 0.5 decade narrower (its steps are set "
            "by lr, not by |g|)",
            kind="phenomenon",
        )
    )
    first = {k: _quantiles(runs[k], "step")[1][0] / lr[k] for k in ("adam", "rmsprop")}
    out.append(
        claim(
            "first update: |Δθ| ÷ lr at the 5 % and 95 % quantiles of the weights (Adam; RMSprop)",
            {
                "Adam": [first["adam"][0], first["adam"][-1]],
                "RMSprop": [first["rmsprop"][0], first["rmsprop"][-1]],
            },
            np.all(np.abs(first["adam"] - 1) < 1e-3) and np.all(np.abs(first["rmsprop"] - 10) < 1e-2),
            "Adam 1 (m̂/√v̂ = g/|g| at t = 1); RMSprop 1/√(1 − α) = 10 (v₁ = (1 − α)g², α 0.99); ε aside",
            kind="check",
        )
    )
    steps, q = _quantiles(runs["adagrad"], "rate")
    keep = steps >= 10
    slope = float(np.polyfit(np.log(steps[keep]), np.log(q[keep, 2]), 1)[0])
    late = {}
    for key in ("rmsprop", "adam"):
        s, qq = _quantiles(runs[key], "rate")
        mid = s >= 100
        late[LABELS[key]] = float(qq[mid, 2].max() / qq[mid, 2].min()) if mid.sum() > 1 else float("nan")
    out.append(
        claim(
            "median per-coordinate rate: AdaGrad's log–log slope against the step (t ≥ 10); RMSprop's and "
            "Adam's largest ÷ smallest from step 100 on",
            {"AdaGrad slope": slope, **late},
            -0.8 < slope < -0.2 and all(v < 5 for v in late.values() if np.isfinite(v)),
            "AdaGrad decays (−0.5 for stationary gradients; shallower as they shrink); RMSprop and Adam "
            "forget, so theirs does not (< 5×)",
            kind="phenomenon",
        )
    )
    rate_spread = {LABELS[k]: _late_spread(runs[k], "rate") for k in ("rmsprop", "adam")}
    out.append(
        claim(
            "decades between the 5 % and 95 % of the per-coordinate rate (median over the second half)",
            rate_spread,
            all(v >= 1 for v in rate_spread.values()),
            "≥ 1: a coordinate with a small gradient gets a large rate",
            kind="phenomenon",
        )
    )
    sgd = runs["sgd"]
    _, lo = sgd.field("steps", "min")
    _, hi = sgd.field("steps", "max")
    _, total = sgd.field("steps", "sum")
    _, count = sgd.field("steps", "count")
    worst = float(max(np.max(np.abs(lo / lr["sgd"] - 1)), np.max(np.abs(hi / lr["sgd"] - 1))))
    mean_dev = float(np.max(np.abs(total.sum(axis=1) / count.sum(axis=1) / lr["sgd"] - 1)))
    out.append(
        claim(
            "SGD, the 'steps' probe: η_eff = |Δθ|/|g| = lr for every coordinate at every record "
            "(largest relative deviation of the min and max; of the mean)",
            {"min/max": worst, "mean": mean_dev},
            worst < 1e-5 and mean_dev < 1e-8,
            f"lr = {lr['sgd']:g} exactly, up to float64 rounding of Δθ",
            kind="check",
        )
    )
    return out + [_adaptive_check(runs["adam"])]


def _adaptive_check(run):
    """The 'adaptive' probe's mean ψ = 1/(√v̂ + ε) over the weight tensors, times lr, against
    the mean rate computed here from the same optimizer state after the same step."""
    names = [n for n in run.names("adaptive") if n.endswith("weight")]
    cols = [run.names("adaptive").index(n) for n in names]
    probe_steps, counts = run.field("adaptive", "count")
    _, sums = run.field("adaptive", "sum")
    probe = OPTIMIZERS["adam"][1] * sums[:, cols].sum(axis=1) / counts[:, cols].sum(axis=1)
    steps, logged = run.scalar("rate_mean")
    common, i, j = np.intersect1d(steps, probe_steps, return_indices=True)
    error = float(np.max(np.abs(probe[j] / logged[i] - 1))) if len(common) else float("nan")
    return claim(
        "Adam: the 'adaptive' probe's mean lr·ψ over the weights ÷ the mean lr/(√v̂ + ε) computed from "
        f"the optimizer's state (largest deviation over {len(common)} records)",
        error,
        len(common) > 5 and error < 1e-9,
        "0 (float64 round-off): the probe reads the state right",
        kind="check",
    )
