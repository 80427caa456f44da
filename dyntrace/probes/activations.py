"""Per-module output statistics: moments, histogram, zeros, saturation and dead units.

Default modules: activation functions and normalisation layers (torch's and the catalog's).
Hooks exist only while a record step is armed, and only forward passes with gradients
enabled are measured (a ``no_grad`` validation pass in between is not).

- saturated: sample elements within ``saturation_eps`` of a bounded activation's bounds
  (sigmoid/hardsigmoid/softmax [0, 1], tanh/softsign/hardtanh [−1, 1]); 0 for unbounded ones
- dead: units (dim 1 of the output: features or channels) that are exactly 0 for every
  sample (and position) of the record step's batch; ``dead_persistent`` counts units dead
  for ``dead_patience`` consecutive records
- histogram bins are fixed per module: a bounded activation's range, [0, hi] for
  non-negative ones (ReLU), [−hi, hi] otherwise, hi set from the first record
"""

from __future__ import annotations

import fnmatch

import numpy as np
import torch
from torch import nn

from dyntrace.probes.base import Probe
from dyntrace.summaries import (
    DEFAULT_HIST_SAMPLE,
    FieldSpec,
    ProbeLayout,
    edges_tensor,
    empty_summary,
    merge_packed,
    nice_ceiling,
    split_summary,
    strided_sample,
    summarise_tensor,
    tensor_fields,
)

__all__ = ["ActivationsProbe", "BOUNDS", "NON_NEGATIVE"]

BOUNDS = {
    "sigmoid": (0.0, 1.0),
    "hardsigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
    "hardtanh": (-1.0, 1.0),
}
NON_NEGATIVE = {"relu", "relu6", "softplus", "binarystep", "threshold"}

_DEFAULT_MODULES = {
    "torch.nn.modules.activation",
    "torch.nn.modules.batchnorm",
    "torch.nn.modules.normalization",
    "torch.nn.modules.instancenorm",
    "dyntrace.catalog.activations",
    "dyntrace.catalog.norms",
}


def module_kind(module: nn.Module) -> str:
    """The lower-case class name: 'relu', 'sigmoid', 'batchnorm1d', …"""
    return type(module).__name__.lower()


def _selected(name: str, module: nn.Module, modules) -> bool:
    if modules is None:
        return name != "" and type(module).__module__ in _DEFAULT_MODULES
    for selector in modules:
        if isinstance(selector, str):
            if fnmatch.fnmatchcase(name, selector):
                return True
        elif isinstance(module, selector):
            return True
    return False


class _LayerState:
    __slots__ = ("packed", "active", "edges", "units", "dead_run")

    def __init__(self):
        self.packed = None  # merged summary of this record step's forward passes
        self.active = None  # bool [units]: nonzero somewhere in the batch
        self.edges = None  # (lo, hi, bins), fixed at the first record
        self.units = 0
        self.dead_run = None  # int [units]: consecutive records a unit has been dead


class ActivationsProbe(Probe):
    """Outputs of selected modules on record steps.

    Options (keyword-only): ``modules`` — None for the default set, or a list of module
    types and/or name patterns (``"encoder.*.act"``); ``bins`` (default 100);
    ``saturation_eps`` (0.05); ``dead_patience`` (3); ``hist_sample`` (:data:`~dyntrace.summaries.DEFAULT_HIST_SAMPLE` elements a tensor).
    """

    name = "activations"
    sharded = True  # each rank sees its own shard of the batch

    def __init__(self, *, modules=None, bins: int = 100, saturation_eps: float = 0.05, dead_patience: int = 3, hist_sample: int = DEFAULT_HIST_SAMPLE):
        if bins < 2:
            raise ValueError(f"Invalid bins: {bins} (expected >= 2)")
        if not 0 < saturation_eps < 0.5:
            raise ValueError(f"Invalid saturation_eps: {saturation_eps} (expected 0 < eps < 0.5)")
        if dead_patience < 1 or hist_sample < 1:
            raise ValueError(f"Invalid dead_patience={dead_patience} or hist_sample={hist_sample}")
        self.modules = list(modules) if modules is not None else None
        self.bins = bins
        self.saturation_eps = saturation_eps
        self.dead_patience = dead_patience
        self.hist_sample = hist_sample
        self._layers: list[tuple[str, nn.Module]] = []
        self._state: list[_LayerState] = []

    def setup(self, ctx):
        self._layers = [(n, m) for n, m in ctx.module.named_modules() if _selected(n, m, self.modules)]
        self._state = [_LayerState() for _ in self._layers]
        if not self._layers:
            ctx.warn_once(self.name, "activations: no module matched; nothing recorded")
            return None
        return ProbeLayout(
            names=[n for n, _ in self._layers],
            fields=tensor_fields(self.bins, hist_description="counts of output values")
            + [
                FieldSpec("saturated", "int64", description=f"sample elements within {self.saturation_eps} of the bounds"),
                FieldSpec("dead", "int64", description="units zero for every sample of the batch"),
                FieldSpec("dead_persistent", "int64", description=f"units dead for {self.dead_patience} consecutive records"),
                FieldSpec("edges", "float64", (self.bins + 1,), static=True),
                FieldSpec("units", "int64", static=True, description="units (size of dim 1) of the output"),
            ],
            labels={"kind": [module_kind(m) for _, m in self._layers]},
            attrs={"nonfinite_scope": "sample", "saturation_eps": self.saturation_eps, "dead_patience": self.dead_patience, "hist_sample": self.hist_sample, "hist_scale": "value"},
        )

    def attach(self, ctx):
        return [m.register_forward_hook(self._hook(i, ctx)) for i, (_, m) in enumerate(self._layers)]

    def _hook(self, index: int, ctx):
        def hook(module, inputs, output):
            if not torch.is_grad_enabled():
                return
            try:
                self._observe(index, module, output)
            except Exception as exc:  # the recorder never kills training
                ctx.warn_once((self.name, index), f"activations: {self._layers[index][0]} not recorded ({exc})")

        return hook

    def _observe(self, index: int, module: nn.Module, output):
        state = self._state[index]
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            raise TypeError(f"output is {type(output).__name__}, not a floating-point tensor")
        x = output.detach()
        kind = module_kind(module)
        if state.edges is None:
            state.edges = self._edges_for(kind, x)
            self.statics_changed = True  # a range decided after the statics were written
        packed = summarise_tensor(x, state.edges, cap=self.hist_sample, magnitude=False)
        saturated = self._saturated(kind, x)
        packed = torch.cat([packed, saturated.reshape(1)])
        active = None
        if x.dim() >= 2:
            dims = [d for d in range(x.dim()) if d != 1]
            magnitude = x if kind in NON_NEGATIVE else x.abs()
            active = magnitude.amax(dim=dims) > 0
            state.units = x.shape[1]
        if state.packed is None:
            state.packed, state.active = packed, active
        else:  # another forward pass in the same step (gradient accumulation): merge
            state.packed = merge_packed(state.packed, packed)
            state.active = state.active | active if active is not None and state.active is not None else active

    def _edges_for(self, kind: str, x: torch.Tensor):
        """(lo, hi, bins): a bounded activation's range, else 1.5 × the first record's largest
        |x| rounded up to a readable number — decided on the device, without a host sync."""
        if kind in BOUNDS:
            lo, hi = BOUNDS[kind]
            return (lo, hi, self.bins)
        largest = x.abs().amax().double() if x.numel() else torch.ones((), dtype=torch.float64, device=x.device)
        hi = nice_ceiling(1.5 * largest)
        return (torch.zeros_like(hi), hi, self.bins) if kind in NON_NEGATIVE else (-hi, hi, self.bins)

    def _saturated(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        if kind not in BOUNDS:
            return torch.zeros((), dtype=torch.float64, device=x.device)
        lo, hi = BOUNDS[kind]
        sample = strided_sample(x.reshape(-1), self.hist_sample)
        eps = self.saturation_eps
        return ((sample <= lo + eps) | (sample >= hi - eps)).sum().double()

    def collect(self, ctx):
        if not self._layers:
            return {}
        rows, dead, persistent = [], [], []
        device = next((s.packed.device for s in self._state if s.packed is not None), ctx.device)
        for state in self._state:
            if state.packed is None:
                rows.append(torch.cat([empty_summary(self.bins, device), torch.zeros(1, dtype=torch.float64, device=device)]))
                dead.append(torch.zeros((), device=device))
                persistent.append(torch.zeros((), device=device))
                continue
            rows.append(state.packed.to(device))
            if state.active is None:
                dead.append(torch.zeros((), device=device))
                persistent.append(torch.zeros((), device=device))
            else:
                is_dead = ~state.active
                run = state.dead_run if state.dead_run is not None and state.dead_run.shape == is_dead.shape else torch.zeros_like(is_dead, dtype=torch.int32)
                state.dead_run = torch.where(is_dead, run + 1, torch.zeros_like(run))
                dead.append(is_dead.sum().to(device))
                persistent.append((state.dead_run >= self.dead_patience).sum().to(device))
            state.packed, state.active = None, None
        packed = torch.stack(rows)
        fields = split_summary(packed[:, :-1])
        fields["saturated"] = packed[:, -1]
        fields["dead"] = torch.stack(dead).double()
        fields["dead_persistent"] = torch.stack(persistent).double()
        return fields

    def static(self, ctx):
        if not self._layers:
            return {}
        device = ctx.device
        edges = [
            edges_tensor(lo.to(device) if isinstance(lo, torch.Tensor) else lo, hi.to(device) if isinstance(hi, torch.Tensor) else hi, bins, device)
            if s.edges
            else torch.full((self.bins + 1,), float("nan"), dtype=torch.float64, device=device)
            for s in self._state
            for lo, hi, bins in [s.edges or (0.0, 1.0, self.bins)]
        ]
        units = np.array([float(s.units) for s in self._state])  # shapes: known on the host
        return {"edges": torch.stack(edges), "units": units}

    def options(self):
        modules = None if self.modules is None else [m if isinstance(m, str) else m.__name__ for m in self.modules]
        return {"modules": modules, "bins": self.bins, "saturation_eps": self.saturation_eps, "dead_patience": self.dead_patience, "hist_sample": self.hist_sample}
