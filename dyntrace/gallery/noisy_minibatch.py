"""Batch vs minibatch vs stochastic gradient descent (seed 001): how noisy each loss curve is,
where the noise comes from, and what an epoch of data buys at each batch size.

The same MLP on digits, from the same initial weights, trained with the gradient of the whole
training set (1257 examples), of minibatches of 64, and of single examples, at one learning
rate, 400 updates each. Every record step (every 20 updates) also runs the whole training set
forward and logs, for the weights of that moment, the mean and the std of the 1257 per-example
losses (``loss_all``, ``loss_std_all``): a minibatch of B examples drawn with replacement has a
mean loss whose std is ``loss_std_all``/√B, the sampling noise the minibatch curve should show.
The minibatch run also logs |G|² of the mean loss over the first 8 examples of each minibatch
and over all 64, from which the gradient noise scale B_simple follows (REFERENCES §7), and, at
every record step, the exact tr Σ and |G|² from the 1257 per-example gradients
(``trace_sigma_exact``, ``grad_sq_exact``; torch.func) to check that estimate against.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Full batch vs minibatch vs batch 1: loss noise, progress per epoch, and the gradient noise scale"
CAPTION = """
One MLP (64 → 64 × 2 → 10, ReLU, He init) on scikit-learn's digits (8×8, in place of MNIST),
trained from the same initial weights with plain SGD at lr 0.05 on the gradient of the whole
training set (1257 examples), of minibatches of 64 and of single examples, 400 updates each.
Top row, one panel per batch size on the same axes: the loss of each update's batch (thin) and
its trend (dark); the band is the trend ± the sampling noise predicted for a batch of B examples,
σ/√B, where σ is the std of the 1257 per-example losses at those weights. The full batch descends
smoothly; minibatch 64 wobbles within its band (8 × narrower than batch 1's); batch 1 jumps
between 0 and 5. The top axes count epochs (examples seen / 1257): 400 updates are 400 epochs
for the full batch, 20 for minibatch 64 and a third of one for batch 1. Bottom left: the trends
against epochs — per example seen, the small batches are far ahead (many cheap updates per
epoch instead of one expensive one). Bottom middle: the measured noise around the trend against
σ/√B: the minibatch noise is the sampling noise of the batch, nothing else. Bottom right: the
gradient noise scale B_simple = tr Σ / |G|² (McCandlish et al. 2018), estimated from |G|² of each
minibatch's first 8 examples and of all 64 (line), and computed exactly from the 1257
per-example gradients (dots); it grows from about 30 to about 200 as the loss falls. A batch well
below B_simple (64) is noise-dominated: doubling it nearly halves the updates needed; one far
above it (1257) spends most of its examples on precision it does not need.
"""

# -- configuration (saved into each run file) --------------------------------------------------
DEPTH, WIDTH = 2, 64
LR = 0.05  # one learning rate for all three
STEPS = 400
SEED = 0
RECORD_EVERY = 20  # the whole-training-set measurements, every 20 updates
B_SMALL, B_BIG = 8, 64  # the noise scale's two batch sizes: a minibatch's first 8 examples, and all 64
EWMA_BETA = 0.9
NOISE_BETA = 0.98  # EMA of the two |G|² estimates before dividing (≈ the last 50 steps)
RUNS = {
    "full_batch": None,
    "minibatch_64": 64,
    "batch_1": 1,
}  # label: batch size (None: the whole training set)
LABELS = {
    "full_batch": "full batch (1257)",
    "minibatch_64": "minibatch 64",
    "batch_1": "batch 1 (stochastic)",
}
COLOR_NAMES = {"full_batch": "full batch", "minibatch_64": "minibatch", "batch_1": "stochastic"}


def _recorder(batch: int | None, steps: int, every: int):
    def record(path: str) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            _train(path, batch, steps, every)

    return record


def _exact_noise(model, x, y):
    """tr Σ and |G|² of the per-example gradients of the cross-entropy over (x, y): torch.func."""
    import torch
    from torch.func import functional_call, grad, vmap

    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss(p, xi, yi):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    per = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    flat = torch.cat([g.reshape(len(x), -1) for g in per.values()], dim=1)
    mean = flat.mean(dim=0)
    return (flat - mean).pow(2).sum(dim=1).mean(), mean.pow(2).sum()


def _train(path: str, batch: int | None, steps: int, every: int) -> None:
    import torch

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.catalog.models import make_model

    data = make_dataset("digits", seed=SEED)
    x, y = data.X_train, data.y_train
    torch.manual_seed(SEED)  # the same initial weights for every batch size
    model = make_model(
        "mlp", x.shape[1], data.n_outputs, depth=DEPTH, width=WIDTH, activation="relu", init="he_normal"
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    draws = torch.Generator().manual_seed(SEED)
    noise_scale = batch == B_BIG
    config = {
        "dataset": "digits",
        "model": "mlp",
        "depth": DEPTH,
        "width": WIDTH,
        "activation": "relu",
        "init": "he_normal",
        "optimizer": "sgd",
        "lr": LR,
        "batch_size": batch or len(x),
        "n_train": len(x),
        "replacement": True,
        "steps": steps,
        "seed": SEED,
        "record_every": every,
        **({"noise_scale": {"b_small": B_SMALL, "b_big": B_BIG}} if noise_scale else {}),
    }
    params = list(model.parameters())
    with dyntrace.Recorder(model, optimizer, path, every=every, probes=["scalars"], config=config) as rec:
        for step in range(steps):
            if step % every == 0:  # the weights after `step` updates, on the whole training set
                with torch.no_grad():
                    per_example = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
                scalars = {"loss_all": per_example.mean(), "loss_std_all": per_example.std()}
                if noise_scale:
                    trace, grad_sq = _exact_noise(model, x, y)
                    scalars.update(trace_sigma_exact=trace, grad_sq_exact=grad_sq)
                rec.log(**scalars)
            index = (
                torch.arange(len(x)) if batch is None else torch.randint(len(x), (batch,), generator=draws)
            )
            losses = torch.nn.functional.cross_entropy(model(x[index]), y[index], reduction="none")
            optimizer.zero_grad(set_to_none=True)
            if noise_scale:
                # the mean-loss gradient in two parts: after the first part the gradient holds
                # (B_SMALL/B_BIG)·G_small; after the second, G_big over the whole minibatch
                (losses[:B_SMALL].sum() / B_BIG).backward(retain_graph=True)
                small = sum(p.grad.pow(2).sum() for p in params) * (B_BIG / B_SMALL) ** 2
                (losses[B_SMALL:].sum() / B_BIG).backward()
                big = sum(p.grad.pow(2).sum() for p in params)
                rec.log(grad_sq_small=small.detach(), grad_sq_big=big.detach())
            else:
                losses.mean().backward()
            optimizer.step()
            rec.log(loss=losses.mean().detach())


def runs(quick: bool) -> dict:
    steps, every = (120, 6) if quick else (STEPS, RECORD_EVERY)  # quick: as many records, closer together
    return {label: _recorder(batch, steps, every) for label, batch in RUNS.items()}


def _colors():
    from dyntrace.plots.theme import method_colors

    return dict(zip(RUNS, method_colors(COLOR_NAMES.values())))


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.minibatch_noise import (
        plot_batch_loss,
        plot_loss_by_epoch,
        plot_noise_scale,
        plot_sampling_noise,
    )

    colors = _colors()
    fig = Figure(figsize=(15, 9.5), layout="constrained")
    grid = fig.add_gridspec(2, 3, height_ratios=(1, 1.05))
    top = [fig.add_subplot(grid[0, i]) for i in range(3)]
    for ax, label in zip(top, RUNS):
        plot_batch_loss(runs[label], ax=ax, color=colors[label], beta=EWMA_BETA)
        ax.set_title(LABELS[label])
        if label != "minibatch_64":  # one key for the row, where the curve leaves room for it
            ax.get_legend().remove()
        ax.sharey(top[0])
        ax.sharex(top[0])
    top[0].set_ylim(0, 4.2)
    ordered = [runs[k] for k in RUNS]
    labels = [LABELS[k] for k in RUNS]
    palette = [colors[k] for k in RUNS]
    plot_loss_by_epoch(ordered, labels=labels, colors=palette, beta=EWMA_BETA, ax=fig.add_subplot(grid[1, 0]))
    plot_sampling_noise(ordered, labels=labels, colors=palette, ax=fig.add_subplot(grid[1, 1]))
    n_train = runs["full_batch"].config["batch_size"]
    bottom = fig.add_subplot(grid[1, 2])
    plot_noise_scale(
        runs["minibatch_64"],
        ax=bottom,
        beta=NOISE_BETA,
        color=colors["minibatch_64"],
        marks={f"full batch {n_train}": n_train, "minibatch 64": B_BIG, "batch 1": 1},
    )
    bottom.set_title(f"Gradient noise scale (|G|² of {B_SMALL} and of {B_BIG} examples)")
    fig.suptitle(
        f"SGD at lr {LR} on digits with three batch sizes, from the same initial weights", fontweight="bold"
    )
    return fig


# -- claims -------------------------------------------------------------------------------------
def noise_ratio(run) -> float:
    """Median over the inner records of (measured std of the loss around its trend) ÷ (the
    sampling noise σ/√B of a batch of B examples drawn with replacement; NaN for the full
    batch, which has no sampling noise)."""
    from dyntrace.plots.minibatch_noise import sampling_noise

    steps, measured, predicted = sampling_noise(run)
    inner = slice(1, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.nanmedian(measured[inner] / predicted[inner]))


def noise_claim(run, label: str):
    """Phenomenon: the minibatch loss is noisy, and its noise is the batch's sampling noise σ/√B:
    the measured std around the trend is 0.75–1.33 × σ/√B and ≥ 2 % of the trend.
    A full-batch control fails it (no sampling noise: σ/√B is undefined there, its noise ≈ 0)."""
    from dyntrace.plots.minibatch_noise import relative_noise

    ratio = noise_ratio(run)
    rel = relative_noise(run)
    ok = bool(0.75 <= ratio <= 1.33 and rel >= 0.02)
    return claim(
        f"{label}: loss noise around the trend ÷ the sampling noise σ/√B of its batch; noise ÷ trend",
        {"÷ σ/√B": ratio if np.isfinite(ratio) else "undefined (B = all: no sampling noise)", "÷ trend": rel},
        ok,
        "0.75–1.33 (std of a mean of B draws = σ/√B); ≥ 0.02 (visible)",
        kind="phenomenon",
    )


def claims(runs):
    from dyntrace.plots.minibatch_noise import exact_noise_scale, noise_scale_of, relative_noise

    out = [
        noise_claim(runs["minibatch_64"], LABELS["minibatch_64"]),
        noise_claim(runs["batch_1"], LABELS["batch_1"]),
    ]
    rel = {k: relative_noise(runs[k]) for k in RUNS}
    full = rel["full_batch"]
    out.append(
        claim(
            "loss noise ÷ trend: batch 1 > minibatch 64 > full batch; full batch below 0.1 % "
            "(what is left is the curve's bend, not noise)",
            {LABELS[k]: v for k, v in rel.items()},
            rel["batch_1"] > rel["minibatch_64"] > full and full < 1e-3,
            "batch smooth, minibatch noisy, stochastic noisiest (seed 001)",
            kind="phenomenon",
        )
    )
    _, loss = runs["full_batch"].scalar("loss")
    rises = float(np.mean(np.diff(loss) > 0))
    out.append(
        claim(
            "full batch: share of updates after which the loss rises",
            rises,
            rises == 0,
            "0: gradient descent at a stable rate is monotone",
            kind="check",
        )
    )
    # per epoch (examples seen): where each run's trend is after as many examples as the full batch uses in 20 updates
    from dyntrace.plots.minibatch_noise import loss_at_epoch

    epochs = min(20, runs["minibatch_64"].n_steps * B_BIG / runs["full_batch"].config["batch_size"])
    at = {k: loss_at_epoch(runs[k], epochs) for k in ("full_batch", "minibatch_64")}
    out.append(
        claim(
            f"after {epochs:.3g} epochs of examples: the minibatch trend ÷ the full batch's loss",
            {**{LABELS[k]: v for k, v in at.items()}, "ratio": at["minibatch_64"] / at["full_batch"]},
            at["minibatch_64"] / at["full_batch"] <= 0.5,
            "≤ 0.5: per example seen, many cheap minibatch updates beat one expensive full-batch update "
            "(seed 001)",
            kind="phenomenon",
        )
    )
    est_steps, estimate = noise_scale_of(runs["minibatch_64"], beta=NOISE_BETA)
    exact = exact_noise_scale(runs["minibatch_64"])
    half = len(est_steps) // 2
    small, big = (runs["minibatch_64"].scalar(n)[1] for n in ("grad_sq_small", "grad_sq_big"))
    n = min(len(small), len(big))
    grad_sq = (B_BIG * big[:n] - B_SMALL * small[:n]) / (B_BIG - B_SMALL)
    trace = (small[:n] - big[:n]) / (1 / B_SMALL - 1 / B_BIG)
    late = exact.steps >= est_steps[half]
    est_trace, est_grad = float(np.mean(trace[half:])), float(np.mean(grad_sq[half:]))
    ex_trace, ex_grad = float(np.mean(exact.trace_sigma[late])), float(np.mean(exact.grad_sq[late]))
    errors = [abs(est_trace / ex_trace - 1), abs(est_grad / ex_grad - 1)]
    out.append(
        claim(
            "second half: tr Σ and |G|² from the two batch sizes (mean over updates) ÷ the exact values "
            "from 1257 per-example gradients (mean over records)",
            {
                "tr Σ": est_trace / ex_trace,
                "|G|²": est_grad / ex_grad,
                "B_simple": f"{est_trace / est_grad:.0f} vs exact {ex_trace / ex_grad:.0f}",
            },
            max(errors) <= 0.2,
            "1 ± 0.2 (McCandlish et al. 2018, appendix A: both estimates are unbiased)",
            kind="check",
        )
    )
    first = float(exact.b_simple[0])
    b_late = ex_trace / ex_grad
    out.append(
        claim(
            "B_simple (exact) at the start and over the second half; the batch sizes it separates",
            {"start": first, "second half": b_late},
            b_late >= 3 * first and B_BIG < b_late < 1257,
            "grows as the loss falls (McCandlish et al.: ≥ 3× here); 64 < B_simple < 1257: minibatch 64 is "
            "noise-dominated, the full batch far past it",
            kind="phenomenon",
        )
    )
    return out
