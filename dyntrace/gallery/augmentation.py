"""Mixup, Cutout and CutMix on digits: what they do to the images, the labels and the network's
confidence (seed 003: "데이터 증식 심화", the CutMix table).

An MLP 64 → [100] × 2 → 10 (ReLU, He init) on 300 training digits, Adam lr 0.001, minibatches of
32 (shuffled epochs), 150 epochs, four times from the same start: no augmentation, mixup (λ ~
Beta(1, 1)), Cutout (a 3×3 hole) and CutMix (a box from another image, λ = the area kept). After
every epoch the network is evaluated on the clean training set and on 270 validation images:
loss, accuracy and confidence (the mean of the largest predicted probability). Each run stores
its first minibatch's first images, before and after the augmentation, in its config.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim

TITLE = (
    "Mixup, Cutout, CutMix on digits: mixed labels stop the network from memorising and lower its confidence"
)
CAPTION = """
Top: three training images as the network sees them in its first step, with the target it is
trained on (a digit, or λ·digit + (1 − λ)·digit). Mixup blends two whole images and their labels;
Cutout blanks a 3×3 square and keeps the label; CutMix pastes a box from another image and mixes
the labels by the area (red outlines: the square or the box, which may fall on blank pixels).
Bottom (an MLP on 300 training digits, 150 epochs): left, the loss on the clean training set
and on validation images. Without augmentation the training loss falls to
10⁻³ — the 300 images are memorised — while the validation loss stays 100 times higher; Mixup and
CutMix cannot drive their training loss below what their mixed targets allow, and the gap
between the two losses shrinks to a few times. Middle, the confidence (mean largest probability)
on validation images: label mixing acts as a confidence penalty — from 0.97 without augmentation
to ≈ 0.85 and 0.8; Cutout, with its one-hot labels, stays as confident as no augmentation. Right,
validation accuracy: on this small problem none of them is more accurate than no augmentation
(the ImageNet gains of the CutMix paper, +1.1, +0.8, +2.3 points top-1 for ResNet-50, are not
reproduced on 300 digits and an MLP), and the mixed-label networks end less confident than
they are accurate — under-confident, as reported for label-softening augmentation by Wen et al.
(ICLR 2021) and Wang et al. (CVPR 2023).
"""

# -- configuration (saved into each run file) --------------------------------------------------
LIMIT = 300  # training examples
DEPTH, WIDTH = 2, 100
LR = 0.001  # Adam
BATCH = 32
EPOCHS = 150
QUICK_EPOCHS = 100
SEED = 0
EXAMPLES = 3  # images of the first minibatch stored in each run's config
METHODS = {  # label: (catalog augmentation, options)
    "none": ("none", {}),
    "mixup": ("mixup", {"alpha": 1.0}),
    "cutout": ("cutout", {"size": 3}),
    "cutmix": ("cutmix", {"alpha": 1.0}),
}
NAMES = {
    "none": "no augmentation",
    "mixup": "Mixup (α = 1)",
    "cutout": "Cutout (3×3)",
    "cutmix": "CutMix (α = 1)",
}
COLORS = {"none": "#222222", "mixup": "#0173b2", "cutout": "#029e73", "cutmix": "#d55e00"}
IMAGENET = {"mixup": 1.1, "cutout": 0.8, "cutmix": 2.3}  # top-1 gains, ResNet-50 (Yun et al. 2019, Table 1)


def augmentation_run(method: str, options: dict, epochs: int = EPOCHS):
    """A callable ``path -> None`` training the MLP with the catalog augmentation ``method``."""

    def record(path: str) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            _train(path, method, options, epochs)

    return record


def _evaluate(model, x, y):
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        logits = model(x)
        p = F.softmax(logits, dim=1)
        return {
            "loss": F.cross_entropy(logits, y),
            "accuracy": (logits.argmax(1) == y).float().mean(),
            "confidence": p.max(1).values.mean(),
        }


def _train(path: str, method: str, options: dict, epochs: int) -> None:
    import torch

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.catalog.models import make_model
    from dyntrace.catalog.regularizers import make_augmentation, mixed_loss

    torch.manual_seed(SEED)
    data = make_dataset("digits", seed=SEED, limit=LIMIT)
    model = make_model("mlp", 64, 10, depth=DEPTH, width=WIDTH, activation="relu", init="he_normal")
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    augment = make_augmentation(method, **options)
    rng = np.random.default_rng(SEED)  # the augmentation's draws
    order = torch.Generator().manual_seed(SEED)
    shape = data.image_shape
    x, y = data.X_train, data.y_train
    # the first minibatch's first images, before and after the augmentation (for the figure)
    first = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED))[:BATCH]
    aug, y_a, y_b, lam = augment(x[first].view(-1, *shape), y[first], rng=np.random.default_rng(SEED))
    examples = {
        "image_shape": list(shape),
        "images": x[first][:EXAMPLES].tolist(),
        "augmented": aug.reshape(len(first), -1)[:EXAMPLES].tolist(),
        "label_a": y_a[:EXAMPLES].tolist(),
        "label_b": y_b[:EXAMPLES].tolist(),
        "lam": float(lam),
    }
    if method in ("cutout", "cutmix"):  # where the hole or the pasted box is: the same draws on images i + 1
        marks = torch.arange(1.0, len(first) + 1).view(-1, 1, 1, 1).expand(-1, *shape).clone()
        marked = augment(marks, y[first], rng=np.random.default_rng(SEED))[0]
        examples["changed"] = (marked != marks).reshape(len(first), -1)[:EXAMPLES].int().tolist()
    config = {
        "dataset": "digits",
        "limit": LIMIT,
        "model": "mlp",
        "depth": DEPTH,
        "width": WIDTH,
        "activation": "relu",
        "init": "he_normal",
        "optimizer": "adam",
        "lr": LR,
        "batch_size": BATCH,
        "epochs": epochs,
        "augmentation": method,
        "augmentation_options": options,
        "seed": SEED,
        "examples": examples,
    }
    criterion = torch.nn.CrossEntropyLoss()
    with dyntrace.Recorder(model, optimizer, path, every=50, probes=["scalars"], config=config) as rec:
        for _ in range(epochs):
            model.train()
            for index in torch.randperm(len(x), generator=order).split(BATCH):
                inputs, y_a, y_b, lam = augment(x[index].view(-1, *shape), y[index], rng=rng)
                loss = mixed_loss(criterion, model(inputs.reshape(len(index), -1)), y_a, y_b, lam)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                rec.log(loss=loss.detach(), mix_lambda=float(lam))
            model.eval()
            for split, (xs, ys) in (("train", (x, y)), ("val", (data.X_val, data.y_val))):
                rec.log(**{f"{split}_{k}": v for k, v in _evaluate(model, xs, ys).items()})


def runs(quick: bool) -> dict:
    epochs = QUICK_EPOCHS if quick else EPOCHS  # quick: the memorisation is plain by epoch 100 already
    return {label: augmentation_run(method, options, epochs) for label, (method, options) in METHODS.items()}


def _end(run, name, last: int = 10):
    """Mean of a per-epoch scalar over the last ``last`` epochs."""
    return float(np.mean(run.scalar(name)[1][-last:]))


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.augmentation import plot_augmented_examples

    keys = list(METHODS)
    fig = Figure(figsize=(15, 8), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(0.6, 1.3))
    cells = top.subfigures(1, len(keys))
    for cell, key in zip(cells, keys):
        plot_augmented_examples(runs[key], count=3, ax=list(cell.subplots(1, 3)), original=key == "none")
        cell.suptitle(NAMES[key], fontsize="medium", color=COLORS[key], fontweight="bold")
    top.suptitle(
        "Three training images of the first step, as the network sees them, with their training targets"
    )

    left, middle, right = bottom.subplots(1, 3)
    for key in keys:
        run, color = runs[key], COLORS[key]
        steps, train = run.scalar("train_loss")
        epochs = np.arange(1, len(steps) + 1)
        left.plot(epochs, train, color=color, lw=1.8, label=NAMES[key])
        left.plot(epochs, run.scalar("val_loss")[1], color=color, lw=1.4, ls="--")
        middle.plot(epochs, run.scalar("val_confidence")[1], color=color, lw=1.8)
        right.plot(epochs, run.scalar("val_accuracy")[1], color=color, lw=1.8)
    left.set_yscale("log")
    left.set_ylabel("loss (cross-entropy)")
    left.set_title("Loss: clean training set (solid), validation (dashed)", fontsize="medium")
    middle.set_ylabel("mean largest predicted probability")
    middle.set_title("Confidence on validation images", fontsize="medium")
    right.set_ylabel("accuracy")
    right.set_ylim(0.8, 1.0)
    right.set_title("Validation accuracy", fontsize="medium")
    for ax in (left, middle, right):
        ax.set_xlabel("epoch")
    bottom.legend(*left.get_legend_handles_labels(), loc="outside lower center", ncols=len(keys))
    bottom.suptitle(f"MLP 64 → [100] × 2 → 10, {LIMIT} training digits, Adam lr {LR}, batch {BATCH}")
    return fig


def claims(runs):
    accuracy = {k: _end(runs[k], "val_accuracy") for k in METHODS}
    name = {k: NAMES[k].split(" (")[0] for k in METHODS}
    out = [
        claim_no_memorising(runs["none"], runs["mixup"], runs["cutmix"], runs["cutout"]),
        claim_smaller_gap(runs["none"], runs["mixup"], runs["cutmix"], runs["cutout"]),
        claim_less_confident(runs["none"], runs["mixup"], runs["cutmix"], runs["cutout"]),
        claim(
            "no gain in accuracy here: every augmentation within 3 points of no augmentation (validation)",
            {name[k]: accuracy[k] for k in METHODS},
            all(abs(accuracy[k] - accuracy["none"]) <= 0.03 for k in METHODS),
            "ImageNet, ResNet-50 (Yun et al. 2019): +"
            + ", +".join(f"{v}" for v in IMAGENET.values())
            + " points top-1 (not reproduced on 300 digits)",
            kind="phenomenon",
        ),
    ]
    _, lam = runs["mixup"].scalar("mix_lambda")
    out.append(
        claim(
            "Mixup's λ is drawn from Beta(1, 1) = uniform: mean over the steps",
            float(np.mean(lam)),
            abs(np.mean(lam) - 0.5) < 4 / np.sqrt(12 * len(lam)),
            f"0.5 ± 4 standard errors ({len(lam)} draws)",
        )
    )
    return out


def _ends(name, none, mixup, cutmix, cutout):
    return {
        "no augmentation": _end(none, name),
        "Mixup": _end(mixup, name),
        "Cutout": _end(cutout, name),
        "CutMix": _end(cutmix, name),
    }


def claim_no_memorising(none, mixup, cutmix, cutout):
    """Mixed-label runs keep their clean training loss ≥ 10 × the plain run's (a control: plain runs in their place)."""
    train = _ends("train_loss", none, mixup, cutmix, cutout)
    return claim(
        "Mixup and CutMix stop the network from memorising: their clean training loss stays ≥ 10 × no "
        "augmentation's (last 10 epochs)",
        train,
        min(train["Mixup"], train["CutMix"]) >= 10 * train["no augmentation"],
        "mixed targets cannot be fitted exactly",
        kind="phenomenon",
    )


def claim_smaller_gap(none, mixup, cutmix, cutout):
    """The validation / training loss ratio of the mixed-label runs is ≥ 5 × smaller than the plain run's."""
    train = _ends("train_loss", none, mixup, cutmix, cutout)
    val = _ends("val_loss", none, mixup, cutmix, cutout)
    gap = {k: val[k] / train[k] for k in train}
    return claim(
        "… and the gap between validation and training loss shrinks (validation / training loss)",
        gap,
        max(gap["Mixup"], gap["CutMix"]) * 5 <= gap["no augmentation"],
        "≥ 5 × smaller than without augmentation",
        kind="phenomenon",
    )


def claim_less_confident(none, mixup, cutmix, cutout):
    """Mixed labels lower the validation confidence by ≥ 0.05; Cutout's one-hot labels do not."""
    confidence = _ends("val_confidence", none, mixup, cutmix, cutout)
    return claim(
        "label mixing lowers the confidence on validation images: Mixup and CutMix ≥ 0.05 below no "
        "augmentation, Cutout (one-hot labels) within 0.05 of it",
        confidence,
        max(confidence["Mixup"], confidence["CutMix"]) <= confidence["no augmentation"] - 0.05
        and abs(confidence["Cutout"] - confidence["no augmentation"]) < 0.05,
        "a confidence penalty (Wang et al., CVPR 2023)",
        kind="phenomenon",
    )
