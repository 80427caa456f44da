"""Small run files for the figure and command-line tests: a tiny model trained for real with
the Recorder, and synthetic files written through dyntrace.io.format."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import dyntrace
from dyntrace.io import format as fmt

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def record_run(
    path,
    *,
    steps=60,
    every=5,
    probes="all",
    acts=("tanh", "relu", "sigmoid"),
    log=True,
    val_every=20,
    optimizer="adam",
    seed=0,
    flush_every=2.0,
):
    """Train a 6 → 16 → 16 → 16 → 2 classifier (one activation per hidden layer) on a fixed
    dataset and record it; the learning rate halves every 20 steps (so ``lr/0`` changes).
    ``probes="all"`` adds the curvature probe (on the whole data set of 256, batches of 32).

    ``log``: log loss and accuracy every step and val_loss / val_accuracy every ``val_every``.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 6, generator=gen)
    y = (x[:, :3].sum(1) > 0).long()
    layers, width = [], 6
    for act in acts:
        layers += [nn.Linear(width, 16), ACTIVATIONS[act]()]
        width = 16
    model = nn.Sequential(*layers, nn.Linear(width, 2))
    opt = (
        torch.optim.Adam(model.parameters(), lr=0.02)
        if optimizer == "adam"
        else torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, 20, 0.5)
    if (
        probes == "all"
    ):  # and the curvature probe, which "all" cannot make (it needs a loss): on the whole set
        from dyntrace.probes import CurvatureProbe, make_probes

        curvature = CurvatureProbe(
            loss_fn=lambda m: nn.functional.cross_entropy(m(x), y), iters=10, trace_samples=4
        )
        probes = [*make_probes("all"), curvature]
    with dyntrace.Recorder(model, opt, path, every=every, probes=probes, flush_every=flush_every) as rec:
        for step in range(1, steps + 1):
            idx = torch.randint(0, 256, (32,), generator=gen)
            opt.zero_grad()
            out = model(x[idx])
            loss = nn.functional.cross_entropy(out, y[idx])
            loss.backward()
            opt.step()
            sched.step()
            if log:
                rec.log(loss=loss, accuracy=(out.argmax(1) == y[idx]).float().mean())
                if step % val_every == 0:
                    with torch.no_grad():
                        val = model(x)
                    rec.log(
                        val_loss=nn.functional.cross_entropy(val, y),
                        val_accuracy=(val.argmax(1) == y).float().mean(),
                    )
    return path


def plateau_run(path, *, n=6000, seed=0):
    """Scalars only: a noisy loss that sits on a plateau at 1.0 for steps 1000–3000, then
    falls to 0.2 (written straight through the format module)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, n + 1)
    level = np.where(
        steps < 1000,
        2.0 - steps / 1000,
        np.where(steps <= 3000, 1.0, 0.2 + 0.8 * np.exp(-(steps - 3000) / 300)),
    )
    loss = level + 0.02 * rng.standard_normal(n)
    f = fmt.create(str(path), {"model_class": "Synthetic"}, {})
    fmt.append_scalars(f, ["loss"], steps, np.zeros(n, np.int32), loss)
    fmt.mark_closed(f)
    f.close()
    return path


def with_landscapes(path):
    """Store a line and a plane (bowl-shaped, known values) in a closed run file."""
    from dyntrace.landscape.results import LineResult, PlaneResult

    t = np.linspace(0, 1, 11)
    fmt.write_landscape(path, "line", LineResult(t=t, loss=1 + (t - 0.7) ** 2).to_arrays(), {"kind": "line"})
    x, y = np.linspace(-1, 1, 9), np.linspace(-1, 1, 7)
    plane = PlaneResult(x=x, y=y, loss=np.add.outer(y**2, x**2))
    fmt.write_landscape(path, "plane", plane.to_arrays(), {"kind": "random_plane", "seed": 0})
    return path
