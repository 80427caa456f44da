"""Learning-rate decay (seed 001): schedules and their effect on the same training run."""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Learning-rate schedules: the same run under seven decays of the rate, and what decay buys"
CAPTION = """
The same MLP (64-64, ReLU, He init) trained on scikit-learn's 8×8 digits (the offline stand-in
for MNIST) by minibatch SGD (batch 32) from the same initial rate α₀ = 0.3, the same weights
and the same minibatches, under seven schedules of the rate α_t (t = optimizer steps; an epoch
is 40 steps): constant; step decay (halved every quarter of the run); exponential
α₀·γ^(t/epoch) and its staircase α₀·γ^⌊t/epoch⌋ (the lecture's 0.95^epoch·α₀ with γ chosen
to reach α₀/10 at the end); inverse time α₀/(1 + k·t/epoch) (the lecture's α₀/(1 + decay·epoch));
α₀·k/√t (k = 1); and a linear warm-up over the first 10 % followed by cosine annealing to 0.
Top left: the rates as recorded by the Recorder (circles: the formulas at chosen steps). Top
right: what decay buys — the validation loss over the last 10 % of the steps (bars; error bars:
its step-to-step noise there): with a constant rate it ends at 0.15 and keeps jumping (the
weights wander around the minimum); every decaying schedule that keeps the rate up long enough
ends lower and settled, warm-up + cosine lowest (0.115). α₀·k/√t decays too early (α₀/9 by step
80) and ends highest: decay too soon and the run stalls. Bottom: each schedule's validation loss
after every step (colour) over the constant rate's (grey), on one linear axis; bottom right: the
loss noise around its trend over the last quarter — decay settles the validation loss (hatched)
5 to 20 times, but not the minibatch loss (solid), whose noise is which 32 examples were drawn.
"""

# -- configuration (stored in every run file) ------------------------------------------------
SEED = 0  # data split, initial weights and minibatch order: the same for every schedule
DATASET = "digits"  # 1257 training, 270 validation examples
DEPTH, WIDTH, ACTIVATION, INIT = 2, 64, "relu", "he_normal"
LR0 = 0.3  # α₀, the same for every schedule
BATCH = 32  # 40 steps per epoch
EPOCHS = 20  # quick: 6
RECORD_EVERY = 10  # the 'scalars' probe (update norm); lr and losses are logged every step
STEPS_PER_EPOCH = 40  # ceil(1257 / 32)
# run key (its file name) -> label in the figure
LABELS = {
    "constant": "constant",
    "step": "step",
    "exponential": "exponential",
    "staircase": "staircase",
    "inverse_time": "inverse time",
    "inv_sqrt": "k/√t",
    "warmup_cosine": "warm-up + cosine",
}


def schedules(epochs: int) -> dict:
    """run key -> (catalog schedule, options) for a run of ``epochs`` epochs (per optimizer step)."""
    spe, total = STEPS_PER_EPOCH, epochs * STEPS_PER_EPOCH
    gamma = round(0.1 ** (1 / epochs), 4)  # per epoch: α₀/10 after the last epoch
    warmup = total // 10
    return {
        "constant": ("constant", {}),
        "step": ("step", {"step_size": total // 4, "gamma": 0.5}),
        "exponential": ("exponential", {"gamma": gamma, "decay_steps": spe}),
        "staircase": ("exponential", {"gamma": gamma, "decay_steps": spe, "staircase": True}),
        "inverse_time": ("inverse_time", {"decay": round(9.0 / epochs, 4) / spe}),  # α₀/10 at the end
        "inv_sqrt": ("inv_sqrt", {"k": 1.0}),
        "warmup_cosine": ("cosine", {"total_steps": total - warmup, "warmup_steps": warmup}),
    }


def formula(key: str, options: dict, t):
    """α_t/α₀ written out for step index t = 0, 1, … (the rate of the (t+1)-th update),
    independently of the catalog's classes, to check the recorded rates against."""
    t = np.asarray(t, dtype=np.float64)
    if key == "constant":
        return np.ones_like(t)
    if key == "step":
        return options["gamma"] ** np.floor(t / options["step_size"])
    if key == "exponential":
        return options["gamma"] ** (t / options["decay_steps"])
    if key == "staircase":
        return options["gamma"] ** np.floor(t / options["decay_steps"])
    if key == "inverse_time":
        return 1.0 / (1.0 + options["decay"] * t)
    if key == "inv_sqrt":
        return options["k"] / np.sqrt(np.maximum(t, 1.0))
    if key == "warmup_cosine":
        w, total = options["warmup_steps"], options["total_steps"]
        after = np.minimum(np.maximum(t - w, 0), total) / total
        return np.where(t < w, (t + 1) / w, 0.5 * (1 + np.cos(np.pi * after)))
    raise KeyError(key)


def _record(key, epochs, path):
    import torch

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.catalog.lr_schedules import make_scheduler
    from dyntrace.catalog.models import make_model
    from dyntrace.catalog.optimizers import make_optimizer

    name, options = schedules(epochs)[key]
    total = epochs * STEPS_PER_EPOCH
    config = {
        "dataset": DATASET,
        "model": "mlp",
        "depth": DEPTH,
        "width": WIDTH,
        "activation": ACTIVATION,
        "init": INIT,
        "optimizer": "sgd",
        "lr": LR0,
        "batch_size": BATCH,
        "steps": total,
        "seed": SEED,
        "schedule": name,
        "schedule_options": options,
        "key": key,
        "label": LABELS[key],
        "logged": "loss (minibatch) and val_loss (whole validation set) after every step",
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        data = make_dataset(DATASET, seed=SEED)
        model = make_model(
            "mlp", data.n_features, data.n_outputs, depth=DEPTH, width=WIDTH, activation=ACTIVATION, init=INIT
        )
        optimizer = make_optimizer("sgd", model.parameters(), lr=LR0)
        scheduler = make_scheduler(name, optimizer, **options)
        criterion = torch.nn.CrossEntropyLoss()
        batches = torch.Generator().manual_seed(SEED)
        n = len(data.X_train)
        if math.ceil(n / BATCH) != STEPS_PER_EPOCH:
            raise RuntimeError(
                f"{n} training examples: {math.ceil(n / BATCH)} steps per epoch, not {STEPS_PER_EPOCH}"
            )
        step = 0
        with dyntrace.Recorder(
            model, optimizer, path, every=RECORD_EVERY, probes=["scalars"], config=config
        ) as rec:
            while step < total:
                for index in torch.randperm(n, generator=batches).split(BATCH):
                    loss = criterion(model(data.X_train[index]), data.y_train[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    with torch.no_grad():  # the fixed validation set: no sampling noise
                        val_loss = criterion(model(data.X_val), data.y_val)
                    rec.log(loss=loss.detach(), val_loss=val_loss)
                    step += 1
                    if step == total:
                        break


def runs(quick: bool) -> dict:
    epochs = 6 if quick else EPOCHS
    return {key: partial(_record, key, epochs) for key in LABELS}


def _check_steps(total: int) -> np.ndarray:
    """Steps at which the recorded rate is shown against its formula."""
    return np.unique(
        np.array([1, 2, total // 10, total // 10 + 1, total // 4, total // 4 + 1, total // 2, total])
    )


def _marks(runs):
    marks = {}
    for key, run in runs.items():
        steps = _check_steps(run.config["steps"])
        marks[LABELS[key]] = (steps, LR0 * formula(key, run.config["schedule_options"], steps - 1))
    return marks


def _colors(runs) -> dict:
    from dyntrace.plots.theme import method_colors

    return dict(zip(runs, method_colors(LABELS[k] for k in runs)))


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.lr_schedules import (
        plot_final_values,
        plot_heldout_vs_reference,
        plot_late_noise,
        plot_lr_schedules,
    )

    labels = [LABELS[key] for key in runs]
    colors = _colors(runs)
    fig = Figure(figsize=(16, 10.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1, 1.25))
    left, right = top.subplots(1, 2, width_ratios=(1.5, 1))
    plot_lr_schedules(
        list(runs.values()),
        labels=labels,
        colors=[colors[k] for k in runs],
        marks=_marks(runs),
        ax=left,
        log=False,
    )
    left.set_title("Learning rate per step, as recorded (circles: the formula)")
    plot_final_values(list(runs.values()), labels=labels, colors=[colors[k] for k in runs], ax=right)
    right.set_title(
        "Validation loss at the end: mean over the last 10 % of the steps\n"
        "(error bars: its step-to-step noise; dotted: constant rate)"
    )
    right.set_ylim(0, None)
    axes = bottom.subplots(2, 4, sharex=True, sharey=True).ravel()
    values = np.concatenate([run.scalar("val_loss")[1] for run in runs.values()])
    ylim = (0.08, min(float(np.max(values)), 0.4))
    others = [k for k in runs if k != "constant"]
    for i, (ax, key) in enumerate(zip(axes, ["constant"] + others)):
        plot_heldout_vs_reference(
            runs[key],
            runs["constant"],
            ax=ax,
            color=colors[key],
            label=LABELS[key],
            reference_label="constant rate",
            ylim=ylim,
        )
        ax.set_title(LABELS[key], color=colors[key], fontweight="bold")
        ax.get_legend().remove()
        ax.set_xlabel("step" if i >= 4 else "")
        if i % 4:
            ax.set_ylabel("")
    axes[-1].remove()  # the shared axes of the grid do not suit bars: a fresh one in its place
    noise = bottom.add_subplot(2, 4, 8)
    plot_late_noise(
        list(runs.values()),
        labels=labels,
        colors=[colors[k] for k in runs],
        names=("loss", "val_loss"),
        name_labels=("minibatch loss", "validation loss"),
        ax=noise,
    )
    noise.set_title("Noise around the trend, last quarter", fontsize="medium")
    noise.tick_params(axis="x", labelsize="x-small")
    bottom.suptitle(
        "Validation loss after every step (grey underneath: the constant rate)", fontweight="bold"
    )
    return fig


def claims(runs):
    from dyntrace.plots.lr_schedules import late_mean, late_noise, lr_at_steps

    errors = {}
    for key, run in runs.items():
        total = run.config["steps"]
        options = run.config["schedule_options"]
        steps, lr = lr_at_steps(run, np.arange(1, total + 1))
        expected = LR0 * formula(key, options, steps - 1)
        errors[LABELS[key]] = float(np.max(np.abs(lr - expected) / expected))
    out = [
        claim(
            "the recorded rate equals its formula at every step: largest relative error per schedule",
            {k: f"{v:.0e}" for k, v in errors.items()},
            max(errors.values()) < 1e-9,
            "< 1e-9 (the catalog's schedules and the Recorder's lr log against formulas written out here)",
            kind="check",
        )
    ]
    final = {key: late_mean(run, "val_loss") for key, run in runs.items()}
    ratio = {LABELS[k]: final[k] / final["constant"] for k in runs if k != "constant"}
    out.append(
        claim(
            "validation loss over the last 10 % of the steps ÷ the constant rate's, per schedule",
            ratio,
            ratio[LABELS["warmup_cosine"]] <= 0.9
            and ratio[LABELS["step"]] <= 0.9
            and ratio[LABELS["inv_sqrt"]] > 1,
            f"warm-up + cosine and step decay ≤ 0.9 (constant: {final['constant']:.3g}): decay ends lower; "
            "k/√t > 1: decayed too early (the others in between, lower in a full run)",
            kind="phenomenon",
        )
    )
    val = {key: late_noise(run, "val_loss") for key, run in runs.items()}
    ratio = {LABELS[key]: val[key] / val["constant"] for key in runs if key != "constant"}
    out.append(
        claim(
            "validation-loss noise over the last quarter, relative to the constant rate: "
            "every decaying schedule below 1/3",
            ratio,
            all(r < 1 / 3 for r in ratio.values()),
            f"< 0.33 (constant: {val['constant']:.3g})",
            kind="phenomenon",
        )
    )
    mb = {key: late_noise(run, "loss") for key, run in runs.items()}
    out.append(
        claim(
            "minibatch-loss noise, last quarter, decaying schedule ÷ constant rate: "
            "not reduced in proportion to the rate",
            {LABELS[key]: mb[key] / mb["constant"] for key in runs if key != "constant"},
            all(mb[key] / mb["constant"] > 0.3 for key in runs if key != "constant"),
            "> 0.3 for each, while the final rate is α₀/10 or less: that noise is which 32 examples were drawn",
            kind="phenomenon",
        )
    )
    return out
