"""Dying ReLU: too high a learning rate leaves units that output 0 for every input, for good.

Setup of REFERENCES §6: MSE regression with 10-d inputs (the catalog's teacher–student data),
an MLP 10 → 128 × 3 → 1 with He init, SGD on minibatches of 32 drawn with replacement, 2000
steps. "Dead on the data set" is measured with the activations probe: on every record step the
entry also runs the whole training set (1400 inputs) forward with gradients enabled, so the
probe's per-unit "active somewhere" mask covers the training set plus the step's batch. (On the
32-sample batch alone a live unit that fires for 1 input in 10 looks dead 3 times in 100.)
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Dying ReLU: dead units per layer at a safe and at a too-high learning rate"
CAPTION = """
Fraction of each hidden layer's units that are dead — output exactly 0 for every one of the 1400
training inputs — while an MLP 10 → 128 × 3 → 1 (ReLU, He init) fits a regression with SGD on
minibatches of 32. At lr 0.01 no unit dies. At lr 0.03 a large share of layers 2 and 3 dies
within the first few steps — when the loss overshoots, bottom right — and never comes back: a
dead unit gets zero gradient. The first layer, fed by the raw inputs, keeps its units. The loss
hardly suffers here (128 units are more than this teacher needs), but the dead units are
capacity lost for good. Controls: the same too-high rate with LeakyReLU (slope 0.01) loses no
unit (its output is never exactly 0, so its gradient never vanishes), and at step 1 He init has
no dead unit anywhere (nothing is born dead at width 128, depth 3). At lr 0.05 this problem
diverges (not shown). Bottom right: training loss (the two lr-0.03 curves nearly coincide).
Steps on a log axis.
"""

# -- configuration (saved into each run file) --------------------------------------------------
DATA = {"dataset": "teacher_student", "n_features": 10}  # y = tanh(x W₁/√10) W₂/√32 + noise
DEPTH, WIDTH = 3, 128  # 10 → 128 × 3 → 1
BATCH = 32  # minibatches drawn with replacement
STEPS = 2000  # REFERENCES §6
SAFE_LR, HIGH_LR = 0.01, 0.03
LEAKY_SLOPE = 0.01  # torch's default negative slope
SEED = 0
EARLY = 20  # "dies early": by this step
RECORD_FIRST, RECORD_EVERY = 60, 50  # every step for the first 60 (units die early), then every 50

VARIANTS = {  # label: (activation, lr)
    "relu_lr0.01": ("relu", SAFE_LR),
    "relu_lr0.03": ("relu", HIGH_LR),
    "leaky_relu_lr0.03": ("leaky_relu", HIGH_LR),
}
LABELS = {
    "relu_lr0.01": f"ReLU, lr {SAFE_LR} (safe)",
    "relu_lr0.03": f"ReLU, lr {HIGH_LR} (too high)",
    "leaky_relu_lr0.03": f"LeakyReLU, lr {HIGH_LR} (control)",
}


def _recorder(activation: str, lr: float, steps: int):
    """A callable ``path -> None`` that trains one variant and records it."""

    def record(path: str) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            _train(path, activation, lr, steps)

    return record


def _train(path: str, activation: str, lr: float, steps: int) -> None:
    import torch

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.catalog.models import make_model
    from dyntrace.schedules import FirstThenEvery

    options = {"negative_slope": LEAKY_SLOPE} if activation == "leaky_relu" else {}
    config = {**DATA, "model": "mlp", "depth": DEPTH, "width": WIDTH, "activation": activation,
              "activation_options": options, "init": "he_normal", "optimizer": "sgd", "lr": lr,
              "batch_size": BATCH, "replacement": True, "steps": steps, "seed": SEED,
              "dead_measured_on": "training set + the step's batch"}
    torch.manual_seed(SEED)
    data = make_dataset(DATA["dataset"], seed=SEED, n_features=DATA["n_features"])
    x, y = data.X_train, data.y_train
    model = make_model("mlp", x.shape[1], y.shape[1], depth=DEPTH, width=WIDTH, activation=activation,
                       init="he_normal", activation_options=options)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    draws = torch.Generator().manual_seed(SEED)
    schedule = FirstThenEvery(RECORD_FIRST, RECORD_EVERY)
    with dyntrace.Recorder(model, optimizer, path, every=schedule, probes=["scalars", "activations"],
                           config=config) as rec:
        for _ in range(steps):
            if schedule(rec.step + 1):
                # the probe is armed for this step: a pass over the whole training set (no
                # backward) joins the batch's "active somewhere" mask, so dead = dead on the data
                model(x)
            index = torch.randint(len(x), (BATCH,), generator=draws)
            loss = torch.nn.functional.mse_loss(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            rec.log(loss=loss.detach())


def runs(quick: bool) -> dict:
    steps = 150 if quick else STEPS  # units die within ~20 steps; quick mode still shows it
    return {label: _recorder(activation, lr, steps) for label, (activation, lr) in VARIANTS.items()}


def _dead(run, stat="frac_dead"):
    """(steps, layer names, fractions [records, layers]) of the run's activation layers."""
    names = run.names("activations")
    columns = [run.stat("activations", name, stat) for name in names]
    return columns[0][0], names, np.stack([values for _, values in columns], axis=1)


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.compare import plot_compare_loss
    from dyntrace.plots.units import plot_dead_units

    fig = Figure(figsize=(12, 8), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, label in zip(axes, VARIANTS):
        plot_dead_units(runs[label], ax=ax)
        ax.set_title(f"{LABELS[label]}: dead units per layer")
        _, _, dead = _dead(runs[label])
        if np.nanmax(dead) == 0:
            ax.text(0.5, 0.5, "no dead unit in any layer", transform=ax.transAxes, ha="center", color="dimgray")
    plot_compare_loss([runs[k] for k in VARIANTS], labels=[LABELS[k] for k in VARIANTS], beta=0.7, ax=axes[3])
    axes[3].set_title("Training loss (MSE per minibatch; EWMA β = 0.7 solid)")
    for ax in axes:
        ax.set_xscale("log")  # units die in the first few dozen steps
        ax.set_xlim(1, None)
    fig.suptitle("Dead = output 0 for all 1400 training inputs (ReLU MLP 10 → 128 × 3 → 1, SGD, batch 32)")
    return fig


def claims(runs):
    out = []
    final = {}
    for label in VARIANTS:
        _, _, dead = _dead(runs[label])
        final[label] = dead[-1]
    safe, high, leaky = (final[k] for k in VARIANTS)
    out.append(claim(f"lr {SAFE_LR}: at most 2 % of the units dead in every layer at the end",
                     {f"layer {i + 1}": v for i, v in enumerate(safe)}, np.all(safe <= 0.02),
                     "lr ≤ 0.01 → ≤ 2 % dead per layer (§6 calibration)"))
    out.append(claim(f"lr {HIGH_LR}: at least 10 % of the units of layers 2 and 3 dead at the end",
                     {f"layer {i + 1}": v for i, v in enumerate(high)}, np.all(high[1:] >= 0.10),
                     "lr 0.03 → 12–29 % dead in layers 2–3 (§6 calibration)"))
    out.append(claim(f"LeakyReLU at lr {HIGH_LR}: no unit dead in any layer", float(np.max(leaky)),
                     np.all(leaky == 0), "0 (LeakyReLU is never exactly 0)"))
    born = [float(np.max(_dead(runs[k])[2][0])) for k in VARIANTS]
    out.append(claim("He init: at step 1 at most 2 % of the units dead in any layer (largest over runs)",
                     max(born), max(born) <= 0.02, "width 128, depth 3: P(born dead) ≈ 0 (§6)"))
    # dead units stay dead: the fraction dead for 3 records in a row equals the dead fraction
    _, _, persistent = _dead(runs["relu_lr0.03"], "frac_dead_persistent")
    kept = float(persistent[-1][1:].sum() / max(high[1:].sum(), 1e-12))
    out.append(claim(f"lr {HIGH_LR}: the dead units of layers 2–3 stay dead (persistent / dead at the end)",
                     kept, kept >= 0.9, "≈ 1: a dead ReLU gets no gradient"))
    # units die early, in the overshoot of the first steps
    steps, _, dead = _dead(runs["relu_lr0.03"])
    early = dead[np.searchsorted(steps, EARLY)][1:].sum() / max(high[1:].sum(), 1e-12)
    out.append(claim(f"lr {HIGH_LR}: by step {EARLY} layers 2–3 have lost ≥ 80 % of the units they lose by the end",
                     float(early), early >= 0.8, "units die early (§6: too high a rate kills units)"))
    return out
