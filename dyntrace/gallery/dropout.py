"""Dropout: what it does to the activations, to the train/validation gap, and why it makes a network
robust to losing units (seed 002: "뉴런을 임의로 삭제하면서 학습", seed 003: co-adaptation, "동조화현상").

An MLP 64 → [100] × 2 → 10 (ReLU, He init) on 300 training digits, Adam lr 0.001, minibatches of
32 (shuffled epochs), 60 epochs, with and without inverted dropout p = 0.5 after each hidden ReLU
(nn.Dropout: in training each unit is zeroed with probability p and the others are scaled by
1/(1 − p); in evaluation it does nothing). The activations probe records the outputs of the ReLU
and dropout layers in training. After every epoch, in evaluation mode: loss and accuracy on the
training and validation sets, and the validation accuracy with half of the hidden units of every
layer removed (ten fixed random choices, the rest scaled by 2, averaged).
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Dropout: half the units silenced in every step makes a network that survives losing them"
CAPTION = """
Left: what dropout does to the activations, from the activations probe (first hidden layer, a
training step late in the run). The ReLU already outputs 0 for part of the units; dropout (p = 0.5)
silences half of the rest at random and doubles the survivors, so the spike at 0 grows and the
non-zero values spread out, while the mean stays the same. Middle: loss per epoch on the clean
training set (solid) and the validation set (dashed). Without dropout the network drives its
training loss towards 0; with dropout the training loss stays higher, and the gap between the two
narrows. Right: validation accuracy of the whole network (solid) and with half of the hidden units
of every layer removed after training (dotted). The network trained without dropout has spread
what it knows over units that rely on each other (co-adaptation): without half of them it keeps
only about 55 % of its accuracy; the network trained with dropout has learned with half its units
missing at every step and keeps 85 %.
On 300 digits the intact accuracies end close to each other.
"""

# -- configuration (saved into each run file) --------------------------------------------------
LIMIT = 300  # training examples
DEPTH, WIDTH = 2, 100
LR = 0.001  # Adam
BATCH = 32
EPOCHS = 60
P = 0.5
REMOVED = 0.5  # share of hidden units removed in the robustness test
MASKS = 10  # random choices of removed units, averaged
SEED = 0
VARIANTS = {"no_dropout": 0.0, "dropout": P}
NAMES = {"no_dropout": "no dropout", "dropout": f"dropout p = {P}"}
COLORS = {"no_dropout": "#222222", "dropout": "#0173b2"}


def dropout_run(p: float, epochs: int = EPOCHS):
    """A callable ``path -> None`` training the MLP with dropout probability ``p`` (0: none)."""

    def record(path: str) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            _train(path, p, epochs)

    return record


def _damaged_accuracy(model, x, y, masks):
    """Accuracy with each mask's hidden units removed (kept units scaled by 1/(1 − share)), averaged."""
    import torch

    accuracies = []
    with torch.no_grad():
        for mask in masks:  # mask: {activation module name: bool [units] kept}
            h = x
            for name, module in model.named_children():
                h = module(h)
                if name in mask:
                    h = h * mask[name] / (1 - REMOVED)
            accuracies.append((h.argmax(1) == y).float().mean())
    return torch.stack(accuracies).mean()


def _train(path: str, p: float, epochs: int) -> None:
    import torch
    import torch.nn.functional as F

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.catalog.models import make_model
    from dyntrace.probes.activations import ActivationsProbe

    torch.manual_seed(SEED)
    data = make_dataset("digits", seed=SEED, limit=LIMIT)
    model = make_model(
        "mlp", 64, 10, depth=DEPTH, width=WIDTH, activation="relu", init="he_normal", dropout=p
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    order = torch.Generator().manual_seed(SEED)
    choose = torch.Generator().manual_seed(SEED + 1)
    masks = [
        {f"act{i}": torch.rand(WIDTH, generator=choose) >= REMOVED for i in range(1, DEPTH + 1)}
        for _ in range(MASKS)
    ]
    config = {
        "dataset": "digits",
        "limit": LIMIT,
        "model": "mlp",
        "depth": DEPTH,
        "width": WIDTH,
        "activation": "relu",
        "init": "he_normal",
        "dropout": p,
        "dropout_style": "inverted",
        "optimizer": "adam",
        "lr": LR,
        "batch_size": BATCH,
        "epochs": epochs,
        "seed": SEED,
        "robustness_test": {"removed": REMOVED, "masks": MASKS},
    }
    probes = ["scalars", ActivationsProbe(modules=["act*", "drop*"])]  # ReLU and dropout outputs
    x, y = data.X_train, data.y_train
    with dyntrace.Recorder(model, optimizer, path, every=25, probes=probes, config=config) as rec:
        for _ in range(epochs):
            model.train()
            for index in torch.randperm(len(x), generator=order).split(BATCH):
                loss = F.cross_entropy(model(x[index]), y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                rec.log(loss=loss.detach())
            model.eval()
            with torch.no_grad():
                for split, (xs, ys) in (("train", (x, y)), ("val", (data.X_val, data.y_val))):
                    logits = model(xs)
                    rec.log(
                        **{
                            f"{split}_loss": F.cross_entropy(logits, ys),
                            f"{split}_accuracy": (logits.argmax(1) == ys).float().mean(),
                        }
                    )
                rec.log(val_accuracy_half_removed=_damaged_accuracy(model, data.X_val, data.y_val, masks))


def runs(quick: bool) -> dict:
    # 2 × 600 steps of a small MLP take a couple of seconds: quick mode runs the same
    return {label: dropout_run(p) for label, p in VARIANTS.items()}


def _nonzero_density(run, name, record: int = -1):
    """(edges, density of the non-zero outputs per unit of value as a share of all outputs, share of
    exact zeros) of one layer at one record. The probe bins a ReLU's exact zeros apart (underflow)
    and a dropout layer's in the bin starting at 0; both are taken out here."""
    hist = run.hist("activations", name)
    counts = hist.counts[record].astype(np.float64)
    if hist.underflow[record] < hist.zeros[record]:  # the zeros are in the bin that starts at 0
        counts[int(np.searchsorted(hist.edges, 0.0, side="right")) - 1] -= hist.zeros[record]
    sampled = max(float(hist.sampled[record]), 1.0)
    return hist.edges, counts / sampled / np.diff(hist.edges), hist.zeros[record] / sampled


def _end(run, name, last: int = 5):
    return float(np.mean(run.scalar(name)[1][-last:]))


def figure(runs):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 5.4), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    run = runs["dropout"]
    for name, color, label, fill in (
        ("act1", "#949494", "ReLU output (before dropout)", True),
        ("drop1", COLORS["dropout"], "after dropout (p = 0.5)", False),
    ):
        edges, density, zero = _nonzero_density(run, name)
        left.stairs(
            density,
            edges,
            color=color,
            lw=1.8,
            fill=fill,
            alpha=0.6 if fill else 1,
            label=f"{label}: {zero:.0%} exactly 0",
        )
    left.set_xlim(0, 4)
    left.set_xlabel("output value (first hidden layer, training mode)")
    left.set_ylabel("density of the non-zero outputs")
    left.legend(loc="upper right", fontsize="small")
    left.set_title(f"Activations at step {int(run.steps('activations')[-1])}", fontsize="medium")
    for key in VARIANTS:
        r, color = runs[key], COLORS[key]
        epochs = np.arange(1, len(r.scalar("train_loss")[1]) + 1)
        middle.plot(epochs, r.scalar("train_loss")[1], color=color, lw=1.8, label=f"{NAMES[key]}: training")
        middle.plot(
            epochs, r.scalar("val_loss")[1], color=color, lw=1.4, ls="--", label=f"{NAMES[key]}: validation"
        )
        right.plot(
            epochs, r.scalar("val_accuracy")[1], color=color, lw=1.8, label=f"{NAMES[key]}: whole network"
        )
        right.plot(
            epochs,
            r.scalar("val_accuracy_half_removed")[1],
            color=color,
            lw=1.8,
            ls=":",
            label=f"{NAMES[key]}: half the units removed",
        )
    middle.set_yscale("log")
    middle.set_xlabel("epoch")
    middle.set_ylabel("loss (cross-entropy, evaluation mode)")
    middle.set_title("Loss: clean training set (solid), validation (dashed)", fontsize="medium")
    middle.legend(loc="upper right", fontsize="small")
    right.set_ylim(0, 1)
    right.set_xlabel("epoch")
    right.set_ylabel("validation accuracy")
    right.set_title("Whole network vs half of the hidden units removed", fontsize="medium")
    right.legend(loc="lower right", fontsize="small")
    fig.suptitle(f"MLP 64 → [100] × 2 → 10, {LIMIT} training digits, Adam lr {LR}: with and without dropout")
    return fig


def claims(runs):
    out = []
    run = runs["dropout"]
    _, relu_zero = run.stat("activations", "act1", "frac_zero")
    _, drop_zero = run.stat("activations", "drop1", "frac_zero")
    predicted = 1 - (1 - relu_zero) * (1 - P)
    error = float(np.max(np.abs(drop_zero - predicted)))
    out.append(
        claim(
            "dropout zeroes half of the units the ReLU left: share of zeros after dropout = 1 − (1 − z)(1 − p), "
            "z the ReLU's (largest deviation over the records, layer 1)",
            error,
            error < 0.03,
            "0 ± 0.03 (random draws of 3200 outputs)",
        )
    )
    _, relu_mean = run.stat("activations", "act1", "mean")
    _, drop_mean = run.stat("activations", "drop1", "mean")
    ratio = float(np.mean(drop_mean) / np.mean(relu_mean))
    out.append(
        claim(
            "inverted dropout keeps the mean: mean after dropout / mean before (layer 1, over the records)",
            ratio,
            abs(ratio - 1) < 0.05,
            "1 (survivors × 1/(1 − p))",
        )
    )
    out.append(claim_robust(runs["dropout"], runs["no_dropout"]))
    out.append(claim_narrower_gap(runs["dropout"], runs["no_dropout"]))
    return out


def _names(*runs) -> list[str]:
    names = [f"dropout p = {r.config['dropout']:g}" if r.config["dropout"] else "no dropout" for r in runs]
    return names if len(set(names)) == len(names) else [f"{n} (run {i + 1})" for i, n in enumerate(names)]


def claim_robust(dropout, plain):
    """The dropout run keeps ≥ 80 % of its accuracy with half the units removed, the plain run < 65 % (a
    control: a run without dropout in the dropout run's place)."""
    kept = [_end(r, "val_accuracy_half_removed") / _end(r, "val_accuracy") for r in (dropout, plain)]
    return claim(
        "with half the hidden units removed, the dropout-trained network keeps ≥ 80 % of its validation "
        "accuracy, the one trained without dropout < 65 % (share kept, last 5 epochs)",
        dict(zip(_names(dropout, plain), kept)),
        kept[0] >= 0.8 and kept[1] < 0.65,
        "dropout trains every unit to work without the others",
        kind="phenomenon",
    )


def claim_narrower_gap(dropout, plain):
    """The validation / training loss ratio is ≥ 2 × smaller with dropout."""
    gap = [_end(r, "val_loss") / _end(r, "train_loss") for r in (dropout, plain)]
    return claim(
        "dropout narrows the gap between validation and training loss (validation / training, clean)",
        dict(zip(_names(dropout, plain), gap)),
        gap[0] * 2 <= gap[1],
        "≥ 2 × narrower",
        kind="phenomenon",
    )
