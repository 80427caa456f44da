"""Feature scaling (seed 004): one column 1000× larger than the others, raw vs standardised vs
min–max, the same network and the same number of SGD steps.

The lecture's example is stock data whose volume column (~10⁶) dwarfs the prices (~800). Here:
the catalog's teacher–student regression (10 inputs ~ N(0, 1)) with input column 0 multiplied by
1000. SGD's safe step is set by the largest curvature, which the large column inflates by 10⁶;
so each input gets the same rule, lr = 0.1 / λ_max(E[x xᵀ]) of its own (scaled) inputs, and the
same 500 steps.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Feature scaling: one column ×1000, raw vs standardised vs min–max inputs"
CAPTION = """
A regression MLP 10 → 32 → 1 (ReLU, He init) trained with SGD (batch 32, 500 steps) on inputs
whose column 0 is 1000× larger than the other nine (the lecture's stock table, where volume
dwarfs prices), fed raw, standardised ((x − μ)/σ per column) or min–max scaled (to [0, 1]),
both fitted on the training set. Each gets the same rule for its learning rate, 0.1 / λ_max of
its inputs' second-moment matrix (the largest stable SGD step is set by the largest
curvature): for the raw inputs the big column makes λ_max ≈ 10⁶, so the rate is ≈ 1e-7 and
every other direction crawls. Left: the raw inputs' loss stalls far above the scaled ones'.
Middle: the first layer's gradient norm. Right: the share of the first layer's squared
gradient norm that comes from each input column — with raw inputs, column 0 carries essentially
all of it; scaled, every column gets a fair share.
"""

# -- configuration (saved into each run file) --------------------------------------------------
DATA = {"dataset": "teacher_student", "n_features": 10}
BIG_COLUMN, FACTOR = 0, 1000.0  # column 0 × 1000
DEPTH, WIDTH = 1, 32
BATCH = 32
STEPS = 500
LR_RULE = 0.1  # lr = LR_RULE / λ_max(E[x xᵀ]) of the inputs each run sees
SEED = 0
SCALINGS = {"raw": "none", "standardised": "standardize", "min_max": "minmax"}  # label: catalog scaler
LABELS = {"raw": "raw (column 0 × 1000)", "standardised": "standardised", "min_max": "min–max [0, 1]"}


def _recorder(scaling: str, steps: int):
    def record(path: str) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            _train(path, scaling, steps)

    return record


def _train(path: str, scaling: str, steps: int) -> None:
    import torch

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.catalog.models import make_model
    from dyntrace.catalog.regularizers import make_scaler

    data = make_dataset(DATA["dataset"], seed=SEED, n_features=DATA["n_features"])
    raw = data.X_train.clone()
    raw[:, BIG_COLUMN] *= FACTOR
    x = make_scaler(scaling).fit(raw).transform(raw)
    y = data.y_train
    curvature = float(torch.linalg.eigvalsh(x.T @ x / len(x)).max())  # λ_max(E[x xᵀ])
    lr = LR_RULE / curvature
    torch.manual_seed(SEED)
    model = make_model(
        "mlp", x.shape[1], y.shape[1], depth=DEPTH, width=WIDTH, activation="relu", init="he_normal"
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    draws = torch.Generator().manual_seed(SEED)
    config = {
        **DATA,
        "scale_column": BIG_COLUMN,
        "scale_factor": FACTOR,
        "scaling": scaling,
        "model": "mlp",
        "depth": DEPTH,
        "width": WIDTH,
        "activation": "relu",
        "init": "he_normal",
        "optimizer": "sgd",
        "lr": lr,
        "lr_rule": f"{LR_RULE} / lambda_max(E[x x^T])",
        "lambda_max": curvature,
        "batch_size": BATCH,
        "replacement": True,
        "steps": steps,
        "seed": SEED,
    }
    first = model.fc1.weight
    with dyntrace.Recorder(
        model, optimizer, path, every=10, probes=["scalars", "gradients"], config=config
    ) as rec:
        for _ in range(steps):
            index = torch.randint(len(x), (BATCH,), generator=draws)
            loss = torch.nn.functional.mse_loss(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # each input column's share of the first layer's squared gradient norm (on the device)
            per_column = first.grad.pow(2).sum(dim=0)
            shares = per_column / per_column.sum()
            optimizer.step()
            rec.log(loss=loss.detach(), **{f"grad_share/col{j}": shares[j] for j in range(len(shares))})


def runs(quick: bool) -> dict:
    steps = 200 if quick else STEPS
    return {label: _recorder(scaling, steps) for label, scaling in SCALINGS.items()}


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.compare import plot_compare_loss
    from dyntrace.plots.feature_scaling import plot_column_shares
    from dyntrace.plots.theme import series_color

    ordered = [runs[k] for k in SCALINGS]
    labels = [f"{LABELS[k]}, lr {runs[k].config['lr']:.1e}" for k in SCALINGS]
    fig = Figure(figsize=(16, 5.2), layout="constrained")
    left, middle, right = fig.subplots(1, 3, width_ratios=(1.1, 1, 1.2))
    plot_compare_loss(ordered, labels=labels, beta=0.9, ax=left)
    left.set_title("Training loss (MSE; EWMA β = 0.9 solid)", fontsize="medium")
    for i, run in enumerate(ordered):
        steps, norm = run.stat("gradients", "fc1.weight", "norm")
        middle.plot(steps, norm, color=series_color(i), lw=1.6, label=labels[i])
    middle.set_yscale("log")
    middle.set_xlabel("step (optimizer steps)")
    middle.set_ylabel("‖∂L/∂W₁‖ (first layer)")
    middle.set_title("First-layer gradient norm (record steps)", fontsize="medium")
    middle.legend(fontsize="small")
    plot_column_shares(ordered, labels=[LABELS[k] for k in SCALINGS], ax=right)
    right.set_title("Share of the first layer's gradient per input column", fontsize="medium")
    fig.suptitle(
        "One input column 1000× larger than the rest: raw vs scaled inputs, same rule for the rate",
        fontweight="bold",
    )
    return fig


def _late_loss(run) -> float:
    _, loss = run.scalar("loss")
    return float(np.mean(loss[-len(loss) // 10 :]))


def claims(runs):
    from dyntrace.plots.feature_scaling import column_shares

    late = {k: _late_loss(runs[k]) for k in SCALINGS}
    out = [
        claim(
            "after the same number of steps, standardised and min–max inputs reach a loss ≥ 10× lower than raw "
            "(mean of the last 10 % of steps)",
            {LABELS[k]: v for k, v in late.items()},
            late["standardised"] * 10 <= late["raw"] and late["min_max"] * 10 <= late["raw"],
            "scaled features converge faster (seed 004)",
            kind="phenomenon",
        )
    ]
    shares = {k: column_shares(runs[k])[1] for k in SCALINGS}
    out.append(
        claim(
            "raw inputs: column 0 carries ≥ 99 % of the first layer's squared gradient norm (median over steps)",
            float(shares["raw"][BIG_COLUMN]),
            shares["raw"][BIG_COLUMN] >= 0.99,
            "the large column dominates the gradient",
            kind="phenomenon",
        )
    )
    biggest = {LABELS[k]: float(shares[k].max()) for k in ("standardised", "min_max")}
    out.append(
        claim(
            "scaled inputs: no column carries more than half of it",
            biggest,
            max(biggest.values()) <= 0.5,
            "comparable shares (even: 0.1 each)",
            kind="phenomenon",
        )
    )
    return out
