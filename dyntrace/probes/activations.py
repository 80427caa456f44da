"""Per-layer output statistics: moments, histogram, zeros, saturation and dead units.

What is recorded by default (``modules=None``), in any model:

- activation and normalisation modules from any package, recognised by what they are: a
  subclass of torch's (or the catalog's) activation and normalisation modules, or a class whose
  name names one (…GELU, SiLU/Swish, Mish, ReLU, Tanh, Sigmoid, Softmax, …Activation, …Norm:
  transformers' ``NewGELUActivation``, ``T5LayerNorm``, ``LlamaRMSNorm``). A module holding
  recorded modules (torchvision's ``Conv2dNormActivation``) is not recorded itself, nor is
  ``nn.MultiheadAttention`` (which torch files with the activations), nor a parametrization
  (weight norm). The model itself (the root module) is not recorded.
- recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``): the output sequence, named by the
  module path, and the final hidden state, named ``<path>/h_n``.
- activation functions called inside ``forward`` (``F.relu``, ``F.gelu``, ``torch.tanh``,
  ``x.sigmoid()``, ``F.silu``, ``torch.softmax`` …, see :data:`FUNCTIONS`): on record steps
  only, a ``TorchFunctionMode`` sees the torch calls of the model's forward passes. A call
  site is named by the module it runs in, the function, and its index among that function's
  calls in that module's forward: ``transformer.h.0.attn/softmax#0`` (in the model's own
  forward: ``relu#0``). Calls inside a recorded module (the ``torch.tanh`` inside
  ``NewGELUActivation``) belong to that module and are not counted twice; calls outside
  forward passes (the loss, the optimizer) are not seen.

Call sites are found at run time, but a run file's columns are fixed before the first
forward pass (every HDF5 dataset exists before SWMR writing starts). So ``functional_slots``
columns are reserved after the module columns and given to call sites in the order they are
first seen (at the first record step, or later for a branch taken later); the static field
``site`` says which site a column holds, and the reader names it and hides the free ones.
Only modules that can host such calls count: classes defined outside ``torch`` (a user's
``Net``, a transformers block) and torch's transformer layers and multi-head attention; a model
built only of other torch modules reserves no column and is never intercepted.

The mode is pushed when the first hooked module's forward begins and popped when it ends (a
pre-hook and an always-called forward hook, attached on record steps only): a mode stack is
last-in first-out, so a mode pushed in an optimizer hook and popped a step later would pop
whatever mode the training loop had pushed in between.

Units are features: the unit axis of a recorded output is dim 1 of (N, C); the last dim of
(N, T, C) sequences, of RNN outputs and of LayerNorm/RMSNorm outputs; dim 1 of (N, C, H, W)
(also in ``channels_last``: the axis is logical, not a memory layout), of (N, C, L) after a
convolution and of BatchNorm/GroupNorm/InstanceNorm outputs; a softmax's own ``dim``. For a
3-D output of an activation module the nearest feature-defining module before it decides
(a convolution: channels; a linear layer, an embedding, a norm over features: features).
The axis is stored per column (static ``unit_axis``, counted from the end: −1 is the last
dim, −3 is C of (N, C, H, W)) with its size ``units``.

- saturated: sample elements within ``saturation_eps`` of a bounded activation's bounds
  (sigmoid/hardsigmoid/softmax [0, 1], tanh/softsign/hardtanh and LSTM/GRU/RNN outputs [−1, 1]);
  0 for unbounded ones
- dead: units that are exactly 0 for every sample (and position) of the record step's batch;
  ``dead_persistent`` counts units dead for ``dead_patience`` consecutive records
- histogram bins are fixed per column: a bounded activation's range, [0, hi] for
  non-negative ones (ReLU), [−hi, hi] otherwise, hi set from the first record
"""

from __future__ import annotations

import fnmatch
import math
import re

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from dyntrace.checks import check_int, check_number
from dyntrace.kinds import BOUNDS, NON_NEGATIVE
from dyntrace.probes.base import Probe
from dyntrace.probes.call_sites import FUNCTION_KINDS, FUNCTIONS, CallSites
from dyntrace.stats import Ratio
from dyntrace.summaries import (
    DEFAULT_HIST_SAMPLE,
    MAX,
    MIN,
    ZERO,
    FieldSpec,
    ProbeLayout,
    device_constant,
    edges_tensor,
    empty_summary,
    histogram_rows,
    moments_from_reductions,
    nice_ceiling,
    on_device,
    packed_width,
    split_summary,
    tensor_fields,
    tensor_reductions,
)

__all__ = [
    "ActivationsProbe",
    "BOUNDS",
    "NON_NEGATIVE",
    "FUNCTIONS",
    "FUNCTION_KINDS",
    "module_kind",
    "is_activation",
]


#: Kinds of normalisation whose units are channels (dim 1) and features (the last dim).
_CHANNEL_NORMS = (
    "batchnorm",
    "instancenorm",
    "groupnorm",
    "localresponsenorm",
    "crossmaplrn",
    "syncbatchnorm",
)
_FEATURE_NORMS = ("layernorm", "rmsnorm")

_TORCH_MODULES = {
    "torch.nn.modules.activation",
    "torch.nn.modules.batchnorm",
    "torch.nn.modules.normalization",
    "torch.nn.modules.instancenorm",
    "dyntrace.catalog.activations",
    "dyntrace.catalog.norms",
}
#: A class named like an activation or a normalisation (case-insensitive, at the end).
_NAMED = re.compile(
    r"(gelu|silu|swish|mish|relu\d*|tanh|sigmoid|softmax|softplus|softsign|activation|norm)(\d+d?)?$",
    re.IGNORECASE,
)
#: Name-based kinds: (substring of the lower-case class name, kind), first match wins. Kinds
#: with bounds or a sign (tanh, sigmoid, relu, …) are given only to exact names (below).
_FAMILIES = (
    ("gelu", "gelu"),
    ("hardswish", "hardswish"),
    ("silu", "silu"),
    ("swish", "silu"),
    ("mish", "mish"),
    ("rmsnorm", "rmsnorm"),
    ("layernorm", "layernorm"),
    ("batchnorm", "batchnorm"),
    ("groupnorm", "groupnorm"),
    ("instancenorm", "instancenorm"),
)


def _torch_base(cls):
    """The first class of ``cls``'s hierarchy that is torch's (or the catalog's) activation or
    normalisation module, or None."""
    for base in cls.__mro__:
        if base.__module__ in _TORCH_MODULES:
            return base
    return None


def is_activation(module: nn.Module) -> bool:
    """Whether the default selection records ``module`` (before leaving out containers): an
    RNN layer, a torch/catalog activation or normalisation module or a subclass of one, or a
    class named like one."""
    if isinstance(module, nn.MultiheadAttention) or type(module).__module__.startswith("torch.nn.utils"):
        return False
    if isinstance(module, nn.RNNBase) or _torch_base(type(module)) is not None:
        return True
    return bool(_NAMED.search(type(module).__name__))


def module_kind(module: nn.Module) -> str:
    """What a module's output is, in lower case: torch's class name for torch's modules and
    their subclasses ('relu', 'sigmoid', 'batchnorm1d', 'layernorm'), 'lstm'/'gru'/'rnn'
    ('rnn_relu', 'lstm_proj' for their unbounded variants), else a family named by the class
    ('gelu' for ``NewGELUActivation``, 'rmsnorm' for ``LlamaRMSNorm``) or the class name
    without an 'activation' suffix ('linear' for ``LinearActivation``)."""
    if isinstance(module, nn.RNNBase):
        if isinstance(module, nn.LSTM):
            return "lstm_proj" if getattr(module, "proj_size", 0) else "lstm"
        if isinstance(module, nn.GRU):
            return "gru"
        return "rnn_relu" if getattr(module, "nonlinearity", "tanh") == "relu" else "rnn"
    base = _torch_base(type(module))
    if base is not None:
        return base.__name__.lower()
    name = type(module).__name__.lower()
    stripped = name[: -len("activation")] if name.endswith("activation") and name != "activation" else name
    if stripped in BOUNDS or stripped in NON_NEGATIVE or stripped in FUNCTION_KINDS:
        return stripped  # an exact name ("Sigmoid", "ReLUActivation"): its bounds hold
    for token, kind in _FAMILIES:
        if token in stripped:
            return kind
    return stripped


def _selected_by_user(name: str, module: nn.Module, modules) -> bool:
    for selector in modules:
        if isinstance(selector, str):
            if fnmatch.fnmatchcase(name, selector):
                return True
        elif isinstance(module, selector):
            return True
    return False


def _default_selection(named: list) -> list:
    """The default modules: activation-like modules that hold no activation-like module."""
    candidates = {n for n, m in named if n != "" and is_activation(m)}
    holders = {n.rsplit(".", k)[0] for n in candidates for k in range(1, n.count(".") + 1)}
    return [(n, m) for n, m in named if n in candidates and n not in holders]


def _feature_side(module: nn.Module) -> str | None:
    """'channels' for a convolution or a channel norm, 'features' for a layer whose outputs
    are features in the last dim, else None."""
    if isinstance(module, (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm)):
        return "channels"
    if isinstance(module, (nn.Linear, nn.Embedding, nn.LayerNorm, nn.RNNBase, nn.MultiheadAttention)):
        return "features"
    if type(module).__name__ == "Conv1D":  # transformers' GPT-2 projection: a linear layer
        return "features"
    if hasattr(nn, "RMSNorm") and isinstance(module, nn.RMSNorm):
        return "features"
    return None


def _layout_hint(root: nn.Module, path: str) -> str | None:
    """Channels or features for an activation module's 3-D output: the side of the nearest
    feature-defining module registered before it (in its parent, then its parent's parent)."""
    while path:
        parent_path, _, leaf = path.rpartition(".")
        parent = root.get_submodule(parent_path)
        before = []
        for name, child in parent.named_children():
            if name == leaf:
                break
            before.append(child)
        for sibling in reversed(before):
            for m in reversed(list(sibling.modules())):
                side = _feature_side(m)
                if side is not None:
                    return side
        path = parent_path
    return None


def _host_hint(module: nn.Module) -> str | None:
    """Channels or features for a call site's 3-D output, from the layers its host holds."""
    sides = {_feature_side(m) for m in module.modules()} - {None}
    return sides.pop() if len(sides) == 1 else None


#: The activations' own column, appended to each packed summary row (so one addition merges
#: a layer's calls): sample elements at a bounded activation's bounds.
SATURATED = -1


class _LayerState:
    """One column: what it is (fixed at setup or when a call site takes a slot) and what this
    record step has seen of it."""

    __slots__ = (
        "name",
        "kind",
        "hint",
        "passes",
        "active",
        "edges",
        "units",
        "unit_axis",
        "dead_run",
        "site",
        "order",
        "centred",
        "samples",
        "range",
    )

    def __init__(self, name: str = "", kind: str = "", hint: str | None = None):
        self.name, self.kind, self.hint = name, kind, hint
        self.passes = []  # this record step's forward passes: (reductions, shift, count, saturated)
        self.active = None  # bool [units]: nonzero somewhere in the batch
        self.edges = None  # (lo, hi, bins), fixed at the first record
        self.units = 0  # size of the unit axis (0: none, or not seen yet)
        self.unit_axis = 0  # the unit axis counted from the end (−1: last dim); 0: none
        self.dead_run = None  # int [units]: consecutive records a unit has been dead
        self.site = None  # (host index, kind index, call index) of a functional call site
        self.order = None  # when its output was first seen, counting every column's first output
        self.centred = True  # sums around the sample mean (see check): until a record shows it is not needed
        self.samples = []  # float32 samples of this record step's outputs, binned all at once in collect
        self.range = None  # float64 [lo, hi] of the histogram on the outputs' device, made once


class ActivationsProbe(Probe):
    """Outputs of activation and normalisation layers, RNN layers and activation functions
    called in ``forward``, on record steps.

    ``Recorder(model, opt, path, probes=[ActivationsProbe(...), "gradients", ...])`` sets the
    options; ``probes=None`` or ``"activations"`` uses the defaults.

    Args:
        modules: None for the default selection (see the module docstring), or a list of
            module types and/or name patterns (``"encoder.*.act"``, fnmatch); with a list,
            functional call sites are recorded only where a pattern matches the site's name
            (``"*/softmax#*"``) (default: None).
        functional: intercept activation functions called in ``forward`` on record steps:
            True, False, or the kinds to keep (``{"softmax", "gelu"}``, see
            :data:`FUNCTION_KINDS`) (default: True).
        functional_slots: columns reserved for call sites; None for 16 + 2 per module that can
            host one (0 for a model of torch modules only); call sites beyond them are left
            out with a warning (default: None).
        bins: histogram bins (default: 100).
        saturation_eps: distance from a bounded activation's bounds counted as saturated
            (default: 0.05).
        dead_patience: consecutive records a unit must be dead to count as persistently dead
            (default: 3).
        hist_sample: elements of a tensor binned and counted for zeros (a strided sample
            above it) (default: :data:`~dyntrace.summaries.DEFAULT_HIST_SAMPLE`).
    """

    name = "activations"
    sharded = True  # each rank sees its own shard of the batch

    def __init__(
        self,
        *,
        modules=None,
        functional=True,
        functional_slots: int | None = None,
        # histogram and counts
        bins: int = 100,
        saturation_eps: float = 0.05,
        dead_patience: int = 3,
        hist_sample: int = DEFAULT_HIST_SAMPLE,
    ):
        bins = check_int("bins", bins, low=2)
        dead_patience = check_int("dead_patience", dead_patience, low=1)
        hist_sample = check_int("hist_sample", hist_sample, low=1)
        functional_slots = check_int("functional_slots", functional_slots, low=0, optional=True)
        saturation_eps = check_number("saturation_eps", saturation_eps, low=0, strict_low=True, high=0.49)
        if isinstance(functional, bool):
            kinds = None if functional else frozenset()
        elif isinstance(functional, str):
            raise ValueError(
                f"Invalid functional: {functional!r} (expected True, False or a collection of kinds)"
            )
        else:
            kinds = frozenset(functional)
            unknown = sorted(kinds - set(FUNCTION_KINDS))
            if unknown:
                raise ValueError(
                    f"Invalid functional: {unknown[0]!r} (expected kinds among {', '.join(FUNCTION_KINDS)})"
                )
        if modules is not None:
            if isinstance(modules, (str, type)):
                modules = [modules]
            modules = list(modules)
            for m in modules:
                if not isinstance(m, str) and not (isinstance(m, type) and issubclass(m, nn.Module)):
                    raise ValueError(
                        f"Invalid modules entry: {m!r} (expected a name pattern or an nn.Module subclass)"
                    )
        self.modules = modules
        self.functional = functional if isinstance(functional, bool) else sorted(kinds)
        self.functional_slots = functional_slots
        self.bins = bins
        self.saturation_eps = saturation_eps
        self.dead_patience = dead_patience
        self.hist_sample = hist_sample
        self._layers: list[tuple[str, nn.Module]] = []  # one per hooked column (an RNN's h_n too)
        self._state: list[_LayerState] = []  # one per column: module columns, then slots
        self._hooked: list[tuple[nn.Module, int, int | None]] = []  # (module, column, h_n column)
        patterns = None if modules is None else [m for m in modules if isinstance(m, str)]
        self._calls = CallSites(kinds=kinds, patterns=patterns, slots=functional_slots, owner=self.name)
        self._ctx = None
        self._seen = 0  # columns seen so far (their forward order)
        self._runs = None  # int32: the dead runs of the columns counted last record, concatenated
        self._runs_layout = None  # ((column, units), ...) of that buffer
        self._runs_segment = None  # the column of each of its units

    # -- setup ---------------------------------------------------------------------------------

    def setup(self, ctx):
        root = ctx.module
        named = list(root.named_modules())
        if self.modules is None:
            chosen = _default_selection(named)
        else:
            chosen = [(n, m) for n, m in named if _selected_by_user(n, m, self.modules)]
        self._layers, self._state, self._hooked = [], [], []
        for name, module in chosen:
            kind = module_kind(module)
            column = len(self._state)
            self._layers.append((name, module))
            self._state.append(_LayerState(name, kind, _layout_hint(root, name) if name else None))
            h_n = None
            if isinstance(module, nn.RNNBase):
                h_n = len(self._state)
                self._layers.append((f"{name}/h_n", module))
                self._state.append(_LayerState(f"{name}/h_n", kind))
            self._hooked.append((module, column, h_n))
        slots = self._calls.setup(named, {id(m) for _, m in chosen})
        if not self._state and not slots:
            ctx.warn_once(
                self.name,
                "activations: no module matched and no activation function can be intercepted; nothing recorded",
            )
            return None
        self._calls.first_slot = len(self._state)
        for j in range(slots):
            self._state.append(_LayerState(f"<functional slot {j}>", "functional"))
        return ProbeLayout(
            names=[s.name for s in self._state],
            fields=tensor_fields(self.bins, hist_description="counts of output values")
            + [
                FieldSpec(
                    "saturated",
                    "int64",
                    description=f"sample elements within {self.saturation_eps} of the bounds",
                ),
                FieldSpec("dead", "int64", description="units zero for every sample of the batch"),
                FieldSpec(
                    "dead_persistent",
                    "int64",
                    description=f"units dead for {self.dead_patience} consecutive records",
                ),
                FieldSpec("edges", "float64", (self.bins + 1,), static=True),
                FieldSpec("units", "int64", static=True, description="size of the unit axis of the output"),
                FieldSpec(
                    "unit_axis",
                    "int64",
                    static=True,
                    description=(
                        "unit axis of the output counted from the end (-1: last dim, -3: C of N,C,H,W); "
                        "0: none"
                    ),
                ),
                FieldSpec(
                    "order",
                    "float64",
                    static=True,
                    description="forward order: when the column's output was first seen (0 first); NaN: not yet",
                ),
                FieldSpec(
                    "site",
                    "float64",
                    (3,),
                    static=True,
                    description="functional call site of a reserved column: indices into the attributes "
                    "functional_hosts and functional_kinds, and the call's index; NaN: a module column or a free slot",
                ),
            ],
            labels={"kind": [s.kind for s in self._state]},
            stats=[
                Ratio("frac_saturated", ("saturated",), ("hist_count",), "sample elements at the bounds"),
                Ratio("frac_dead", ("dead",), ("units",), "units zero for every sample of the batch"),
                Ratio(
                    "frac_dead_persistent",
                    ("dead_persistent",),
                    ("units",),
                    "units dead for dead_patience records",
                ),
                Ratio("dead", ("dead",)),
                Ratio("units", ("units",)),
            ],
            attrs={
                "nonfinite_scope": "sample",
                "saturation_eps": self.saturation_eps,
                "dead_patience": self.dead_patience,
                "hist_sample": self.hist_sample,
                "hist_scale": "value",
                "functional_slots": self._calls.slots,
                "functional_hosts": list(self._calls.hosts),
                "functional_kinds": list(FUNCTION_KINDS),
            },
        )

    # -- arming: hooks (and the function mode) on record steps only ------------------------------

    def attach(self, ctx):
        self._ctx = ctx
        handles = [
            module.register_forward_hook(self._hook(column, h_n, ctx)) for module, column, h_n in self._hooked
        ]
        recorded = [module for module, _, _ in self._hooked]
        return handles + self._calls.attach(ctx, recorded, self._observe_site, self._open_site)

    def _hook(self, column: int, h_n: int | None, ctx):
        def observe(module, output):
            if h_n is None:
                self._observe(column, output, dim=getattr(module, "dim", None))
            else:  # (output, h_n) or (output, (h_n, c_n)); PackedSequence outputs hold .data
                out, hidden = output
                self._observe(column, out.data if isinstance(out, PackedSequence) else out)
                self._observe(h_n, hidden[0] if isinstance(hidden, tuple) else hidden)

        def hook(module, inputs, output):
            if not torch.is_grad_enabled():
                return
            try:
                self._calls.outside(lambda: observe(module, output))
            except Exception as exc:  # the recorder never kills training
                ctx.warn_once(
                    (self.name, column), f"activations: {self._state[column].name} not recorded ({exc})"
                )

        return hook

    def _observe_site(self, column: int, output, dim):
        """A functional call site's output (from the function mode's handler)."""
        try:
            self._observe(column, output, dim=dim)
        except Exception as exc:  # the recorder never kills training
            self._ctx.warn_once(
                (self.name, column), f"activations: {self._state[column].name} not recorded ({exc})"
            )

    def _open_site(self, column: int, name: str, kind: str, site: tuple, host: nn.Module):
        """A reserved column taken by a new call site, in ``host``'s forward."""
        state = self._state[column]
        state.name, state.kind, state.site = name, kind, site
        state.hint = _host_hint(host)
        self.statics_changed = True  # the site's name goes into the file with the statics

    # -- summaries ------------------------------------------------------------------------------

    def _observe(self, index: int, output, dim=None):
        state = self._state[index]
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            raise TypeError(f"output is {type(output).__name__}, not a floating-point tensor")
        x = output.detach()
        kind = state.kind
        if state.order is None:
            state.order, self._seen = self._seen, self._seen + 1
            self.statics_changed = True
        if state.edges is None:
            state.edges = self._edges_for(kind, x)
            self.statics_changed = True  # a range decided after the statics were written
        # the passes over the output now (they must see it before any in-place change); the
        # moments assembled and the histograms counted for every column at once in collect()
        if x.numel():
            reductions, shift, raw, sample = tensor_reductions(x, cap=self.hist_sample, centred=state.centred)
            state.samples.append(sample)
        else:
            reductions, shift, raw = None, None, None
        if state.range is None:
            lo, hi, _ = state.edges
            state.range = torch.stack(
                [torch.as_tensor(v, dtype=torch.float64, device=x.device) for v in (lo, hi)]
            )  # once per column
        saturated = self._saturated(kind, raw) if raw is not None else None
        active = None
        axis = self._unit_axis(state, x, dim)
        if axis is not None:
            dims = [d for d in range(x.dim()) if d != axis]
            magnitude = x if kind in NON_NEGATIVE else x.abs()
            active = magnitude.amax(dim=dims) > 0
            if state.units == 0:  # decided by the first tensor seen, stored with the statics
                state.units, state.unit_axis = x.shape[axis], axis - x.dim()
                self.statics_changed = True
            elif state.units != x.shape[axis]:
                active = None  # a pass of another shape: its units cannot be matched
        if not state.passes:
            state.active = active
        else:  # another forward pass in the same step (gradient accumulation): merged in collect
            state.active = (
                state.active | active
                if active is not None and state.active is not None
                else (state.active if active is None else active)
            )
        state.passes.append((reductions, shift, x.numel(), saturated, x.device))

    @staticmethod
    def _unit_axis(state: _LayerState, x: torch.Tensor, dim=None) -> int | None:
        """The unit axis of ``x`` (non-negative), or None for a tensor without one."""
        n = x.dim()
        if n < 2:
            return None
        if state.units:  # decided once per column, counted from the end
            axis = n + state.unit_axis
            return axis if 0 < axis < n else None
        kind = state.kind
        if kind == "softmax" and isinstance(dim, int) and -n <= dim < n and dim % n != 0:
            return dim % n
        if n == 2:
            return 1
        if kind.startswith(_CHANNEL_NORMS):
            return 1
        if kind.startswith(_FEATURE_NORMS) or kind.split("_")[0] in ("lstm", "gru", "rnn"):
            return n - 1
        if state.hint == "channels":
            return 1
        if state.hint == "features":
            return n - 1
        return n - 1 if n == 3 else 1

    def _edges_for(self, kind: str, x: torch.Tensor):
        """(lo, hi, bins): a bounded activation's range, else 1.5 × the first record's largest
        |x| rounded up to a readable number — decided on the device, without a host sync."""
        if kind in BOUNDS:
            lo, hi = BOUNDS[kind]
            return (lo, hi, self.bins)
        largest = (
            x.abs().amax().double() if x.numel() else torch.ones((), dtype=torch.float64, device=x.device)
        )
        hi = nice_ceiling(1.5 * largest)
        return (torch.zeros_like(hi), hi, self.bins) if kind in NON_NEGATIVE else (-hi, hi, self.bins)

    def _saturated(self, kind: str, sample: torch.Tensor) -> torch.Tensor | None:
        """Elements of the (output's dtype) sample within ``saturation_eps`` of a bound; None
        (0) for an unbounded kind."""
        if kind not in BOUNDS:
            return None
        lo, hi = BOUNDS[kind]
        eps = self.saturation_eps
        return ((sample <= lo + eps) | (sample >= hi - eps)).sum()

    def collect(self, ctx):
        if not self._state:
            return {}
        seen = [s for s in self._state if s.passes]
        first = self._calls.first_slot
        live = self._state[:first] + [s for s in self._state[first:] if s.site is not None]
        if seen:
            for state in live:
                if not state.passes:
                    ctx.warn_once(
                        (self.name, "unseen", state.name),
                        f"activations: {state.name} ran no forward pass with gradients "
                        f"on record step {ctx.step} while other layers did; its statistics there are empty (NaN)",
                    )
        elif live:
            ctx.warn_once(
                (self.name, "nothing"),
                f"activations: no recorded layer ran a forward pass with gradients on record step "
                f"{ctx.step}; its statistics are empty (NaN). A forward under torch.no_grad, or compiled code that "
                "hooks cannot reach, records nothing",
            )
        device = seen[0].passes[0][4] if seen else ctx.device
        columns = len(self._state)
        seen_rows = self._seen_rows(device)  # the rows of the columns seen, in order
        if len(seen) == columns:
            packed = seen_rows
        else:  # empty rows for the columns not seen, the seen ones put in place by one copy
            packed = torch.cat(
                [
                    empty_summary(self.bins, device, rows=columns),
                    torch.zeros((columns, 1), dtype=torch.float64, device=device),
                ],
                dim=1,
            )
            if seen:
                where = tuple(i for i, s in enumerate(self._state) if s.passes)
                packed.index_copy_(0, device_constant(where, device, torch.long), seen_rows)
        dead = self._dead_units(device)
        for state in seen:
            state.passes, state.active, state.samples = [], None, []
        fields = split_summary(packed[:, :SATURATED])
        fields["saturated"] = packed[:, SATURATED]
        fields["dead"], fields["dead_persistent"] = dead.unbind(1)
        return fields

    def _dead_units(self, device) -> torch.Tensor:
        """[columns, 2]: units dead in this record's batch, and dead for ``dead_patience``
        records in a row, of every column with a unit axis seen this record (0 for the others,
        whose runs are kept). All columns at once: their masks concatenated, the runs updated
        in one flat int32 buffer (each column's run a view of it), counted by one ``index_add_``
        — a dozen operations whatever the number of columns."""
        columns = len(self._state)
        counted = [(i, s) for i, s in enumerate(self._state) if s.passes and s.active is not None]
        out = torch.zeros((columns, 2), dtype=torch.float64, device=device)
        if not counted:
            return out
        dead = torch.cat([on_device(s.active, device).reshape(-1) for _, s in counted]).logical_not_()
        layout = tuple((i, s.active.numel()) for i, s in counted)
        runs = self._runs
        if runs is None or self._runs_layout != layout:  # a column's set or size changed: regather
            runs = torch.cat(
                [
                    on_device(s.dead_run, device)
                    if s.dead_run is not None and s.dead_run.numel() == n
                    else torch.zeros(n, dtype=torch.int32, device=device)
                    for (_, n), (_, s) in zip(layout, counted)
                ]
            )
            self._runs, self._runs_layout = runs, layout
            self._runs_segment = torch.cat(
                [torch.full((n,), i, dtype=torch.long, device=device) for i, n in layout]
            )  # the column of each unit
            for (_, s), part in zip(counted, runs.split([n for _, n in layout])):
                s.dead_run = part  # views: the in-place update below moves them too
        runs.add_(1).mul_(dead)  # consecutive records dead; 0 where alive now
        both = torch.stack([dead, runs >= self.dead_patience], dim=1).double()
        return out.index_add_(0, self._runs_segment, both)

    def _seen_rows(self, device) -> torch.Tensor:
        """Packed rows [seen columns, layout + SATURATED] of the columns with a forward pass:
        their moments and saturation counts, and the histograms of all their samples counted
        at once (one batch per device), each column's samples added up."""
        seen = [s for s in self._state if s.passes]
        if not seen:
            return torch.zeros((0, packed_width(self.bins) + 1), dtype=torch.float64, device=device)
        groups: dict = {}  # device -> (samples, owners, ranges)
        for k, state in enumerate(seen):
            for sample in state.samples:
                samples, owners, ranges = groups.setdefault(sample.device, ([], [], []))
                samples.append(sample)
                owners.append(k)
                ranges.append(on_device(state.range, sample.device))
        hist = torch.zeros((len(seen), packed_width(self.bins) - ZERO), dtype=torch.float64, device=device)
        for samples, owners, ranges in groups.values():
            ranges = torch.stack(ranges)
            counted = histogram_rows(
                samples, ranges[:, 0], ranges[:, 1], self.bins, owners=tuple(owners), rows=len(seen)
            )
            hist = hist + on_device(counted, device)
        moments = self._moments(seen, device)  # [count … max, saturated]
        return torch.cat([moments[:, :ZERO], hist, moments[:, ZERO:]], dim=1)

    @staticmethod
    def _moments(seen: list, device) -> torch.Tensor:
        """[columns, 6]: count, sum, sumsq, min, max and saturated of each seen column, from the
        reductions its hooks left: one stack for every pass of every column, then the passes of
        one column (gradient accumulation) merged — sums add, minima and maxima combine."""
        reductions, counts, shifts, saturated, owners = [], [], [], [], []
        empty = None
        for k, state in enumerate(seen):
            for red, shift, count, sat, _ in state.passes:
                if red is None:  # an empty output: count 0, min +inf, max −inf
                    if empty is None:
                        empty = list(
                            device_constant((math.inf, -math.inf, 0.0, 0.0), device, torch.float64).unbind(0)
                        )
                    red = empty
                reductions += red
                counts.append(count)
                shifts.append(shift)
                saturated.append(sat)
                owners.append(k)
        rows = moments_from_reductions(reductions, tuple(counts), shifts, device)
        if all(sat is None for sat in saturated):
            sat = torch.zeros((len(counts), 1), dtype=torch.float64, device=device)
        else:
            zero = device_constant((0.0,), device, torch.float64)
            sat = torch.stack([zero[0] if v is None else on_device(v, device).double() for v in saturated])[
                :, None
            ]
        rows = torch.cat([rows, sat], dim=1)
        if len(counts) == len(seen):
            return rows
        # several passes of a column: sums add, min and max combine, in pass order
        index = device_constant(tuple(owners), device, torch.long)
        out = torch.zeros((len(seen), rows.shape[1]), dtype=torch.float64, device=device).index_add_(
            0, index, rows
        )
        out[:, MIN] = (
            rows[:, MIN].new_full((len(seen),), math.inf).scatter_reduce(0, index, rows[:, MIN], "amin")
        )
        out[:, MAX] = (
            rows[:, MAX].new_full((len(seen),), -math.inf).scatter_reduce(0, index, rows[:, MAX], "amax")
        )
        return out

    def check(self, ctx, host: dict) -> dict:
        """Decide, from this record's host moments, which columns need centred sums next time.

        Float32 sums keep Σx² to about 1e-7 of itself, so the variance Σx²/n − mean² keeps its
        digits while mean² ≤ 100 × var; beyond that (a saturated sigmoid, a softmax) the next
        records sum around the sample mean (one more pass and a temporary). Returns ``host``.
        """
        if {"count", "sum", "sumsq"} <= host.keys():
            with np.errstate(divide="ignore", invalid="ignore"):
                n = np.asarray(host["count"], dtype=np.float64)
                mean = np.asarray(host["sum"], dtype=np.float64) / n
                var = np.asarray(host["sumsq"], dtype=np.float64) / n - mean**2
                clustered = ~(mean * mean <= 100.0 * var)  # NaN (no data) keeps centring
            for state, flag in zip(self._state, clustered):
                state.centred = bool(flag)
        return host

    def static(self, ctx):
        if not self._state:
            return {}
        device = ctx.device
        nan_row = torch.full((self.bins + 1,), float("nan"), dtype=torch.float64, device=device)
        edges = []
        for s in self._state:
            if s.edges is None:
                edges.append(nan_row)
                continue
            lo, hi, bins = s.edges
            lo = lo.to(device) if isinstance(lo, torch.Tensor) else lo
            hi = hi.to(device) if isinstance(hi, torch.Tensor) else hi
            edges.append(edges_tensor(lo, hi, bins, device))
        # shapes and sites are known on the host: numpy, no transfer
        units = np.array([s.units for s in self._state], dtype=np.float64)
        axes = np.array([s.unit_axis for s in self._state], dtype=np.float64)
        sites = np.array(
            [s.site if s.site is not None else (np.nan,) * 3 for s in self._state], dtype=np.float64
        )
        order = np.array([np.nan if s.order is None else s.order for s in self._state], dtype=np.float64)
        return {"edges": torch.stack(edges), "units": units, "unit_axis": axes, "order": order, "site": sites}

    def options(self):
        modules = (
            None if self.modules is None else [m if isinstance(m, str) else m.__name__ for m in self.modules]
        )
        return {
            "modules": modules,
            "functional": self.functional,
            "functional_slots": self.functional_slots,
            "bins": self.bins,
            "saturation_eps": self.saturation_eps,
            "dead_patience": self.dead_patience,
            "hist_sample": self.hist_sample,
        }
