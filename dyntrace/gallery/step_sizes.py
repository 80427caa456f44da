"""Effective per-parameter step sizes η_eff = |Δθ|/|g| by optimizer (seed 001's adaptive methods)."""

from __future__ import annotations

from functools import partial

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Effective step sizes η_eff = |Δθ|/|g| per coordinate, by optimizer"
CAPTION = """
The same MLP (64-64, ReLU, He init, float64) trained on scikit-learn's 8×8 digits (the offline
stand-in for MNIST) from the same weights on the same minibatches (batch 32) by five optimizers
at the book's MNIST rates: SGD, Momentum (μ 0.9) and AdaGrad at lr 0.01, RMSprop and Adam at lr
0.001. The 'steps' probe measures, around every recorded optimizer.step(), the effective step
size of each coordinate η_eff = |Δθ|/|g| (coordinates with g = 0 left out). Top: the median over
all coordinates with the 25–75 % band (log scale). Below: the distribution over time for each
weight matrix (rows: optimizers; colour: fraction of coordinates per bin). What to see: SGD's
η_eff is its learning rate, exactly, for every coordinate (a single histogram bin); Momentum
spreads it over decades (the step follows the velocity, not the current gradient); AdaGrad's
η_eff = lr/√(Σg²) shrinks all the time (as t^−0.37 here: slower than the 1/√t of stationary
gradients, because the gradients shrink as the network learns); RMSprop and Adam, whose
averages forget, do not decay like AdaGrad but spread η_eff over several decades across
coordinates — a coordinate with a small gradient gets a large η_eff.
"""

# -- configuration (stored in every run file) ------------------------------------------------
SEED = 0  # data split, initial weights and minibatch order: the same for every optimizer
DATASET = "digits"
DEPTH, WIDTH, ACTIVATION, INIT = 2, 64, "relu", "he_normal"
DTYPE = "float64"  # so that SGD's η_eff = lr holds to ~1e-12 (float32 rounds Δθ to θ's spacing)
BATCH = 32
STEPS = 1000  # quick: 200
FIRST, EVERY = 10, 10  # record every step up to FIRST, then every EVERY steps
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
WEIGHTS = ("fc1.weight", "fc2.weight", "out.weight")


def _record(key, steps, path):
    import torch

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.catalog.models import make_model
    from dyntrace.catalog.optimizers import make_optimizer
    from dyntrace.probes.steps import StepsProbe
    from dyntrace.schedules import FirstThenEvery

    name, lr, options = OPTIMIZERS[key]
    config = {"dataset": DATASET, "model": "mlp", "depth": DEPTH, "width": WIDTH, "activation": ACTIVATION,
              "init": INIT, "dtype": DTYPE, "steps_decades": list(DECADES), "optimizer": name, "lr": lr, "optimizer_options": options,
              "batch_size": BATCH, "steps": steps, "seed": SEED, "record": f"every step to {FIRST}, then every {EVERY}"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        data = make_dataset(DATASET, seed=SEED)
        model = make_model("mlp", data.n_features, data.n_outputs, depth=DEPTH, width=WIDTH,
                           activation=ACTIVATION, init=INIT).to(torch.float64)
        X, y = data.X_train.to(torch.float64), data.y_train
        optimizer = make_optimizer(name, model.parameters(), lr=lr, **options)
        criterion = torch.nn.CrossEntropyLoss()
        batches = torch.Generator().manual_seed(SEED)
        step = 0
        probes = ["scalars", StepsProbe(decades=DECADES)]
        with dyntrace.Recorder(model, optimizer, path, every=FirstThenEvery(FIRST, EVERY), probes=probes, config=config) as rec:
            while step < steps:
                for index in torch.randperm(len(X), generator=batches).split(BATCH):
                    loss = criterion(model(X[index]), y[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    rec.log(loss=loss.detach())
                    step += 1
                    if step == steps:
                        break


def runs(quick: bool) -> dict:
    steps = 200 if quick else STEPS
    return {key: partial(_record, key, steps) for key in OPTIMIZERS}


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.steps import plot_step_sizes, plot_step_sizes_compare

    fig = Figure(figsize=(14, 17), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1, 2.6))
    ax = top.subplots()
    plot_step_sizes_compare(list(runs.values()), labels=[f"{LABELS[k]} (lr {OPTIMIZERS[k][1]:g})" for k in runs], ax=ax)
    rows = bottom.subfigures(len(runs), 1)
    for row, (key, run) in zip(rows, runs.items()):
        axes = row.subplots(1, len(WEIGHTS), sharey=True)
        plot_step_sizes(run, params=list(WEIGHTS), ax=list(axes))
        row.supylabel(LABELS[key], fontweight="bold")
        for i, a in enumerate(axes):
            a.set_xlabel("step" if key == list(runs)[-1] else "")
            if i:
                a.set_ylabel("")
            for mesh in a.collections:  # one colour scale for every row (SGD's single bin included)
                mesh.set_clim(1e-4, 1.0)
    bottom.suptitle("η_eff of each weight matrix over training (one row per optimizer)")
    return fig


def _pooled(run, names=None):
    """(record steps, η_eff quantiles 5/25/50/75/95 %) over the coordinates of ``names`` (default all)."""
    from dyntrace.plots.steps import step_size_quantiles

    return step_size_quantiles(run, params=names, q=(0.05, 0.25, 0.5, 0.75, 0.95))


def claims(runs):
    out = []
    lr = {key: OPTIMIZERS[key][1] for key in runs}

    sgd = runs["sgd"]
    _, lo = sgd.field("steps", "min")
    _, hi = sgd.field("steps", "max")
    _, total = sgd.field("steps", "sum")
    _, count = sgd.field("steps", "count")
    worst = float(max(np.max(np.abs(lo / lr["sgd"] - 1)), np.max(np.abs(hi / lr["sgd"] - 1))))
    mean_dev = float(np.max(np.abs(total.sum(axis=1) / count.sum(axis=1) / lr["sgd"] - 1)))
    out.append(claim(
        "SGD: η_eff = lr for every coordinate of every parameter at every record "
        "(largest relative deviation of the min and max; of the mean)",
        {"min/max": worst, "mean": mean_dev}, worst < 1e-5 and mean_dev < 1e-8,
        f"lr = {lr['sgd']:g} exactly, up to float64 rounding of Δθ (about spacing(θ)/(lr·size of g), largest where g is tiny)"))

    steps, q = _pooled(runs["adagrad"])
    keep = steps >= 10
    slope = float(np.polyfit(np.log(steps[keep]), np.log(q[keep, 2]), 1)[0])
    out.append(claim(
        "AdaGrad: median η_eff = lr/√(Σg²) falls over training (first and last record) and its log–log slope against the step (t ≥ 10)",
        {"step 1": q[0, 2], "last": q[-1, 2], "slope": slope}, q[-1, 2] < q[0, 2] / 10 and -0.8 < slope < -0.25,
        "slope −0.5 (1/√t) for stationary gradients; shallower as the gradients shrink while the network learns"))

    spans = {}
    for key, run in runs.items():
        if key == "sgd":
            continue  # one histogram bin; its exact min and max below
        steps, q = _pooled(run)
        late = steps >= steps[-1] / 2
        spans[LABELS[key]] = float(np.median(np.log10(q[late, 4] / q[late, 0])))
    sgd_span = float(np.max(np.log10(hi / lo)))
    out.append(claim(
        "decades spanned by η_eff across coordinates: 5–95 % range from the histograms, median over the second half "
        "of training; SGD from its exact min and max over every record",
        {**spans, "SGD (min–max)": sgd_span}, spans["Adam"] > 1.0 and spans["RMSprop"] > 1.0 and sgd_span < 1e-5,
        "Adam, RMSprop: more than 1 decade; SGD: 0"))
    return out
