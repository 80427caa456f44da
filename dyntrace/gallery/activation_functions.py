"""The catalog's activation functions and their derivatives, from one recorded autograd step."""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Activation functions and their derivatives"
CAPTION = """
Every activation of the catalog (solid) with its derivative (dashed), as autograd computes it.
The sweep x ∈ [−6, 6] is the learnable input of the recorded run and every point carries an
output weight w = 1; one recorded SGD step (learning rate 1) on L = Σ w·f(x) moves x by
−f′(x) and w by −f(x), so the recorded parameters before and after that step hold both
curves. See sigmoid′ peak at 1/4 (each sigmoid layer passes back at most a quarter of the
signal: why deep sigmoid nets vanish) and tanh′ at 1; ReLU′ is 0 or 1; binary step has no
gradient at all (autograd gives nothing: 0); swish and GELU dip below zero (non-monotonic).
LeakyReLU with slope 0.1 and soft exponential with α = 0.5 so their shapes show.
"""

# -- configuration (saved into the run file) --------------------------------------------------
CONFIG = dict(
    x_min=-6.0,  # the sweep: x = x_min … x_max in steps of 1/points_per_unit (0 included)
    x_max=6.0,
    points_per_unit=100,
    lr=1.0,  # SGD learning rate of the one step: Δx = −lr·f′(x), Δw = −lr·f(x)
    activations={  # catalog name → options
        "binary_step": {},
        "linear": {},
        "sigmoid": {},
        "tanh": {},
        "relu": {},
        "leaky_relu": {"negative_slope": 0.1},
        "elu": {},
        "gelu": {},
        "swish": {},
        "softsign": {},
        "soft_exponential": {"alpha": 0.5},
    },
    hist_bins=50,
    seed=0,
)

TITLES = {
    "binary_step": "binary step",
    "linear": "linear",
    "sigmoid": "sigmoid σ(x)",
    "tanh": "tanh",
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU (slope 0.1)",
    "elu": "ELU (α = 1)",
    "gelu": "GELU",
    "swish": "swish / SiLU",
    "softsign": "softsign",
    "soft_exponential": "soft exponential (α = 0.5)",
}


def _record(config: dict):
    def record(path: str) -> None:
        import torch
        from torch import nn

        import dyntrace
        from dyntrace.catalog.activations import make_activation
        from dyntrace.probes.activations import ActivationsProbe

        class Sweep(nn.Module):
            """f(x) at learnable inputs x, weighted by learnable w = 1: L = Σ w·f(x)."""

            def __init__(self, activation: nn.Module, x: torch.Tensor):
                super().__init__()
                self.x = nn.Parameter(x.clone())
                self.w = nn.Parameter(torch.ones_like(x))
                self.act = activation

            def forward(self) -> torch.Tensor:
                return (self.w * self.act(self.x)).sum()

        c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c["seed"])
            k = c["points_per_unit"]
            x = torch.arange(round(c["x_min"] * k), round(c["x_max"] * k) + 1, dtype=torch.float64) / k
            model = nn.ModuleDict(
                {
                    name: Sweep(make_activation(name, **opts), x.float())
                    for name, opts in c["activations"].items()
                }
            )
            optimizer = torch.optim.SGD(model.parameters(), lr=c["lr"])
            probes = [
                "scalars",
                ActivationsProbe(bins=c["hist_bins"], hist_sample=1 << 16),
                "gradients",
                "weights",
            ]
            with dyntrace.Recorder(
                model, optimizer, path, every=1, probes=probes, config=c, trajectory=1
            ) as rec:
                loss = sum(branch() for branch in model.values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                rec.log(loss=loss.detach())

    return record


def runs(quick: bool) -> dict:
    # One autograd step costs milliseconds: quick and full mode record the same run.
    return {"sweep": _record(CONFIG)}


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.activation_functions import plot_activation_derivatives, plot_activation_functions
    from dyntrace.plots.layout import legend

    run = runs["sweep"]
    fig = Figure(figsize=(13.5, 9.6), layout="constrained")
    axes = fig.subplots(3, 4).ravel()
    names = list(CONFIG["activations"])
    plot_activation_functions(run, ax=list(axes[: len(names)]), names=names, titles=TITLES)
    plot_activation_derivatives(run, ax=axes[len(names)])
    legend(axes[0], owns=True)
    fig.suptitle(
        "Activation functions f (solid) and their autograd derivatives f′ (dashed), x ∈ [−6, 6]",
        fontweight="bold",
    )
    return fig


def _grad(run, name: str, stat: str) -> float:
    return float(run.stat("gradients", f"{name}.x", stat)[1][0])


def claims(runs):
    from dyntrace.plots.activation_functions import sweep_curves

    run = runs["sweep"]
    out = []
    top = _grad(run, "sigmoid", "max")
    out.append(
        claim(
            "sigmoid′ peaks at 1/4 (largest recorded gradient of the sigmoid sweep)",
            top,
            abs(top - 0.25) <= 1e-3,
            "0.25 ± 1e-3",
            kind="check",
        )
    )
    top = _grad(run, "tanh", "max")
    out.append(claim("tanh′ peaks at 1", top, abs(top - 1.0) <= 1e-3, "1 ± 1e-3", kind="check"))
    lo, hi = _grad(run, "relu", "min"), _grad(run, "relu", "max")
    total, total_sq = _grad(run, "relu", "sum"), _grad(run, "relu", "sumsq")
    # with 0 ≤ g ≤ 1, Σg² = Σg holds only if every g(1 − g) = 0, i.e. every g is 0 or 1; the
    # summaries' moments carry round-off (≈ 1e-8 of Σg), one g = 0.5 would add 0.25
    out.append(
        claim(
            "ReLU′ ∈ {0, 1}: min, max, and Σg² − Σg of its recorded gradient",
            [lo, hi, total_sq - total],
            lo == 0.0 and hi == 1.0 and abs(total_sq - total) <= 1e-3,
            "0, 1, 0 (± 1e-3: round-off of the moments; a g strictly inside (0, 1) adds g(1 − g))",
            kind="check",
        )
    )
    swish_min, gelu_min = _grad(run, "swish", "min"), _grad(run, "gelu", "min")
    out.append(
        claim(
            "swish′ and GELU′ go negative (minimum of the recorded gradient)",
            [swish_min, gelu_min],
            abs(swish_min + 0.0998) < 3e-3 and abs(gelu_min + 0.1289) < 3e-3,
            "−0.0998, −0.1289 (analytic)",
            kind="phenomenon",
        )
    )
    h = run.hist("activations", "sigmoid.act")
    edges = h.edges
    s_min = float(run.stat("activations", "sigmoid.act", "min")[1][0])
    s_max = float(run.stat("activations", "sigmoid.act", "max")[1][0])
    outside = int(h.underflow[0] + h.overflow[0])
    out.append(
        claim(
            "the activations probe's histogram of sigmoid outputs lies in [0, 1] (min, max, values outside the bins)",
            [s_min, s_max, outside],
            0.0 <= s_min and s_max <= 1.0 and outside == 0 and edges[0] == 0 and edges[-1] == 1,
            "min ≥ 0, max ≤ 1, 0 outside",
            kind="check",
        )
    )
    curves = sweep_curves(run)
    x, f, df = curves["sigmoid"]
    _, t, dt = curves["tanh"]
    err = [float(np.max(np.abs(df - f * (1 - f)))), float(np.max(np.abs(dt - (1 - t**2))))]
    out.append(
        claim(
            "the recorded curves agree: largest deviation of σ′ from σ(1 − σ), of tanh′ from 1 − tanh²",
            err,
            max(err) < 1e-5,
            "< 1e-5 (float32 round-off)",
            kind="check",
        )
    )
    return out
