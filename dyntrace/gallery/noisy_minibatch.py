"""Batch vs minibatch vs stochastic gradient descent (seed 001): how noisy each loss curve is.

The same MLP on digits, from the same initial weights, trained with the gradient of the whole
training set (1257 examples), of minibatches of 64, and of single examples, at one learning
rate. The minibatch run also logs |G|² of the mean loss over the first 8 examples of each
minibatch and over all 64, from which the gradient noise scale B_simple (REFERENCES §7) follows.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Full batch vs minibatch vs batch 1: loss noise and the gradient noise scale"
CAPTION = """
One MLP (64 → 64 × 2 → 10, ReLU, He init) on scikit-learn's digits (8×8, in place of MNIST),
trained from the same initial weights with plain SGD at lr 0.05 on the gradient of the whole
training set (1257 examples), of minibatches of 64 and of single examples. Left: the loss of each
step's batch (faint) and its bias-corrected EWMA (β = 0.9, solid): the full batch is a smooth,
monotone descent, the minibatch curve is noisy but as fast per step, batch 1 is the noisiest.
Top right: the loss's noise around its trend, relative to the trend — ordered batch 1 >
minibatch > full batch; batch 1's is several times minibatch 64's (√64 = 8 for a mean of
independent per-example losses). Bottom
right: the gradient noise scale B_simple = tr Σ / |G|² (McCandlish et al. 2018), estimated from
|G|² of each minibatch's first 8 examples and of all 64: batches far below B_simple are dominated
by gradient noise, and above it a larger batch buys little per example.
"""

# -- configuration (saved into each run file) --------------------------------------------------
DEPTH, WIDTH = 2, 64
LR = 0.05  # one learning rate for all three
STEPS = 400
SEED = 0
B_SMALL, B_BIG = 8, 64  # the noise scale's two batch sizes: a minibatch's first 8 examples, and all 64
EWMA_BETA = 0.9
NOISE_BETA = 0.98  # EMA of the two |G|² estimates before dividing (≈ the last 50 steps)
RUNS = {"full_batch": None, "minibatch_64": 64, "batch_1": 1}  # label: batch size (None: the whole training set)
LABELS = {"full_batch": "full batch (1257)", "minibatch_64": "minibatch 64", "batch_1": "batch 1 (stochastic)"}


def _recorder(batch: int | None, steps: int):
    def record(path: str) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            _train(path, batch, steps)

    return record


def _train(path: str, batch: int | None, steps: int) -> None:
    import torch

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.catalog.models import make_model

    data = make_dataset("digits", seed=SEED)
    x, y = data.X_train, data.y_train
    torch.manual_seed(SEED)  # the same initial weights for every batch size
    model = make_model("mlp", x.shape[1], data.n_outputs, depth=DEPTH, width=WIDTH, activation="relu", init="he_normal")
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    draws = torch.Generator().manual_seed(SEED)
    noise_scale = batch == B_BIG
    config = {"dataset": "digits", "model": "mlp", "depth": DEPTH, "width": WIDTH, "activation": "relu",
              "init": "he_normal", "optimizer": "sgd", "lr": LR, "batch_size": batch or len(x),
              "replacement": True, "steps": steps, "seed": SEED,
              **({"noise_scale": {"b_small": B_SMALL, "b_big": B_BIG}} if noise_scale else {})}
    params = list(model.parameters())
    with dyntrace.Recorder(model, optimizer, path, every=20, probes=["scalars"], config=config) as rec:
        for _ in range(steps):
            index = torch.arange(len(x)) if batch is None else torch.randint(len(x), (batch,), generator=draws)
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
    steps = 150 if quick else STEPS
    return {label: _recorder(batch, steps) for label, batch in RUNS.items()}


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.compare import plot_compare_loss
    from dyntrace.plots.minibatch_noise import plot_minibatch_noise, plot_noise_scale

    fig = Figure(figsize=(13, 7.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(1.25, 1))
    left = fig.add_subplot(grid[:, 0])
    top, bottom = fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])
    ordered = [runs[k] for k in RUNS]
    labels = [LABELS[k] for k in RUNS]
    plot_compare_loss(ordered, labels=labels, beta=EWMA_BETA, ax=left)
    left.set_title(f"Loss of each step's batch (faint), EWMA β = {EWMA_BETA} bias-corrected (solid)")
    plot_minibatch_noise(ordered, labels=labels, ax=top)
    n_train = runs["full_batch"].config["batch_size"]
    plot_noise_scale(runs["minibatch_64"], ax=bottom, beta=NOISE_BETA,
                     marks={f"full batch {n_train}": n_train, "minibatch 64": B_BIG, "batch 1": 1})
    bottom.set_title(f"Gradient noise scale (|G|² of {B_SMALL} and of {B_BIG} examples)")
    return fig


def _rel_noise(run) -> float:
    from dyntrace.analysis import minibatch_noise

    steps, loss = run.scalar("loss")
    return float(np.nanmedian(minibatch_noise(steps, loss).rel_std))


def claims(runs):
    from dyntrace.plots.minibatch_noise import noise_scale_of

    out = []
    noise = {k: _rel_noise(runs[k]) for k in RUNS}
    full, mini, single = noise["full_batch"], noise["minibatch_64"], noise["batch_1"]
    out.append(claim("loss noise (median std/trend) is ordered batch 1 > minibatch 64 > full batch",
                     {LABELS[k]: v for k, v in noise.items()}, single > mini > full,
                     "batch smooth, minibatch noisy, stochastic noisiest (seed 001)"))
    ratio = single / mini
    out.append(claim("batch-1 noise / minibatch-64 noise", ratio, 3 <= ratio <= 20,
                     "≈ √64 = 8 (std of a mean ∝ 1/√B); tolerance 3–20"))
    _, loss = runs["full_batch"].scalar("loss")
    rises = np.diff(loss) > 0
    out.append(claim("full batch: the loss falls at every step (fraction of steps where it rises)",
                     float(rises.mean()), rises.mean() <= 0.01, "0: gradient descent at a stable rate is monotone"))
    steps, scale = noise_scale_of(runs["minibatch_64"], beta=NOISE_BETA)
    late = scale.b_simple[len(steps) // 2:]
    b_simple = float(np.nanmedian(late))
    n_train = runs["full_batch"].config["batch_size"]
    out.append(claim("gradient noise scale B_simple (median over the second half) lies between batch 1 and the full batch",
                     b_simple, 1 < b_simple < n_train,
                     f"1 < B_simple < {n_train}: batch 1 noise-dominated, full batch past the point of diminishing returns"))
    return out
