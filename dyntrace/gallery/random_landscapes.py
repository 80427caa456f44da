"""Output landscapes of random networks by activation (the Swish paper's figure)."""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Output landscapes of random networks by activation"
CAPTION = """
The (x₁, x₂) coordinates of a 200 × 200 grid on [−5, 5]² go through randomly initialised
networks 2 → 128 × 6 → 1 (Glorot uniform weights, zero biases; the same weights for every
activation) in one recorded forward step; the image is the output of the first network.
ReLU and LeakyReLU give a faceted, piecewise-linear surface with sharp creases; softsign,
tanh and swish give smooth ones; linear gives a plane. Right: roughness = mean |discrete
Laplacian| / (max − min) of every network's landscape (dots, median as a bar) beside the
values of a documented replication (open diamonds): ReLU is about 20–30 × rougher than swish.
"""

# -- configuration (saved into every run file) ------------------------------------------------
CONFIG = dict(
    grid=200,  # points per side; roughness depends on the spacing, so quick mode keeps it
    extent=5.0,  # the grid covers [−extent, extent]²
    depth=6,
    width=128,
    init="xavier_uniform",  # Glorot uniform, biases 0
    networks=5,  # random networks per activation (seeds seed … seed + networks − 1)
    seed=0,
)
QUICK = dict(networks=2)
ACTIVATIONS = {  # catalog name → label
    "linear": "linear",
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "softsign": "softsign",
    "tanh": "tanh",
    "swish": "swish",
}
REFERENCE = {
    "linear": 0.0,
    "ReLU": 1.2e-3,
    "LeakyReLU": 1.2e-3,
    "softsign": 1.6e-4,
    "tanh": 8e-5,
    "swish": 4.5e-5,
}


def _record(activation: str, config: dict):
    def record(path: str) -> None:
        import torch
        from torch import nn

        import dyntrace
        from dyntrace.analysis import roughness
        from dyntrace.catalog.models import mlp
        from dyntrace.io import format as fmt

        c = config
        with torch.random.fork_rng(devices=[]):
            nets = nn.ModuleDict()
            for k in range(c["networks"]):
                torch.manual_seed(c["seed"] + k)  # network k has the same weights for every activation
                nets[f"net{k}"] = mlp(
                    2, 1, depth=c["depth"], width=c["width"], activation=activation, init=c["init"]
                )
        axis = torch.linspace(-c["extent"], c["extent"], c["grid"])
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")  # row i ↔ y[i], column j ↔ x[j]
        points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
        optimizer = torch.optim.SGD(nets.parameters(), lr=0.0)  # a measurement, not training
        grids = {}
        # Only scalars are probed: the activations probe's full-precision moments over
        # 40 000 × 128 outputs per layer would cost twice the forward passes themselves.
        with dyntrace.Recorder(
            nets, optimizer, path, every=1, probes=["scalars"], config={**c, "activation": activation}
        ) as rec:
            with torch.no_grad():
                for name, net in nets.items():
                    grids[name] = net(points).reshape(c["grid"], c["grid"]).double().numpy()
            optimizer.step()  # no gradients, lr 0: completes the recorded step 1
            rec.log(**{f"roughness/{name}": roughness(g) for name, g in grids.items()})
        for name, grid in grids.items():
            fmt.write_landscape(
                path,
                name,
                {
                    "xcoordinates": axis.double().numpy(),
                    "ycoordinates": axis.double().numpy(),
                    "train_loss": grid,
                },
                {
                    "kind": "output_landscape",
                    "values": "network output f(x, y), stored under train_loss",
                    "label": ACTIVATIONS[activation],
                    "activation": activation,
                    "network": name,
                },
            )

    return record


def runs(quick: bool) -> dict:
    config = {**CONFIG, **QUICK} if quick else CONFIG
    return {name: _record(name, config) for name in ACTIVATIONS}


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.output_landscape import plot_output_landscape, plot_roughness

    fig = Figure(figsize=(16, 7.6), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=(2.2, 1.1))
    axes = left.subplots(2, 3).ravel()
    for a, name in zip(axes, ACTIVATIONS):
        plot_output_landscape(runs[name], ax=a, name="net0")
    left.suptitle("Output of one random network over the input plane", fontweight="bold")
    ax = right.subplots()
    plot_roughness(
        {label: runs[name] for name, label in ACTIVATIONS.items()},
        ax=ax,
        reference=REFERENCE,
        reference_label="documented replication",
    )
    return fig


def claims(runs):
    from dyntrace.analysis import roughness
    from dyntrace.plots.output_landscape import output_landscapes

    values = {
        ACTIVATIONS[name]: np.array([roughness(r.loss) for r in output_landscapes(runs[name]).values()])
        for name in ACTIVATIONS
    }
    median = {label: float(np.median(v)) for label, v in values.items()}
    n = len(values["ReLU"])
    out = []
    out.append(
        claim(
            "linear: roughness of every network (a plane, 0 up to float32 round-off)",
            values["linear"].max(),
            values["linear"].max() < 1e-5,
            "≈ 0",
            kind="check",
        )
    )
    kinds = ["ReLU", "LeakyReLU", "softsign", "tanh", "swish"]
    out.append(
        claim(
            f"median roughness over {n} random networks: " + ", ".join(kinds),
            [median[k] for k in kinds],
            all(REFERENCE[k] / 3 <= median[k] <= REFERENCE[k] * 3 for k in kinds),
            ", ".join(f"{REFERENCE[k]:.2g}" for k in kinds) + " (within × 3: one seed varies ≈ × 2.5)",
            kind="phenomenon",
        )
    )
    out.append(
        claim(
            "order of the medians: ReLU ≈ LeakyReLU > softsign > tanh > swish",
            f"ReLU/LeakyReLU {median['ReLU'] / median['LeakyReLU']:.2f}; "
            + " > ".join(f"{median[k]:.2g}" for k in kinds[1:]),
            abs(np.log(median["ReLU"] / median["LeakyReLU"])) < np.log(1.25)
            and median["LeakyReLU"] > median["softsign"] > median["tanh"] > median["swish"],
            "ReLU ≈ LeakyReLU > softsign > tanh > swish",
            kind="phenomenon",
        )
    )
    ratio = median["ReLU"] / median["swish"]
    out.append(
        claim(
            "ReLU / swish roughness (medians)",
            ratio,
            ratio > 10,
            "> 10; documented replication ≈ 27: "
            + ("inside ×1.5" if 18 <= ratio <= 40 else "outside, lower")
            + f" (medians of {n} networks; one network varies ≈ × 2.5)",
            kind="phenomenon",
        )
    )
    logged = np.array(
        [
            v
            for k in ACTIVATIONS
            for v in np.sort([runs[k].scalar(f"roughness/net{i}")[1][0] for i in range(n)])
        ]
    )
    stored = np.array([v for label in ACTIVATIONS.values() for v in np.sort(values[label])])
    out.append(
        claim(
            "roughness logged during the run = roughness of the stored grids (max relative difference)",
            float(np.max(np.abs(logged - stored) / np.maximum(stored, 1e-30))),
            np.allclose(logged, stored, rtol=1e-9, atol=1e-15),
            "equal",
            kind="check",
        )
    )
    return out
