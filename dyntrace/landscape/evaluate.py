"""Evaluate a model's loss at many points of a low-dimensional slice of parameter space.

A point is a linear combination of B "bases" (each a list of tensors in
``model.named_parameters()`` order): θ(n) = Σ_k c[n, k] · basis_k. A plane around θ_c uses
the bases (θ_c, δ, η) with coefficients (1, x, y); a line from θ_s to θ_e uses (θ_s, θ_e) with
(1 − t, t), which lands exactly on θ_e at t = 1 (θ_s + t·(θ_e − θ_s) would not).

Two ways to evaluate, same values:

- "sequential": one forward per point on private parameter tensors that are overwritten in
  place, i.e. the plain loop existing tools run, without their overheads;
- "vmap": ``torch.func.functional_call`` under ``torch.vmap`` over a chunk of points whose
  parameters are built with one matrix product per tensor, chunked to a memory bound.

"auto" times both, alternating chunks on the first points, and keeps the faster (vmap wins
where one forward leaves the device idle, e.g. small models; it loses for some conv nets on
the CPU), falling back to sequential when the model cannot run under vmap (e.g. LSTMs).
Points that coincide with a basis (a plane's centre, a line's ends) are evaluated with one
plain forward, so they equal the model's own loss bit for bit whichever method ran.

The caller's model is never modified, not even for a moment: the forwards run on an eval-mode
*shell* of it (same classes, same tensors, copied containers, see ``eval_shell``), so
parameters, buffers, ``requires_grad`` flags and per-module ``training`` flags stay untouched
even if evaluation is interrupted or another thread uses the model meanwhile.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

__all__ = ["METHODS", "Evaluation", "evaluate", "eval_shell"]

METHODS = ("auto", "vmap", "sequential")

# Memory bound of one vmap chunk (batched parameters + activations), by device type. Small on
# the CPU, where larger chunks only thrash the caches; larger on accelerators, which need
# wide batches to be busy.
_CHUNK_BYTES = {"cpu": 64 * 2**20}
_CHUNK_BYTES_ACCELERATOR = 1 * 2**30
# Activations a forward holds beyond the outputs of its leaf modules (functional ops,
# temporaries): a safety factor on the measured leaf-output bytes.
_ACTIVATION_FACTOR = 2
# "auto" times this many chunks of each method, alternating, and compares the best of each.
_TRIAL_ROUNDS = 2


def check_method(method) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def eval_shell(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` that shares every tensor with it.

    Each module is re-created with ``object.__new__`` and a copy of its ``__dict__`` in which
    every dict, list and set (parameters, buffers, submodules, hooks, RNN flat-weight lists)
    is copied shallowly: swapping a tensor in the shell never touches the caller's module,
    and no tensor is copied. Shared submodules stay shared; hooks still run (they are part of
    the model's function). Only ``training`` differs: False everywhere.
    """
    shells: dict[int, nn.Module] = {}

    def shell_of(module: nn.Module) -> nn.Module:
        if id(module) in shells:
            return shells[id(module)]
        shell = object.__new__(type(module))
        for key, value in vars(module).items():
            shell.__dict__[key] = copy.copy(value) if isinstance(value, (dict, list, set)) else value
        shell.training = False
        shells[id(module)] = shell
        for name, child in shell._modules.items():
            if child is not None:
                shell._modules[name] = shell_of(child)
        return shell

    return shell_of(model)


@dataclass
class Evaluation:
    """Values at every point, and how they were computed.

    Attributes:
        loss: (N,) float64 loss per point.
        metric: (N,) float64 metric per point, or None.
        info: JSON-serialisable: ``method`` used, ``chunk_size``, ``seconds`` (total),
            ``seconds_per_point``, ``trial_seconds_per_point`` ("auto"), and ``vmap_error``
            when "auto" had to fall back.
    """

    loss: np.ndarray
    metric: np.ndarray | None
    info: dict


def _leaf_output_bytes(shell: nn.Module, inputs) -> tuple[torch.Tensor, int]:
    """One forward of the shell; returns its output and the bytes its leaf modules output."""
    sizes = []

    def record(module, args, output):
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        sizes.extend(t.numel() * t.element_size() for t in outputs if isinstance(t, torch.Tensor))

    handles = [m.register_forward_hook(record) for m in shell.modules() if next(m.children(), None) is None]
    try:
        outputs = shell(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return outputs, sum(sizes)


def _scalar(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{what} must return a scalar tensor, got {shape}")
    return value


class _Sequential:
    """One forward per point; the shell computes with private tensors written in place."""

    def __init__(self, model, shell, bases, loss_fn, metric, batch):
        self.shell, self.bases, self.loss_fn, self.metric, self.batch = shell, bases, loss_fn, metric, batch
        originals = [p for _, p in model.named_parameters()]
        self.private = [nn.Parameter(torch.empty_like(p), requires_grad=False) for p in originals]
        index = {id(p): i for i, p in enumerate(originals)}
        for module in shell.modules():
            for key, p in module._parameters.items():
                if p is not None:  # the shell's dicts are its own: the caller's modules keep their tensors
                    module._parameters[key] = self.private[index[id(p)]]  # tied weights stay tied

    def __call__(self, coefs: np.ndarray):
        inputs, targets = self.batch
        losses, metrics = [], []
        for c0, c1, *cs in coefs.tolist():
            for out, b0, b1, *bs in zip(self.private, *self.bases):
                if c0 == 1.0:  # a plane's centre term: one pass for the first two terms
                    torch.add(b0, b1, alpha=c1, out=out)
                else:
                    torch.mul(b0, c0, out=out).add_(b1, alpha=c1)
                for c, b in zip(cs, bs):
                    out.add_(b, alpha=c)
            outputs = self.shell(inputs)
            losses.append(self.loss_fn(outputs, targets))
            if self.metric is not None:
                metrics.append(self.metric(outputs, targets))
        return torch.stack(losses), (torch.stack(metrics) if metrics else None)


class _Batched:
    """A chunk of points at once: functional_call under vmap on batched parameters."""

    def __init__(self, shell, names, bases, loss_fn, metric, batch):
        inputs, targets = batch
        self.names = names
        self.shapes = [p.shape for p in bases[0]]
        # [B, numel] per tensor, so that a chunk's parameters are one matmul: [K, B] @ [B, numel]
        self.stacks = [torch.stack([t.reshape(-1) for t in terms]) for terms in zip(*bases)]

        def point(params):
            outputs = functional_call(shell, params, (inputs,))
            return (loss_fn(outputs, targets),) + (() if metric is None else (metric(outputs, targets),))

        self.fn = torch.vmap(point)

    def __call__(self, coefs: np.ndarray):
        params = {}
        for name, shape, stack in zip(self.names, self.shapes, self.stacks):
            c = torch.as_tensor(coefs, dtype=stack.dtype, device=stack.device)
            params[name] = (c @ stack).view(len(coefs), *shape)
        values = self.fn(params)
        return values[0], (values[1] if len(values) > 1 else None)


def _default_chunk(bases, activation_bytes: int) -> int:
    budget = _CHUNK_BYTES.get(bases[0][0].device.type, _CHUNK_BYTES_ACCELERATOR)
    per_point = sum(p.numel() * p.element_size() for p in bases[0]) + _ACTIVATION_FACTOR * activation_bytes
    return max(1, budget // max(per_point, 1))


def evaluate(
    model: nn.Module,
    loss_fn: Callable,
    batch,
    bases: Sequence[Sequence[torch.Tensor]],
    coefs: np.ndarray,
    *,
    method: str = "auto",
    chunk_size: int | None = None,
    metric: Callable | None = None,
) -> Evaluation:
    """Loss (and metric) at θ(n) = Σ_k coefs[n, k] · bases[k] for every row n of ``coefs``.

    Args:
        model: the module; never modified (see the module docstring).
        loss_fn: ``loss_fn(model(inputs), targets)`` → scalar tensor; must be vmappable for
            "vmap" (torch's functional losses are).
        batch: ``(inputs, targets)``, evaluated as given, in eval mode.
        bases: B ≥ 2 lists of tensors aligned with ``model.named_parameters()``.
        coefs: (N, B) coefficients.
        method: "auto" (default), "vmap" or "sequential".
        chunk_size: points per vmap chunk; default: as many as fit in 64 MiB (CPU) or 1 GiB
            (accelerators) of batched parameters plus twice the leaf-module outputs of one
            forward.
        metric: optional ``metric(model(inputs), targets)`` → scalar tensor (e.g. accuracy).

    Returns:
        An ``Evaluation`` with (N,) float64 arrays.
    """
    check_method(method)
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    if len(bases) < 2:
        raise ValueError(f"bases must hold at least 2 points of parameter space, got {len(bases)}")
    coefs = np.asarray(coefs, dtype=np.float64)
    if coefs.ndim != 2 or coefs.shape[1] != len(bases):
        raise ValueError(f"coefs has shape {coefs.shape}, expected (N, {len(bases)})")
    names = [name for name, _ in model.named_parameters()]
    if not names:
        raise ValueError("the model has no parameters: its loss landscape is a constant")
    shell = eval_shell(model)
    inputs, targets = batch
    start = time.perf_counter()
    with torch.no_grad():
        # One forward at the caller's parameters: checks the loss and metric are scalars,
        # sizes the chunks, and warms up before "auto" times anything.
        outputs, activation_bytes = _leaf_output_bytes(shell, inputs)
        _scalar(loss_fn(outputs, targets), "loss_fn")
        if metric is not None:
            _scalar(metric(outputs, targets), "metric")
        chunk = chunk_size or _default_chunk(bases, activation_bytes)
        sequential = None if method == "vmap" else _Sequential(model, shell, bases, loss_fn, metric, batch)
        batched = None if method == "sequential" else _Batched(shell, names, bases, loss_fn, metric, batch)
        info = {"method": method, "chunk_size": int(chunk)}
        pieces, done = [], 0
        if method == "auto":
            pieces, done = _choose(batched, sequential, coefs, chunk, info)
        run = sequential if info["method"] == "sequential" else batched
        step = chunk if run is batched else len(coefs)
        for first in range(done, len(coefs), step):
            pieces.append(run(coefs[first : first + step]))
        loss = torch.cat([p[0] for p in pieces])
        values = None if metric is None else torch.cat([p[1] for p in pieces])
        _exact_at_bases(shell, names, bases, coefs, loss, values, loss_fn, metric, batch)
        loss = loss.double().cpu().numpy()  # the one device-host transfer
        values = None if values is None else values.double().cpu().numpy()
    info["seconds"] = time.perf_counter() - start
    info["seconds_per_point"] = info["seconds"] / max(len(coefs), 1)
    return Evaluation(loss, values, info)


def _exact_at_bases(shell, names, bases, coefs, loss, values, loss_fn, metric, batch) -> None:
    """Re-evaluate the points that are exactly one of the bases with one plain forward.

    A plane's centre and a line's ends then equal the model's own loss on the batch bit for
    bit, whichever method ran (a vmapped forward may round differently in the last bit).
    Overwrites those entries of ``loss`` and ``values`` in place.
    """
    inputs, targets = batch
    for k, base in enumerate(bases):
        rows = np.flatnonzero((coefs == np.eye(len(bases))[k]).all(axis=1))
        if rows.size:
            outputs = functional_call(shell, dict(zip(names, base)), (inputs,))
            loss[rows] = loss_fn(outputs, targets)
            if metric is not None:
                values[rows] = metric(outputs, targets)


def _choose(batched: _Batched, sequential: _Sequential, coefs: np.ndarray, chunk: int, info: dict):
    """Time both methods on the first points and set ``info["method"]`` to the faster.

    Alternates a chunk each way, ``_TRIAL_ROUNDS`` times, and compares the best time per
    point of each (a single timing is at the mercy of a busy machine). Every trial point is
    kept, so the trial costs only the difference in speed. Returns the pieces computed so
    far and how many points they cover. Falls back to sequential (noting why in
    ``info["vmap_error"]``) when the model does not run under vmap.
    """
    trial = min(chunk, len(coefs) // (2 * _TRIAL_ROUNDS))
    if trial == 0:
        info["method"] = "sequential"
        return [], 0
    pieces, best = [], {"vmap": np.inf, "sequential": np.inf}
    for first in range(0, 2 * _TRIAL_ROUNDS * trial, trial):
        name, run = ("vmap", batched) if first // trial % 2 == 0 else ("sequential", sequential)
        began = time.perf_counter()
        try:
            pieces.append(run(coefs[first : first + trial]))
        except RuntimeError as error:
            # The model, loss and metric already ran once unbatched, so an error here is vmap's
            # own: an op without a batching rule, data-dependent control flow, .item(), ...
            if run is not batched:
                raise
            info["method"] = "sequential"
            info["vmap_error"] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
            return pieces, first
        best[name] = min(best[name], (time.perf_counter() - began) / trial)
    info["method"] = min(best, key=best.get)
    info["trial_seconds_per_point"] = best
    return pieces, 2 * _TRIAL_ROUNDS * trial
