"""The loss landscape around a trained network, and the path training took through it
(Li et al. 2018): the trajectory's PCA plane, a random filter-normalised plane, and the
straight line from the initial to the final weights.

Recorded with a plain loop around :class:`dyntrace.Recorder` (``trajectory=`` keeps the flat
parameters every few steps) that also logs the validation loss before the first step, so both
ends of the initial→final line can be checked against losses recorded during training. The
slices are computed after training by :mod:`dyntrace.landscape.store` on the validation split
and stored in the run file (``/landscape/{trajectory,plane,line}``); the figure reads them back.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Loss landscape: the training trajectory on its PCA plane, a random plane, and the init→final line"
CAPTION = """
An MLP 64 → 32 × 2 → 10 (ReLU, He init) trained on scikit-learn's digits (in place of MNIST)
with SGD + momentum (lr 0.05, μ 0.9, batch 64, 10 epochs); every 5 steps the recorder keeps the
flat parameter vector. Left: the validation loss on the plane of the trajectory's two principal
directions (Li et al. 2018; PCA of θ_t − θ_final, axes labelled with the share of the squared
deviations each explains) with the trajectory projected on it: two directions hold nearly all
of the path, which runs downhill from the start to the final weights near the bottom of the
plane. Middle: a random plane through the final weights along two filter-normalised Gaussian
directions (biases held fixed): a bowl. Right: the loss along the straight line from the
initial (t = 0) to the final (t = 1) weights — monotone, no barrier — whose two ends equal the
validation losses recorded during training before the first and after the last step.
"""

# -- configuration (saved into the run file) ---------------------------------------------------
DEPTH, WIDTH = 2, 32
OPTIMIZER, LR, MOMENTUM = "momentum", 0.05, 0.9
BATCH, EPOCHS = 64, 10
SEED = 0
TRAJECTORY_EVERY = 5  # steps between kept parameter vectors (plus the first and the last)
LANDSCAPE = {  # dyntrace.landscape.store options
    "trajectory": {"resolution": 31, "margin": 0.25},
    "plane": {"resolution": 31, "span": 1.0, "seed": 0, "ignore": "biasbn"},
    "line": {"steps": 41},
    "method": "auto",
}
TOLERANCE = 1e-4  # relative: the line's ends vs the recorded losses (float32 forwards, two code paths)


def _recorder(epochs: int, landscape: dict):
    def record(path: str) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            _train(path, epochs, landscape)

    return record


def _train(path: str, epochs: int, landscape: dict) -> None:
    import torch

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.catalog.models import make_model
    from dyntrace.catalog.optimizers import make_optimizer
    from dyntrace.landscape import store

    data = make_dataset("digits", seed=SEED)
    x, y = data.X_train, data.y_train
    x_val, y_val = data.X_val, data.y_val  # 270 images: the landscapes' evaluation batch
    torch.manual_seed(SEED)
    model = make_model(
        "mlp", x.shape[1], data.n_outputs, depth=DEPTH, width=WIDTH, activation="relu", init="he_normal"
    )
    optimizer = make_optimizer(OPTIMIZER, model.parameters(), lr=LR, momentum=MOMENTUM)
    criterion = torch.nn.CrossEntropyLoss()
    options = store.normalize_options(landscape)
    config = {
        "dataset": "digits",
        "model": "mlp",
        "depth": DEPTH,
        "width": WIDTH,
        "activation": "relu",
        "init": "he_normal",
        "optimizer": OPTIMIZER,
        "lr": LR,
        "momentum": MOMENTUM,
        "batch_size": BATCH,
        "epochs": epochs,
        "seed": SEED,
        "trajectory": TRAJECTORY_EVERY,
        "landscape": options,
    }
    initial = [p.detach().clone() for p in model.parameters()]
    draws = torch.Generator().manual_seed(SEED)

    @torch.no_grad()
    def val_loss():
        model.eval()
        loss = criterion(model(x_val), y_val)
        model.train()
        return loss

    with dyntrace.Recorder(
        model, optimizer, path, every=20, probes=["scalars"], config=config, trajectory=TRAJECTORY_EVERY
    ) as rec:
        rec.log(val_loss=val_loss())  # step 0: the initial weights
        for _ in range(epochs):
            for index in torch.randperm(len(x), generator=draws).split(BATCH):
                loss = criterion(model(x[index]), y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                rec.log(loss=loss.detach())
            rec.log(val_loss=val_loss())
        last = rec.step
    with dyntrace.open_run(path) as run:
        trajectory = run.trajectory()
    results = store.compute(
        model,
        criterion,
        (x_val, y_val),
        options,
        initial=initial,
        trajectory=trajectory,
        metric=store.accuracy,
    )
    store.write(
        path, results, step=last, extra={"loss": "cross_entropy", "batch": "val (all 270)", "start_step": 0}
    )


def runs(quick: bool) -> dict:
    if quick:
        small = {
            **LANDSCAPE,
            "trajectory": {"resolution": 15, "margin": 0.25},
            "plane": {**LANDSCAPE["plane"], "resolution": 15},
            "line": {"steps": 21},
        }
        return {"momentum": _recorder(3, small)}
    return {"momentum": _recorder(EPOCHS, LANDSCAPE)}


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.landscape import plot_landscape_contour, plot_landscape_line

    run = runs["momentum"]
    fig = Figure(figsize=(17, 5.4), layout="constrained")
    left, middle, right = fig.subplots(1, 3, width_ratios=(1.15, 1.1, 1))
    trajectory = run.landscape("trajectory")
    plot_landscape_contour(trajectory, ax=left, log_levels=True)
    left.legend(loc="lower right", fontsize="small")  # away from the path's start (top right)
    total = 100 * float(np.sum(trajectory.explained_variance))
    left.set_title(f"Trajectory on its PCA plane (PC1 + PC2: {total:.1f} %)", fontsize="medium")
    plot_landscape_contour(run.landscape("plane"), ax=middle, log_levels=True)
    middle.plot(0, 0, "*", color="white", ms=12, mec="k", label="final weights")
    middle.legend(loc="upper right", fontsize="small")
    middle.set_title("Random filter-normalised plane at the final weights", fontsize="medium")
    line = run.landscape("line")
    plot_landscape_line(line, ax=right)
    steps, val = run.scalar("val_loss")
    right.plot(
        [0, 1],
        [val[0], val[-1]],
        "o",
        ms=11,
        mfc="none",
        mec="k",
        mew=1.5,
        label=f"validation loss recorded at steps {steps[0]} and {steps[-1]}",
    )
    right.set_yscale("log")
    handles = [
        h
        for a in right.get_shared_x_axes().get_siblings(right)
        for h in a.get_lines()
        if not h.get_label().startswith("_")
    ]
    right.legend(
        handles,
        [h.get_label() for h in handles],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncols=2,
        fontsize="small",
    )
    right.set_title("Line from the initial (t = 0) to the final (t = 1) weights", fontsize="medium")
    for ax in (left, middle):
        _short_colorbar_labels(ax)
    fig.suptitle(
        "Validation loss (cross-entropy on the 270 validation images) around a digits MLP trained with momentum SGD",
        fontweight="bold",
    )
    return fig


def _short_colorbar_labels(ax):
    """Tick labels like 0.112 instead of 1.12088 × 10⁻¹ on the colour bar of a contour map."""
    from matplotlib.ticker import FormatStrFormatter

    for artist in ax.collections:
        bar = getattr(artist, "colorbar", None)
        if bar is not None:
            bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
            bar.ax.yaxis.set_minor_formatter(FormatStrFormatter(""))


def claims(runs):
    run = runs["momentum"]
    out = []
    trajectory = run.landscape("trajectory")
    explained = float(np.sum(trajectory.explained_variance))
    out.append(
        claim(
            "PC1 + PC2 explain ≥ 80 % of the trajectory's squared deviation from the final weights",
            {
                "PC1": trajectory.explained_variance[0],
                "PC2": trajectory.explained_variance[1],
                "sum": explained,
            },
            explained >= 0.8,
            "Li et al. 2018: typically 80–95 % for the first two PCs",
            kind="phenomenon",
        )
    )
    line = run.landscape("line")
    final = float(line.loss[-1])
    lowest = float(np.nanmin(trajectory.loss))
    out.append(
        claim(
            "the final weights are at the bottom of the trajectory plane: its lowest grid loss ≥ 0.9 × the final loss",
            {"plane minimum": lowest, "final": final},
            lowest >= 0.9 * final,
            "the path ends in the minimum of the drawn plane (within 10 %)",
            kind="phenomenon",
        )
    )
    _, val = run.scalar("val_loss")
    ends = [float(line.loss[0]), final]
    recorded = [float(val[0]), float(val[-1])]
    close = all(abs(a - b) <= TOLERANCE * abs(b) for a, b in zip(ends, recorded))
    out.append(
        claim(
            "line: loss at t = 0 and t = 1 equal the validation loss recorded before the first and after the last step",
            {"t=0": ends[0], "recorded step 0": recorded[0], "t=1": ends[1], "recorded last": recorded[1]},
            close,
            f"equal within {TOLERANCE:g} (relative)",
            kind="check",
        )
    )
    rises = np.diff(line.loss) > 1e-6 * abs(line.loss[0])
    out.append(
        claim(
            "line: the loss falls monotonically from init to final (no barrier), fraction of rising segments",
            float(rises.mean()),
            not rises.any(),
            "Goodfellow et al. 2015: no barrier on the straight path",
            kind="phenomenon",
        )
    )
    return out
