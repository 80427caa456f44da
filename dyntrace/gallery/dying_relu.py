"""Dying ReLU: too high a learning rate pushes units below zero on every input, for good.

Setup of REFERENCES §6: MSE regression with 10-d inputs (the catalog's teacher–student data),
an MLP 10 → 128 × 3 → 1 with He init, SGD on minibatches of 32 drawn with replacement, 2000
steps. On every record step the entry runs the whole training set (1400 inputs) forward and
back and logs, per hidden layer, what the pre-activations z = W h + b say:

- ``negative_units/layer{k}``: the share of units with z ≤ 0 on every training input. For
  ReLU these are the dead units (output 0 on every input, so zero gradient); for LeakyReLU
  the same condition leaves the unit on its slope-0.01 side everywhere, still passing a gradient;
- ``grad_negative/layer{k}``, ``grad_positive/layer{k}``: the mean norm of ∂L/∂W's rows (a
  unit's incoming weights) over those units and over the others (NaN where a set is empty);
- ``still_negative/layer{k}``: of the units negative everywhere at step ``EARLY``, the share
  still negative everywhere now (recovery is its fall);
- ``train_loss``: the MSE on the whole training set.

Each record describes the weights after ``step`` updates. The activations probe watches the
same forward pass, so its dead-unit count (outputs exactly 0 on every input) can be checked
against the pre-activations for ReLU.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim
from dyntrace.plots.dying_relu import final_dead, gradient_ratio, negative_share

TITLE = "Dying ReLU: a too-high learning rate kills a third of the units for good; LeakyReLU's still learn"
CAPTION = """
An MLP 10 → 128 × 3 → 1 (He init) fits a teacher–student regression with SGD on minibatches of 32
(REFERENCES §6). A unit is dead when its pre-activation is ≤ 0 on every one of the 1400 training
inputs: a ReLU then outputs 0 everywhere and gets exactly zero gradient. Top left: at lr 0.03 the
loss overshoots in its first steps (top right: ×100 above its start) and about a third of the
units of layers 2 and 3 die within 5 steps — and stay dead; at the safe lr 0.005 the loss falls
from the first step and no unit dies. Top middle: LeakyReLU (slope 0.01) at the same lr 0.03 is
pushed below zero just as often: the same share of its units is negative on every input. The
difference is the gradient (bottom left): a dead ReLU unit's incoming weights get exactly 0,
LeakyReLU's negative units still get a gradient, a few percent of a live unit's, so they keep
learning. Bottom middle: recovery. Of the units negative everywhere at step 20, ReLU's layer-2
units never come back; a few of layer 3 do, when the layer below changes their inputs; LeakyReLU's
move, but too slowly (slope 0.01) to come back within 2000 steps. Bottom right: the share of dead
units for five training seeds (initial weights and minibatches; seed 0 at step 2000, the others at
step 500) at both rates, beside the calibration band of REFERENCES §6 (12–29 %): seeds spread from
about 5 % to 45 %, their median inside the band.
Steps on a log axis from step 1.
"""

# -- configuration (saved into each run file) --------------------------------------------------
DATA = {"dataset": "teacher_student", "n_features": 10}  # y = tanh(x W₁/√10) W₂/√32 + noise
DEPTH, WIDTH = 3, 128  # 10 → 128 × 3 → 1
BATCH = 32  # minibatches drawn with replacement
STEPS = 2000  # REFERENCES §6
SAFE_LR, HIGH_LR = (
    0.005,
    0.03,
)  # 0.005: the full-set loss never rises above its start; 0.01 already overshoots ×5
LEAKY_SLOPE = 0.01  # torch's default negative slope
SEED = 0  # the data set's seed, and the training seed of the main runs
SEEDS = (1, 2, 3, 4)  # extra training seeds (initial weights, minibatch draws) for the spread
SEED_STEPS = 500  # the spread's runs: units die in the first few steps and stay dead
EARLY = 20  # "dies early": by this step; recovery is counted from here
DEAD_SHARE = 0.10  # "a large share": at least 10 % of a layer's units
RECORD_FIRST, RECORD_EVERY = 60, 50  # every step for the first 60 (units die early), then every 50
CALIBRATION = (0.12, 0.29)  # REFERENCES §6: lr 0.03 → 12–29 % dead in layers 2–3

VARIANTS = {  # label: (activation, lr)
    "relu_high": ("relu", HIGH_LR),
    "leaky_high": ("leaky_relu", HIGH_LR),
    "relu_safe": ("relu", SAFE_LR),
}
LABELS = {
    "relu_high": f"ReLU, lr {HIGH_LR} (too high)",
    "leaky_high": f"LeakyReLU, lr {HIGH_LR} (too high)",
    "relu_safe": f"ReLU, lr {SAFE_LR} (safe)",
}
LAYERS = (1, 2, 3)
DEEP = (2, 3)  # the layers that die (layer 1 sees the raw Gaussian inputs)


def _recorder(activation: str, lr: float, steps: int, seed: int, full: bool):
    """A callable ``path -> None`` that trains one variant and records it."""

    def record(path: str) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            _train(path, activation, lr, steps, seed, full)

    return record


def _measure(model, layers, x, y, negative_early):
    """Scalars of the weights as they are now: see the module docstring. Runs the training set
    forward with gradients enabled (the activations probe sees this pass when it is armed)."""
    import torch

    pre = []
    handles = [layer.register_forward_hook(lambda m, i, out: pre.append(out)) for layer in layers]
    try:
        loss = torch.nn.functional.mse_loss(model(x), y)
    finally:
        for h in handles:
            h.remove()
    grads = torch.autograd.grad(loss, [layer.weight for layer in layers])
    out = {"train_loss": loss.detach()}
    negative = []
    for k, (z, g) in enumerate(zip(pre, grads), start=1):
        neg = z.detach().amax(dim=0) <= 0  # ≤ 0 on every training input
        negative.append(neg)
        rows = g.norm(dim=1)
        out[f"negative_units/layer{k}"] = neg.double().mean()
        out[f"grad_negative/layer{k}"] = rows[neg].mean() if neg.any() else float("nan")
        out[f"grad_positive/layer{k}"] = rows[~neg].mean() if (~neg).any() else float("nan")
        if negative_early is not None:
            early = negative_early[k - 1]
            out[f"still_negative/layer{k}"] = (
                (early & neg).sum() / early.sum() if early.any() else float("nan")
            )
    return out, negative


def _train(path: str, activation: str, lr: float, steps: int, seed: int, full: bool) -> None:
    """``full``: measure on the record schedule with the activations probe; else only at the start
    and the end (the seed runs of the spread panel)."""
    import torch

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.catalog.models import make_model
    from dyntrace.schedules import FirstThenEvery

    options = {"negative_slope": LEAKY_SLOPE} if activation == "leaky_relu" else {}
    config = {
        **DATA,
        "model": "mlp",
        "depth": DEPTH,
        "width": WIDTH,
        "activation": activation,
        "activation_options": options,
        "init": "he_normal",
        "optimizer": "sgd",
        "lr": lr,
        "batch_size": BATCH,
        "replacement": True,
        "steps": steps,
        "seed": seed,
        "data_seed": SEED,
        "negative_units_measured_on": "the whole training set (1400 inputs), before the step's update",
    }
    data = make_dataset(DATA["dataset"], seed=SEED, n_features=DATA["n_features"])
    x, y = data.X_train, data.y_train
    torch.manual_seed(seed)
    model = make_model(
        "mlp",
        x.shape[1],
        y.shape[1],
        depth=DEPTH,
        width=WIDTH,
        activation=activation,
        init="he_normal",
        activation_options=options,
    )
    layers = [getattr(model, f"fc{k}") for k in LAYERS]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    draws = torch.Generator().manual_seed(seed)
    schedule = FirstThenEvery(RECORD_FIRST, RECORD_EVERY) if full else (lambda step: step in (1, steps + 1))
    probes = ["scalars", "activations"] if full else []
    early = None
    with dyntrace.Recorder(model, optimizer, path, every=schedule, probes=probes, config=config) as rec:
        for step in range(steps + 1):
            if schedule(step + 1) or step == EARLY:
                # the weights after `step` updates; when the probe is armed for the next update it
                # sees this pass too, so its "active somewhere" mask covers the training set
                scalars, negative = _measure(model, layers, x, y, early if step >= EARLY else None)
                if step == EARLY:
                    early = negative
                    scalars.update(
                        {
                            f"still_negative/layer{k}": 1.0 if negative[k - 1].any() else float("nan")
                            for k in LAYERS
                        }
                    )
                rec.log(**scalars)
            if step == steps:
                break
            index = torch.randint(len(x), (BATCH,), generator=draws)
            loss = torch.nn.functional.mse_loss(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if full:
                rec.log(loss=loss.detach())


def runs(quick: bool) -> dict:
    steps = 150 if quick else STEPS  # units die within ~5 steps; quick mode still shows it
    out = {label: _recorder(act, lr, steps, SEED, True) for label, (act, lr) in VARIANTS.items()}
    for seed in SEEDS:
        for label, (act, lr) in VARIANTS.items():
            if act == "relu":
                out[f"{label}_seed{seed}"] = _recorder(act, lr, 60 if quick else SEED_STEPS, seed, False)
    return out


# -- figure -------------------------------------------------------------------------------------
def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.dying_relu import (
        plot_dead_share_by_seed,
        plot_full_loss,
        plot_negative_gradient,
        plot_negative_units,
        plot_recovery,
    )

    fig = Figure(figsize=(16, 9), layout="constrained")
    axes = fig.subplots(2, 3)
    main = {k: runs[k] for k in VARIANTS}
    plot_negative_units(
        [main["relu_high"], main["relu_safe"]],
        labels=[LABELS["relu_high"], LABELS["relu_safe"]],
        ax=axes[0, 0],
    )
    axes[0, 0].set_title("ReLU: dead units (pre-activation ≤ 0 on every input)")
    plot_negative_units([main["leaky_high"]], labels=[LABELS["leaky_high"]], ax=axes[0, 1])
    axes[0, 1].set_title("LeakyReLU, same lr: units negative on every input")
    axes[0, 1].sharey(axes[0, 0])
    plot_full_loss(list(main.values()), labels=[LABELS[k] for k in main], ax=axes[0, 2])
    plot_negative_gradient(
        [main["relu_high"], main["leaky_high"]],
        labels=[LABELS["relu_high"], LABELS["leaky_high"]],
        layers=DEEP,
        ax=axes[1, 0],
    )
    plot_recovery(
        [main["relu_high"], main["leaky_high"]],
        labels=[LABELS["relu_high"], LABELS["leaky_high"]],
        layers=DEEP,
        early=EARLY,
        ax=axes[1, 1],
    )
    plot_dead_share_by_seed(
        {f"lr {HIGH_LR}": _seed_runs(runs, "relu_high"), f"lr {SAFE_LR}": _seed_runs(runs, "relu_safe")},
        layers=DEEP,
        band=CALIBRATION,
        band_label="§6 calibration at lr 0.03",
        ax=axes[1, 2],
    )
    for ax in axes.ravel()[:5]:
        # units die in the first few steps: log steps, with step 0 (the initial weights) kept
        ax.set_xscale("symlog", linthresh=1, linscale=0.4)
        ax.set_xlim(0, None)
        ticks = [t for t in (0, 1, 10, 100, 1000, 10000) if t <= runs["relu_high"].n_steps]
        ax.set_xticks(ticks, [str(t) for t in ticks])
    fig.suptitle(
        "Dying ReLU: MLP 10 → 128 × 3 → 1, SGD, batch 32, on 1400 regression inputs", fontweight="bold"
    )
    return fig


def _seed_runs(runs, label):
    return [runs[label]] + [runs[f"{label}_seed{s}"] for s in SEEDS if f"{label}_seed{s}" in runs]


# -- claims -------------------------------------------------------------------------------------
def dead_claim(run, label: str = LABELS["relu_high"]):
    """Phenomenon: ≥ 10 % of the units of layers 2 and 3 dead at the end, most of them since
    step EARLY. A control at a safe rate fails it (no unit dies)."""
    dead = final_dead(run)
    steps, share = negative_share(run, DEEP)
    at_early = share[np.searchsorted(steps, EARLY)]
    early_part = float(at_early.sum() / dead.sum()) if dead.sum() > 0 else 0.0
    ok = bool(np.all(dead >= DEAD_SHARE) and early_part >= 0.8)
    return claim(
        f"{label}: ≥ {DEAD_SHARE:.0%} of the units of layers 2 and 3 dead at the end, "
        f"most of them dead already at step {EARLY}",
        {"layer 2": dead[0], "layer 3": dead[1], f"dead share at step {EARLY} / at the end": early_part},
        ok,
        f"≥ {DEAD_SHARE:.0%}; ≥ 0.8. {_band_note(dead)} for this seed; the seed median, next claim",
        kind="phenomenon",
    )


def _band_note(values) -> str:
    lo, hi = CALIBRATION
    values = np.atleast_1d(values)
    if np.all((values >= lo) & (values <= hi)):
        return "§6 calibration 12–29 %: inside"
    return (
        "§6 calibration 12–29 %: outside ("
        + ("above" if np.all(values > hi) else "below" if np.all(values < lo) else "partly outside")
        + ")"
    )


def seeds_claim(high_runs, safe_runs):
    """Phenomenon, over training seeds: the median dead share (layers 2–3) at the too-high rate
    lies in the §6 band, and the safe rate loses at most 2 % of any layer for every seed."""
    high = np.array([final_dead(r) for r in high_runs])  # [seeds, layers]
    safe = np.array([final_dead(r) for r in safe_runs])
    median = float(np.median(high))
    lo, hi = CALIBRATION
    ok = lo <= median <= hi and float(safe.max()) <= 0.02
    return claim(
        f"{len(high_runs)} training seeds (initial weights, minibatches; seed 0 at step {STEPS}, the others at "
        f"step {SEED_STEPS}): median dead share of layers 2–3 at lr {HIGH_LR}; largest at lr {SAFE_LR}",
        {
            f"lr {HIGH_LR}, median": median,
            "range": f"{high.min():.2f}–{high.max():.2f}",
            f"lr {SAFE_LR}, largest": float(safe.max()),
        },
        ok,
        f"median in 12–29 % (§6 calibration: {_band_note(median).split(': ')[1]}); ≤ 0.02 at a safe rate (§6)",
        kind="phenomenon",
    )


def no_overshoot_claim(run, label: str = LABELS["relu_safe"]):
    """Phenomenon: the full training loss never rises above its start and no unit dies."""
    _, loss = run.scalar("train_loss")
    peak = float(np.max(loss) / loss[0])
    dead = float(np.max(negative_share(run)[1]))
    return claim(
        f"{label}: the training-set loss never rises above its start, and no unit dies",
        {"peak / start": peak, "largest dead share": dead},
        peak <= 1.0 and dead == 0,
        "≤ 1 and 0 (a safe rate: REFERENCES §6 gives ≤ 2 % dead at lr ≤ 0.01)",
        kind="phenomenon",
    )


def claims(runs):
    high, leaky, safe = runs["relu_high"], runs["leaky_high"], runs["relu_safe"]
    out = [
        dead_claim(high),
        seeds_claim(_seed_runs(runs, "relu_high"), _seed_runs(runs, "relu_safe")),
        no_overshoot_claim(safe),
    ]
    steps, loss = high.scalar("train_loss")
    first = steps <= 10
    peak = float(np.max(loss[first]) / loss[0])
    out.append(
        claim(
            f"{LABELS['relu_high']}: the training-set loss overshoots in the first 10 steps (peak / start)",
            peak,
            peak >= 10,
            "≥ 10: the overshoot that pushes the units below zero",
            kind="phenomenon",
        )
    )
    leaky_dead = final_dead(leaky)
    out.append(
        claim(
            f"{LABELS['leaky_high']}: ≥ {DEAD_SHARE:.0%} of layers 2 and 3 negative on every input too",
            {
                "layer 2": leaky_dead[0],
                "layer 3": leaky_dead[1],
                "ReLU": ", ".join(f"{v:.3g}" for v in final_dead(high)),
            },
            bool(np.all(leaky_dead >= DEAD_SHARE)),
            f"≥ {DEAD_SHARE:.0%}: LeakyReLU does not stop the push below zero (issue 17's rerun at step 2000: "
            "37.5 % / 33.6 %)",
            kind="phenomenon",
        )
    )
    relu_grad = np.stack([high.scalar(f"grad_negative/layer{k}")[1] for k in DEEP])
    _, ratio = gradient_ratio(leaky)
    late = ratio[np.searchsorted(_, EARLY) :]
    out.append(
        claim(
            "gradient of the units negative everywhere (layers 2–3): ReLU's largest row norm; "
            "LeakyReLU's relative to its live units', median after step 20",
            {"ReLU": float(np.nanmax(relu_grad)), "LeakyReLU": float(np.nanmedian(late))},
            np.nanmax(relu_grad) == 0 and 0.005 <= np.nanmedian(late) <= 0.5,
            "ReLU exactly 0 (z ≤ 0 ⇒ ReLU′ = 0); LeakyReLU between 0.5 % and 50 % (slope 0.01 times "
            "the signal from above)",
            kind="check",
        )
    )
    kept = {f"layer {k}": float(high.scalar(f"still_negative/layer{k}")[1][-1]) for k in DEEP}
    out.append(
        claim(
            f"{LABELS['relu_high']}: of the units dead at step {EARLY}, the share still dead at the end",
            kept,
            kept["layer 2"] >= 0.95 and kept["layer 3"] >= 0.8,
            "≈ 1: nothing reaches a dead unit's weights; only a change of its inputs (the layer "
            "below) can revive it",
            kind="phenomenon",
        )
    )
    # the probe's dead count (outputs exactly 0 on the training set and the step's batch, recorded
    # with update s + 1) against the pre-activations of the weights after s updates
    probe_steps = high.steps("activations")
    probe = np.stack([high.stat("activations", f"act{k}", "frac_dead")[1] for k in LAYERS], axis=1)
    scal_steps, share = negative_share(high)
    at = np.searchsorted(scal_steps, probe_steps - 1)
    ok_rows = (at < len(scal_steps)) & (scal_steps[np.minimum(at, len(scal_steps) - 1)] == probe_steps - 1)
    diff = float(np.max(np.abs(probe[ok_rows] - share[at[ok_rows]])))
    out.append(
        claim(
            "the activations probe's dead-unit share equals the share of units with pre-activation ≤ 0 "
            "on every input (ReLU, every record; largest difference)",
            diff,
            diff == 0 and ok_rows.sum() > 10,
            "0 (both count the same units)",
            kind="check",
        )
    )
    born = max(float(np.max(negative_share(runs[k])[1][0])) for k in VARIANTS)
    out.append(
        claim(
            "He init: share of units negative on every input before the first update (largest over runs)",
            born,
            born <= 0.02,
            "width 128, depth 3: P(born dead) ≈ 0 (§6: < 0.04 at width 10 up to depth 50)",
            kind="check",
        )
    )
    return out
