"""BatchNorm vs LayerNorm, GroupNorm and InstanceNorm by batch size (seed 003: BatchNorm's
"단점: Batch size가 1이라고 해봅시다...", and the other normalisations).

BatchNorm normalises each feature with the mean and variance of the current minibatch; LayerNorm
and GroupNorm use each example's own features, InstanceNorm each image's own pixels, so they do
not depend on the batch at all. Two networks on digits, each trained for two epochs at batch
sizes 2 … 32 with SGD + momentum 0.9 and lr = 0.1 · B / 32 (the linear scaling of Goyal et al.
2017, as Wu & He 2018 did), minibatches drawn at random:

- an MLP 64 → [64] × 2 → 10 with BatchNorm, LayerNorm or GroupNorm (4 groups of 16) before each
  ReLU — BatchNorm here averages over the B examples only;
- a CNN (conv 3×3, 8 then 16 channels, 2×2 pooling) with BatchNorm or InstanceNorm — BatchNorm
  here averages each channel over B × H × W values (128 at B = 2 in the first block).

The activations probe records every normalisation layer's outputs, so the figure can show what
BatchNorm does to a batch of two.
"""

from __future__ import annotations

from dyntrace.gallery.base import claim
from dyntrace.trainer import TrainConfig

TITLE = "BatchNorm vs LayerNorm, GroupNorm, InstanceNorm by batch size: BatchNorm fails on tiny batches"
CAPTION = """
Left: validation accuracy on digits after two epochs, by batch size. In an MLP, BatchNorm
(blue) normalises each feature over the minibatch; at batch 2 that leaves almost nothing of the
feature — and accuracy falls by tens of points, while LayerNorm and GroupNorm, which normalise
each example over its own features, are as good at batch 2 as at 32. Dashed: a small CNN, where
BatchNorm averages each channel over the batch and the pixels (2 × 8 × 8 = 128 values at batch
2), loses only a few points, about as much as InstanceNorm (each image's own pixels): what
BatchNorm needs is enough values to average, and a batch of 2 feature vectors is not enough.
The same pattern as ResNet-50 on ImageNet (Wu & He 2018): BatchNorm's error rises from 23.6 %
at 32 images per GPU to 34.7 % at 2, GroupNorm's stays at 24.1 %. Right: why, from the
activations probe — the outputs of the MLP's first BatchNorm layer on the first minibatch. With
two examples, each feature becomes (x − mean)/std of two numbers: exactly −1 for the smaller
and +1 for the larger (bars at ±1); with 32 examples the outputs keep their spread.
"""

# -- configuration (saved into each run file) --------------------------------------------------
BASE = TrainConfig(
    dataset="digits",
    model="mlp",
    depth=2,  # 64 → [64] × 2 → 10
    width=64,
    activation="relu",
    init="he_normal",
    optimizer="momentum",
    lr=0.1,  # at batch 32; scaled by B / 32
    batch_size=32,
    epochs=2,
    replacement=True,  # every minibatch has B examples (BatchNorm cannot train on one)
    every=50,
    probes=["scalars", "activations"],  # activations: every norm layer's outputs
    seed=0,
)
CNN = {"model": "cnn_digits", "depth": 2, "width": 8}  # conv 8 → 16 channels, 8×8 → 4×4 → 2×2
NORM_OPTIONS = {"group": {"groups": 4}}  # 4 groups of 16 features
MLP_NORMS = ("batch", "layer", "group")
CNN_NORMS = ("batch", "instance")
BATCHES = (2, 4, 8, 32)
QUICK_BATCHES = (2, 32)
NAMES = {"batch": "BatchNorm", "layer": "LayerNorm", "group": "GroupNorm", "instance": "InstanceNorm"}
PUBLISHED = (
    "ResNet-50, ImageNet (Wu & He 2018): BN error 23.6 % → 34.7 % from 32 to 2 images per GPU; "
    "GN 24.1 % → 24.1 %"
)


def run_config(norm: str, batch: int, cnn: bool = False, epochs: int = BASE.epochs) -> TrainConfig:
    """The config of one run: ``norm`` at batch size ``batch``, lr scaled by B / 32, MLP or CNN."""
    return BASE.replace(
        norm=norm,
        norm_options=NORM_OPTIONS.get(norm, {}),
        batch_size=batch,
        lr=BASE.lr * batch / 32,
        epochs=epochs,
        **(CNN if cnn else {}),
    )


def runs(quick: bool) -> dict:
    batches = QUICK_BATCHES if quick else BATCHES
    epochs = 1 if quick else BASE.epochs
    out = {f"mlp_{n}_{b}": run_config(n, b, False, epochs) for n in MLP_NORMS for b in batches}
    out.update(
        {f"cnn_{n}_{b}": run_config(n, b, True, epochs) for n in CNN_NORMS for b in (batches[0], batches[-1])}
    )
    return out


def _accuracy(runs, net, norm):
    """{batch size: final validation accuracy} of one network and normalisation."""
    from dyntrace.plots.batch_size import final_value

    return {
        int(r.config["batch_size"]): final_value(r) for k, r in runs.items() if k.startswith(f"{net}_{norm}_")
    }


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.batch_size import plot_by_batch_size
    from dyntrace.plots.theme import method_color

    fig = Figure(figsize=(14, 5.6), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1.2, 1))
    groups, colors, styles = {}, [], []
    for net, norms in (("mlp", MLP_NORMS), ("cnn", CNN_NORMS)):
        for norm in norms:
            label = f"{NAMES[norm]} ({'MLP' if net == 'mlp' else 'CNN'})"
            groups[label] = [r for k, r in runs.items() if k.startswith(f"{net}_{norm}_")]
            colors.append(method_color(NAMES[norm]))
            styles.append("-" if net == "mlp" else "--")
    plot_by_batch_size(groups, colors=colors, styles=styles, ax=left, ylabel="validation accuracy")
    left.get_legend().remove()
    left.legend(loc="lower right", fontsize="small")
    left.set_ylim(0, 1)
    left.set_title("Validation accuracy after 2 epochs (solid: MLP, dashed: CNN)")

    small, large = min(_accuracy(runs, "mlp", "batch")), max(_accuracy(runs, "mlp", "batch"))
    for key, color, label in (
        (f"mlp_batch_{large}", "#56b4e9", f"batch of {large}"),
        (f"mlp_batch_{small}", method_color("BatchNorm"), f"batch of {small}"),
    ):
        hist = runs[key].hist("activations", "norm1")
        share = hist.counts[0] / max(hist.sampled[0], 1)
        right.stairs(
            share, hist.edges, color=color, lw=2, fill=key.endswith(f"_{small}"), alpha=0.8, label=label
        )
    right.set_xlim(-3, 3)
    right.set_xlabel("output of the first BatchNorm layer (before γ, β have learned)")
    right.set_ylabel("share of the outputs per bin")
    right.legend(loc="upper center", fontsize="small")
    right.set_title("BatchNorm's outputs on the first minibatch (MLP)")
    fig.suptitle("BatchNorm normalises over the batch; the others over each example: what a batch of 2 does")
    return fig


def claims(runs):
    out = []
    bn = _accuracy(runs, "mlp", "batch")
    small, large = min(bn), max(bn)
    out.append(
        claim_small_batch_loses(
            runs[f"mlp_batch_{small}"],
            runs[f"mlp_batch_{large}"],
            others={f"batch {b}": a for b, a in sorted(bn.items()) if b not in (small, large)},
        )
    )
    bn_drop = bn[large] - bn[small]
    for norm in ("layer", "group"):
        acc = _accuracy(runs, "mlp", norm)
        out.append(
            claim(
                f"MLP: {NAMES[norm]} at batch {small} loses at most 10 points against batch {large} "
                f"(BatchNorm: {100 * bn_drop:.0f})",
                {f"batch {b}": a for b, a in sorted(acc.items())},
                acc[small] >= acc[large] - 0.10,
                "independent of the batch (GN: 24.1 % at both, Wu & He 2018)",
                kind="phenomenon",
            )
        )
    cnn_bn = _accuracy(runs, "cnn", "batch")
    drops = {"MLP": bn[large] - bn[small], "CNN": cnn_bn[large] - cnn_bn[small]}
    out.append(
        claim(
            f"CNN: BatchNorm loses at most a third of what it loses in the MLP at batch {small} "
            f"(accuracy drop from batch {large})",
            drops,
            drops["CNN"] <= drops["MLP"] / 3,
            "on images it averages each channel over B × H × W = 128 values at B = 2, not 2",
            kind="phenomenon",
        )
    )
    acc = _accuracy(runs, "cnn", "instance")
    out.append(
        claim(
            f"CNN: InstanceNorm at batch {small} loses at most 10 points against batch {large}",
            {f"batch {b}": a for b, a in sorted(acc.items())},
            acc[small] >= acc[large] - 0.10,
            "independent of the batch",
            kind="phenomenon",
        )
    )
    run = runs[f"mlp_batch_{small}"]
    std = float(run.stat("activations", "norm1", "std")[1][0])
    largest = float(
        max(abs(run.stat("activations", "norm1", "min")[1][0]), run.stat("activations", "norm1", "max")[1][0])
    )
    out.append(
        claim(
            f"MLP, batch {small}: at the first step every BatchNorm output is −1 or +1 (std 1 with no value beyond ±1)",
            {"std": std, "largest |value|": largest},
            abs(std - 1) < 0.01 and largest <= 1 + 1e-6,
            "(x − mean)/std of two numbers is ±1 (up to ε = 1e-5)",
        )
    )
    return out


def claim_small_batch_loses(small, large, others=None):
    """A network's validation accuracy at the small batch is ≥ 15 points below the large batch's (BatchNorm in
    the MLP; a control: GroupNorm or LayerNorm runs)."""
    from dyntrace.plots.batch_size import final_value

    b_small, b_large = int(small.config["batch_size"]), int(large.config["batch_size"])
    norm = NAMES[small.config["norm"]]
    acc = {f"batch {b_small}": final_value(small), **(others or {}), f"batch {b_large}": final_value(large)}
    return claim(
        f"MLP: {norm} at batch {b_small} loses at least 15 points of validation accuracy against batch {b_large}",
        acc,
        acc[f"batch {b_large}"] - acc[f"batch {b_small}"] >= 0.15,
        PUBLISHED,
        kind="phenomenon",
    )
