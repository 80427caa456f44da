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
import re
import threading
from collections import defaultdict

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode

from dyntrace.checks import check_int, check_number
from dyntrace.kinds import BOUNDS, NON_NEGATIVE
from dyntrace.probes.base import Probe
from dyntrace.stats import Ratio
from dyntrace.summaries import (
    DEFAULT_HIST_SAMPLE,
    ZERO,
    FieldSpec,
    ProbeLayout,
    edges_tensor,
    empty_summary,
    histogram_rows,
    merge_packed,
    nice_ceiling,
    packed_width,
    sample_moments,
    split_summary,
    tensor_fields,
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
#: torch modules that call activation functions in their own forward (hosts of call sites).
_TORCH_HOSTS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.MultiheadAttention)


def _functions() -> dict:
    F, T = torch.nn.functional, torch.Tensor
    table = {
        "relu": (F.relu, F.relu_, torch.relu, torch.relu_, T.relu, T.relu_),
        "relu6": (F.relu6,),
        "leakyrelu": (F.leaky_relu, F.leaky_relu_),
        "elu": (F.elu, F.elu_),
        "selu": (F.selu, torch.selu, torch.selu_),
        "celu": (F.celu, torch.celu),
        "gelu": (F.gelu,),
        "silu": (F.silu,),
        "mish": (F.mish,),
        "hardswish": (F.hardswish,),
        "hardsigmoid": (F.hardsigmoid,),
        "hardtanh": (F.hardtanh, F.hardtanh_),
        "softplus": (F.softplus,),
        "softsign": (F.softsign,),
        "logsigmoid": (F.logsigmoid,),
        "sigmoid": (torch.sigmoid, torch.sigmoid_, T.sigmoid, T.sigmoid_, torch.special.expit),
        "tanh": (torch.tanh, torch.tanh_, T.tanh, T.tanh_),
        "softmax": (F.softmax, torch.softmax, T.softmax, torch.special.softmax),
        "prelu": (F.prelu,),
        "threshold": (F.threshold,),
    }
    return {fn: kind for kind, fns in table.items() for fn in fns}


#: The intercepted torch callables and the kind each records as (``F.sigmoid`` and ``F.tanh``
#: call ``Tensor.sigmoid``/``Tensor.tanh``, which are in the table).
FUNCTIONS: dict = _functions()
FUNCTION_KINDS = tuple(sorted(set(FUNCTIONS.values())))


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


def _is_host(module: nn.Module) -> bool:
    """Whether a module's own forward can call activation functions: a class defined outside
    torch, or torch's transformer layers and multi-head attention."""
    return isinstance(module, _TORCH_HOSTS) or not type(module).__module__.startswith("torch.")


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
        "packed",
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
        self.packed = None  # merged summary of this record step's forward passes
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


class _Frame:
    """A module's forward in progress: its host index (None if it hosts no call sites), whether
    calls in it belong to a recorded module, and the calls of each function so far."""

    __slots__ = ("host", "recorded", "calls")

    def __init__(self, host, recorded):
        self.host, self.recorded = host, recorded
        self.calls = defaultdict(int)


class _FunctionalMode(TorchFunctionMode):
    """Hands the outputs of :data:`FUNCTIONS` to the probe; every other call passes through.

    While this handler runs, torch pops the mode, so the probe's own torch calls in
    :meth:`ActivationsProbe._call_site` (and the module hooks' summaries handed over by
    :meth:`ActivationsProbe._outside_mode`) are not intercepted again.
    """

    def __init__(self, probe: "ActivationsProbe"):
        super().__init__()
        self.probe = probe

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        work = getattr(self.probe._thread, "outside", None)
        if work is not None and func is torch.empty:  # a module hook's summaries: see _outside_mode
            self.probe._thread.outside = None
            work()
        result = func(*args, **kwargs)
        try:
            kind = FUNCTIONS.get(func)
        except TypeError:  # an unhashable callable: never one of ours
            kind = None
        if kind is not None and not self.probe._busy:
            self.probe._call_site(kind, args, kwargs, result)
        return result


class _Handle:
    """A removable handle around a callable (the recorder removes every handle after a record)."""

    def __init__(self, remove):
        self._remove = remove

    def remove(self):
        self._remove()


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
        self._kinds = kinds  # None: every kind; empty: functional interception off
        self.functional_slots = functional_slots
        self.bins = bins
        self.saturation_eps = saturation_eps
        self.dead_patience = dead_patience
        self.hist_sample = hist_sample
        self._layers: list[tuple[str, nn.Module]] = []  # one per hooked column (an RNN's h_n too)
        self._state: list[_LayerState] = []  # one per column: module columns, then slots
        self._hooked: list[tuple[nn.Module, int, int | None]] = []  # (module, column, h_n column)
        self._hosts: list[str] = []
        self._host_index: dict = {}  # module -> host index
        self._recorded_modules: set = set()
        self._slots = 0
        self._first_slot = 0
        self._sites: dict = {}  # (host, kind, call) -> column
        self._thread = threading.local()  # per thread: the forward in progress (.stack, .mode_on)
        self._mode: _FunctionalMode | None = None
        self._busy = False
        self._ctx = None
        self._seen = 0  # columns seen so far (their forward order)

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
        self._recorded_modules = {id(m) for _, m in chosen}
        self._setup_functional(named)
        if not self._state and not self._slots:
            ctx.warn_once(
                self.name,
                "activations: no module matched and no activation function can be intercepted; nothing recorded",
            )
            return None
        columns = len(self._state)
        for j in range(self._slots):
            self._state.append(_LayerState(f"<functional slot {j}>", "functional"))
        self._first_slot = columns
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
                "functional_slots": self._slots,
                "functional_hosts": list(self._hosts),
                "functional_kinds": list(FUNCTION_KINDS),
            },
        )

    def _setup_functional(self, named):
        """Hosts of call sites (modules whose forward may call activation functions and that
        are not, or not inside, a recorded module) and the number of reserved columns."""
        self._hosts, self._host_index, self._sites = [], {}, {}
        self._slots = 0
        off = self._kinds is not None and not self._kinds
        if off or (self.modules is not None and not any(isinstance(m, str) for m in self.modules)):
            return
        recorded = {n for n, m in named if id(m) in self._recorded_modules}
        for name, module in named:
            parts = name.split(".") if name else []
            inside = id(module) in self._recorded_modules or any(
                ".".join(parts[:k]) in recorded for k in range(1, len(parts))
            )
            if not inside and _is_host(module):
                self._host_index[module] = len(self._hosts)
                self._hosts.append(name)
        if self._hosts:
            self._slots = (
                self.functional_slots
                if self.functional_slots is not None
                else min(2048, 16 + 2 * len(self._hosts))
            )

    # -- arming: hooks (and the function mode) on record steps only ------------------------------

    def attach(self, ctx):
        self._ctx = ctx
        self._thread = threading.local()
        handles = []
        for module, column, h_n in self._hooked:
            handles.append(module.register_forward_hook(self._hook(column, h_n, ctx)))
        if self._slots:
            self._mode = _FunctionalMode(self)
            tracked = [(m, i) for m, i in self._host_index.items()] + [(m, None) for m, _, _ in self._hooked]
            for module, host in tracked:
                handles.append(module.register_forward_pre_hook(self._enter(module, host)))
                handles.append(module.register_forward_hook(self._leave, always_call=True))
            handles.append(_Handle(self._reset_mode))
        return handles

    def _forward(self):
        """This thread's forward in progress: a stack of module frames, and whether the mode is
        pushed (a mode stack is per thread; DataParallel runs replicas in threads)."""
        state = self._thread
        if not hasattr(state, "stack"):
            state.stack, state.mode_on = [], False
        return state

    def _enter(self, module, host):
        recorded = id(module) in self._recorded_modules

        def pre_hook(mod, inputs):
            state = self._forward()
            outer = state.stack[-1] if state.stack else None
            state.stack.append(_Frame(host, recorded or (outer is not None and outer.recorded)))
            if len(state.stack) == 1 and not state.mode_on:
                self._mode.__enter__()  # pushed for this forward pass, popped at its end (_leave)
                state.mode_on = True

        return pre_hook

    def _leave(self, module, inputs, output):
        state = self._forward()
        if state.stack:
            state.stack.pop()
        if not state.stack and state.mode_on:
            state.mode_on = False
            self._mode.__exit__(None, None, None)

    def _reset_mode(self):
        """Disarm: nothing should be in flight (the recorder disarms between forward passes)."""
        state = self._forward()
        if state.mode_on:
            state.mode_on = False
            self._mode.__exit__(None, None, None)
        state.stack = []
        self._mode = None

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
                self._outside_mode(lambda: observe(module, output))
            except Exception as exc:  # the recorder never kills training
                ctx.warn_once(
                    (self.name, column), f"activations: {self._state[column].name} not recorded ({exc})"
                )

        return hook

    def _outside_mode(self, work):
        """Run ``work`` (a module hook's summaries) so that the function mode does not see its
        torch calls: it would pay the mode's dispatch on each of them (three quarters of the
        mode's calls on a GPT-2). Torch runs a mode's handler with the mode popped, so ``work``
        runs inside the handler, reached by a call the mode intercepts: ``torch.empty(0)`` on
        the CPU, which costs nothing on a device."""
        state = self._forward()
        if not state.mode_on:
            return work()
        state.outside = work
        try:
            torch.empty(0, device="cpu")  # the mode's handler runs work (see _FunctionalMode)
        finally:
            if getattr(state, "outside", None) is not None:  # another mode kept the call from ours
                state.outside = None
                self._busy = True  # the mode lets these calls through untouched
                try:
                    work()
                finally:
                    self._busy = False

    def _call_site(self, kind: str, args, kwargs, result):
        """An activation function returned ``result`` inside a forward pass (the mode's handler)."""
        stack = self._forward().stack
        frame = stack[-1] if stack else None
        if frame is None or frame.recorded or frame.host is None or not torch.is_grad_enabled():
            return
        if self._kinds is not None and kind not in self._kinds:
            return
        call = frame.calls[kind]
        frame.calls[kind] = call + 1
        key = (frame.host, kind, call)
        column = self._sites.get(key)
        if column is None:
            column = self._assign(key)
            if column is None:
                return
        try:
            dim = None
            if kind == "softmax":
                dim = args[1] if len(args) > 1 else kwargs.get("dim")
            self._observe(column, result, dim=dim)
        except Exception as exc:  # the recorder never kills training
            self._ctx.warn_once(
                (self.name, column), f"activations: {self._state[column].name} not recorded ({exc})"
            )

    def _assign(self, key):
        """A free reserved column for a new call site (None: no slot left, or not selected)."""
        host, kind, call = key
        path = self._hosts[host]
        name = f"{path}/{kind}#{call}" if path else f"{kind}#{call}"
        if self.modules is not None and not any(
            isinstance(p, str) and fnmatch.fnmatchcase(name, p) for p in self.modules
        ):
            self._sites[key] = None
            return None
        used = len([c for c in self._sites.values() if c is not None])
        if used >= self._slots:
            self._sites[key] = None
            self._ctx.warn_once(
                (self.name, "slots"),
                f"activations: more functional call sites than the {self._slots} reserved columns; "
                f"{name} and later ones are not recorded (raise ActivationsProbe(functional_slots=...))",
            )
            return None
        column = self._first_slot + used
        state = self._state[column]
        state.name, state.kind, state.site = name, kind, (host, FUNCTION_KINDS.index(kind), call)
        module = self._ctx.module.get_submodule(path) if path else self._ctx.module
        state.hint = _host_hint(module)
        self._sites[key] = column
        self.statics_changed = True  # the site's name goes into the file with the statics
        return column

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
        # moments and the sample now, the histogram of every column in one pass in collect()
        if x.numel():
            moments, raw, sample = sample_moments(x, cap=self.hist_sample, centred=state.centred)
            state.samples.append(sample)
        else:
            moments, raw = empty_summary(0, x.device)[:ZERO], None
        if state.range is None:
            lo, hi, _ = state.edges
            state.range = torch.stack(
                [torch.as_tensor(v, dtype=torch.float64, device=x.device) for v in (lo, hi)]
            )  # once per column
        saturated = self._saturated(kind, raw, x.device)
        packed = torch.cat([moments, saturated.reshape(1)])  # then column SATURATED: added with the rest
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
        if state.packed is None:
            state.packed, state.active = packed, active
        else:  # another forward pass in the same step (gradient accumulation): merge
            state.packed = merge_packed(state.packed, packed)
            state.active = (
                state.active | active
                if active is not None and state.active is not None
                else (state.active if active is None else active)
            )

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

    def _saturated(self, kind: str, sample: torch.Tensor | None, device) -> torch.Tensor:
        """Elements of the (output's dtype) sample within ``saturation_eps`` of a bound."""
        if kind not in BOUNDS or sample is None:
            return torch.zeros((), dtype=torch.float64, device=device)
        lo, hi = BOUNDS[kind]
        eps = self.saturation_eps
        return ((sample <= lo + eps) | (sample >= hi - eps)).sum().double()

    def collect(self, ctx):
        if not self._state:
            return {}
        seen = [s for s in self._state if s.packed is not None]
        live = self._state[: self._first_slot] + [
            s for s in self._state[self._first_slot :] if s.site is not None
        ]
        if seen:
            for state in live:
                if state.packed is None:
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
        device = seen[0].packed.device if seen else ctx.device
        empty = torch.cat(
            [
                empty_summary(self.bins, device, rows=len(self._state)),
                torch.zeros((len(self._state), 1), dtype=torch.float64, device=device),
            ],
            dim=1,
        )
        zero = torch.zeros((), dtype=torch.float64, device=device)
        block = iter(self._seen_rows(device))  # the rows of the columns seen, in order
        rows, dead, persistent = [], [], []
        for i, state in enumerate(self._state):
            if state.packed is None:
                rows.append(empty[i])
                dead.append(zero)
                persistent.append(zero)
                continue
            rows.append(next(block))
            if state.active is None:
                dead.append(zero)
                persistent.append(zero)
            else:
                is_dead = ~state.active
                run = (
                    state.dead_run
                    if state.dead_run is not None and state.dead_run.shape == is_dead.shape
                    else torch.zeros_like(is_dead, dtype=torch.int32)
                )
                state.dead_run = torch.where(is_dead, run + 1, torch.zeros_like(run))
                dead.append(is_dead.sum().double().to(device))
                persistent.append((state.dead_run >= self.dead_patience).sum().double().to(device))
            state.packed, state.active, state.samples = None, None, []
        packed = torch.stack(rows)
        fields = split_summary(packed[:, :SATURATED])
        fields["saturated"] = packed[:, SATURATED]
        fields["dead"] = torch.stack(dead)
        fields["dead_persistent"] = torch.stack(persistent)
        return fields

    def _seen_rows(self, device) -> torch.Tensor:
        """Packed rows [seen columns, layout + SATURATED] of the columns with a forward pass:
        their moments and saturation counts, and the histograms of all their samples counted
        at once (one batch per device), each column's samples added up."""
        seen = [s for s in self._state if s.packed is not None]
        if not seen:
            return torch.zeros((0, packed_width(self.bins) + 1), dtype=torch.float64, device=device)
        groups: dict = {}  # device -> (samples, owners, ranges)
        for k, state in enumerate(seen):
            for sample in state.samples:
                samples, owners, ranges = groups.setdefault(sample.device, ([], [], []))
                samples.append(sample)
                owners.append(k)
                ranges.append(state.range.to(sample.device))
        hist = torch.zeros((len(seen), packed_width(self.bins) - ZERO), dtype=torch.float64, device=device)
        for samples, owners, ranges in groups.values():
            ranges = torch.stack(ranges)
            counted = histogram_rows(
                samples, ranges[:, 0], ranges[:, 1], self.bins, owners=tuple(owners), rows=len(seen)
            )
            hist = hist + counted.to(device)
        moments = torch.stack([s.packed.to(device) for s in seen])  # [count … max, saturated]
        return torch.cat([moments[:, :ZERO], hist, moments[:, ZERO:]], dim=1)

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
