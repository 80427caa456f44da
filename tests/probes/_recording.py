"""Recording helpers for the optimizer-dynamics probes: train a small model with the Recorder
and keep, on chosen steps, the tensors a by-hand computation needs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

import dyntrace


@dataclass
class Captured:
    """Tensors of one step, cloned outside the recorder: before/after ``optimizer.step()``."""

    before: dict = field(default_factory=dict)
    grad: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)


def mlp(dtype=torch.float32, *, dead_unit=True):
    """4 → 6 → 1 with a ReLU; hidden unit 0 is dead (bias −100), so some gradients are exactly 0."""
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 1)).to(dtype)
    if dead_unit:
        with torch.no_grad():
            model[0].bias[0] = -100.0
    return model


def train(
    model,
    optimizer,
    path,
    *,
    steps,
    every=1,
    probes=("steps",),
    capture=(),
    batch=16,
    loss_fn=None,
    seed=0,
    **rec_kwargs,
):
    """Train ``steps`` steps on a fixed regression batch; returns {step: Captured} for ``capture``.

    Warnings from dyntrace fail the test: the probes must run silently on these setups.
    """
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    n_in = next(model.parameters()).shape[-1]
    x = torch.randn(batch, n_in, generator=gen, dtype=dtype)
    y = torch.randn(batch, 1, generator=gen, dtype=dtype)
    loss_fn = loss_fn or (lambda m: nn.functional.mse_loss(m(x), y))
    captured = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dyntrace")
        with dyntrace.Recorder(model, optimizer, path, every=every, probes=list(probes), **rec_kwargs) as rec:
            for step in range(1, steps + 1):
                optimizer.zero_grad()
                loss = loss_fn(model)
                loss.backward()
                if step in capture:
                    cap = captured[step] = Captured()
                    for name, p in model.named_parameters():
                        cap.before[name] = p.detach().clone()
                        cap.grad[name] = None if p.grad is None else p.grad.detach().clone()
                optimizer.step()
                if step in capture:
                    captured[step].after = {name: p.detach().clone() for name, p in model.named_parameters()}
                rec.log(loss=loss)
    return captured
