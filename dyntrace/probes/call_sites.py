"""Activation functions called inside ``forward``, for :class:`~dyntrace.probes.ActivationsProbe`.

Module hooks see modules; ``F.relu(x)``, ``torch.softmax(scores, -1)`` or ``x.sigmoid()`` inside
a ``forward`` are invisible to them. :class:`CallSites` finds them:

- **hosts**: the modules whose own ``forward`` can call activation functions (classes defined
  outside torch, and torch's transformer layers and multi-head attention), not inside a
  recorded module. A model of torch modules only has none, reserves no column and is never
  intercepted.
- **the mode**: on record steps a ``TorchFunctionMode`` (:class:`_FunctionalMode`) is pushed
  when the first tracked module's forward begins and popped when it ends (a pre-hook and an
  always-called forward hook): a mode stack is last-in first-out, so it must not outlive the
  forward pass that pushed it.
- **call sites**: a call is named by its host, the function's kind and its index among that
  kind's calls in the host's forward (``transformer.h.0.attn/softmax#0``), and takes the next
  free reserved column the first time it is seen.

Each thread has its own frame stack (a mode stack is per thread; ``DataParallel`` runs replicas
in threads).
"""

from __future__ import annotations

import fnmatch
import threading
from collections import defaultdict

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["CallSites", "FUNCTIONS", "FUNCTION_KINDS", "is_host"]


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

#: torch modules that call activation functions in their own forward (hosts of call sites).
_TORCH_HOSTS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.MultiheadAttention)

_REFUSED = object()  # a call site that gets no column (not selected, or no slot left)


def is_host(module: nn.Module) -> bool:
    """Whether a module's own forward can call activation functions: a class defined outside
    torch, or torch's transformer layers and multi-head attention."""
    return isinstance(module, _TORCH_HOSTS) or not type(module).__module__.startswith("torch.")


class _Frame:
    """A module's forward in progress: its host index (None if it hosts no call sites), whether
    calls in it belong to a recorded module, and the calls of each function so far."""

    __slots__ = ("host", "recorded", "calls")

    def __init__(self, host, recorded):
        self.host, self.recorded = host, recorded
        self.calls = defaultdict(int)


class _FunctionalMode(TorchFunctionMode):
    """Hands the outputs of :data:`FUNCTIONS` to :meth:`CallSites._seen`; every other call passes.

    While this handler runs, torch pops the mode, so the torch calls made from it (the probe's
    summaries of a call's output, and the module hooks' work handed over by
    :meth:`CallSites.outside`) are not intercepted again.
    """

    def __init__(self, sites: "CallSites"):
        super().__init__()
        self.sites = sites

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        sites = self.sites
        work = getattr(sites._thread, "outside", None)
        if work is not None and func is torch.empty:  # a module hook's work: see CallSites.outside
            sites._thread.outside = None
            work()
        result = func(*args, **kwargs)
        try:
            kind = FUNCTIONS.get(func)
        except TypeError:  # an unhashable callable: never one of ours
            kind = None
        if kind is not None and not sites._busy:
            sites._seen(kind, args, kwargs, result)
        return result


class _Handle:
    """A removable handle around a callable (the recorder removes every handle after a record)."""

    def __init__(self, remove):
        self._remove = remove

    def remove(self):
        self._remove()


class CallSites:
    """The functional call sites of one probe: which modules host them, the reserved columns
    they take, and the function mode that sees them on record steps.

    Args:
        kinds: the function kinds to record (None: every kind; empty: interception off).
        patterns: name patterns a site must match (fnmatch), or None for every site.
        slots: columns to reserve, or None for 16 + 2 per host (at most 2048).
        owner: the probe's name, for warnings.
    """

    def __init__(self, *, kinds, patterns, slots: int | None, owner: str):
        self.kinds, self.patterns, self.requested, self.owner = kinds, patterns, slots, owner
        self.hosts: list[str] = []  # module paths; a site's host is an index into it
        self.host_index: dict = {}  # module -> host index
        self.slots = 0  # reserved columns
        self.first_slot = 0  # the first reserved column (set by the probe)
        self.sites: dict = {}  # (host, kind, call) -> column, or _REFUSED
        self._thread = threading.local()  # per thread: the forward in progress (.stack, .mode_on)
        self._mode: _FunctionalMode | None = None
        self._busy = False
        self._ctx = None
        self._observe = self._open = None

    def setup(self, named: list, recorded: set) -> int:
        """Find the hosts among ``named`` (the model's named modules) outside the recorded
        modules (ids in ``recorded``); returns the number of columns to reserve."""
        self.hosts, self.host_index, self.sites, self.slots = [], {}, {}, 0
        if (self.kinds is not None and not self.kinds) or (self.patterns is not None and not self.patterns):
            return 0  # interception off, or a selection by module types only
        names = {n for n, m in named if id(m) in recorded}
        for name, module in named:
            parts = name.split(".") if name else []
            inside = id(module) in recorded or any(".".join(parts[:k]) in names for k in range(1, len(parts)))
            if not inside and is_host(module):
                self.host_index[module] = len(self.hosts)
                self.hosts.append(name)
        if self.hosts:
            self.slots = self.requested if self.requested is not None else min(2048, 16 + 2 * len(self.hosts))
        return self.slots

    def attach(self, ctx, recorded_modules, observe, open_column) -> list:
        """On a record step: frame hooks on the hosts and on the recorded modules (calls inside
        those belong to them). ``observe(column, output, dim)`` summarises a call's output;
        ``open_column(column, name, kind, site, module)`` describes a column taken by a new site.
        Returns the handles (none when no column is reserved)."""
        self._ctx, self._observe, self._open = ctx, observe, open_column
        self._thread = threading.local()
        if not self.slots:
            return []
        self._mode = _FunctionalMode(self)
        recorded = {id(m) for m in recorded_modules}
        tracked = list(self.host_index.items()) + [(m, None) for m in recorded_modules]
        handles = []
        for module, host in tracked:
            handles.append(module.register_forward_pre_hook(self._enter(host, id(module) in recorded)))
            handles.append(module.register_forward_hook(self._leave, always_call=True))
        handles.append(_Handle(self._reset))
        return handles

    def outside(self, work):
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

    # -- the forward in progress -------------------------------------------------------------

    def _forward(self):
        """This thread's forward in progress: a stack of module frames, and whether the mode is on."""
        state = self._thread
        if not hasattr(state, "stack"):
            state.stack, state.mode_on = [], False
        return state

    def _enter(self, host, recorded: bool):
        def pre_hook(module, inputs):
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

    def _reset(self):
        """Disarm: nothing should be in flight (the recorder disarms between forward passes)."""
        state = self._forward()
        if state.mode_on:
            state.mode_on = False
            self._mode.__exit__(None, None, None)
        state.stack = []
        self._mode = None

    # -- call sites --------------------------------------------------------------------------

    def _seen(self, kind: str, args, kwargs, result):
        """An activation function returned ``result`` inside a forward pass (the mode's handler)."""
        stack = self._forward().stack
        frame = stack[-1] if stack else None
        if frame is None or frame.recorded or frame.host is None or not torch.is_grad_enabled():
            return
        if self.kinds is not None and kind not in self.kinds:
            return
        call = frame.calls[kind]
        frame.calls[kind] = call + 1
        key = (frame.host, kind, call)
        column = self.sites.get(key)
        if column is None:
            column = self._assign(key)
        if column is _REFUSED:
            return
        dim = None
        if kind == "softmax":
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
        self._observe(column, result, dim)

    def _assign(self, key):
        """A free reserved column for a new call site (_REFUSED: not selected, or no slot left)."""
        host, kind, call = key
        path = self.hosts[host]
        name = f"{path}/{kind}#{call}" if path else f"{kind}#{call}"
        if self.patterns is not None and not any(fnmatch.fnmatchcase(name, p) for p in self.patterns):
            self.sites[key] = _REFUSED
            return _REFUSED
        used = sum(1 for c in self.sites.values() if c is not _REFUSED)
        if used >= self.slots:
            self.sites[key] = _REFUSED
            self._ctx.warn_once(
                (self.owner, "slots"),
                f"{self.owner}: more functional call sites than the {self.slots} reserved columns; "
                f"{name} and later ones are not recorded (raise ActivationsProbe(functional_slots=...))",
            )
            return _REFUSED
        column = self.first_slot + used
        module = self._ctx.module.get_submodule(path) if path else self._ctx.module
        self._open(column, name, kind, (host, FUNCTION_KINDS.index(kind), call), module)
        self.sites[key] = column
        return column
