"""The probe contract: what a probe is and what the recorder hands it.

A probe measures one family of quantities. It declares its columns and fields once
(:meth:`Probe.setup`), may attach hooks (:meth:`Probe.attach`), observes a record step around
``optimizer.step()`` (:meth:`before_step`, :meth:`after_step`) and returns its summaries
still on the device (:meth:`collect`): no ``.item()``, no ``.cpu()``. The recorder moves the
summaries of every probe to the host in one transfer.
"""

from __future__ import annotations

import warnings

import torch

from dyntrace.summaries import ProbeLayout, device_constant

__all__ = ["Probe", "RecordContext", "unwrap", "tensor_norms"]


class Probe:
    """Base class. Subclasses set ``name`` (snake_case; also the probe's group in the file)."""

    name: str = ""
    #: True if the probe needs the parameters as they were before ``optimizer.step()``.
    needs_snapshot: bool = False
    #: True if what the probe sees differs between data-parallel ranks (each rank's shard of
    #: the batch), so its summaries are reduced over the ranks; False if it is the same on
    #: every rank (parameters and gradients under DDP) and rank 0's is recorded.
    sharded: bool = False
    #: Set True when static fields change after they were written (e.g. the histogram range
    #: of a layer first seen after the first record): the recorder asks :meth:`static` again.
    statics_changed: bool = False

    def setup(self, ctx: "RecordContext") -> ProbeLayout | None:
        """Declare the tensors and fields this probe writes; None if it writes no columns."""
        return None

    def attach(self, ctx: "RecordContext") -> list:
        """Register hooks; return their removable handles."""
        return []

    def before_step(self, ctx: "RecordContext") -> None:
        """On a record step, after backward, before ``optimizer.step()`` (gradients are final)."""

    def after_step(self, ctx: "RecordContext") -> None:
        """On a record step, right after ``optimizer.step()``."""

    def collect(self, ctx: "RecordContext") -> dict[str, torch.Tensor]:
        """This record's per-record fields, each shaped [T, *shape], still on the device.

        Every tensor made here is made on the device of what it summarises (``device=``);
        no ``.item()``, ``.cpu()``, ``bincount``, ``nonzero`` or boolean-mask indexing: the
        recorder moves every probe's summaries to the host in one transfer.
        """
        return {}

    def static(self, ctx: "RecordContext") -> dict:
        """Static fields (bin edges, unit counts): tensors on the device, or numpy arrays for
        values known on the host. Asked for after each collect until written once (and again
        when :attr:`statics_changed`); the probe's records are written only after them."""
        return {}

    def check(self, ctx: "RecordContext", host: dict) -> dict:
        """Fix up this record's host arrays (rare cases that need a second look); returns them."""
        return host

    def options(self) -> dict:
        """The probe's options, stored in the file beside its data."""
        return {}


class RecordContext:
    """What probes see: the model, the optimizer, named parameters, the step being recorded."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.model = model
        self.optimizer = optimizer
        self.step = 0  # the step being recorded (1-based), valid while recording
        self.recording = False
        self.module = unwrap(model)  # names in the file are the wrapped module's (no "module.")
        self.named_params: list[tuple[str, torch.nn.Parameter]] = list(self.module.named_parameters())
        self._snapshot: list[torch.Tensor] | None = None
        self._minus_update: list[torch.Tensor] | None = None
        self._update_norms: torch.Tensor | None = None
        self._grad_norms: torch.Tensor | None = None
        self._param_norms: torch.Tensor | None = None
        self.stepped = False  # True once this record step's optimizer.step() has run
        self._warned: set = set()
        self.scalars: dict[str, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        """Where summaries of the model live when a probe has no tensor to take a device from:
        the first parameter's device (CPU for a model without parameters)."""
        for _, p in self.named_params:
            return p.device
        return torch.device("cpu")

    @property
    def param_names(self) -> list[str]:
        return [name for name, _ in self.named_params]

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for _, p in self.named_params]

    def param_roles(self) -> list[str]:
        """What each parameter is to this run, in ``named_params`` order (decided at setup):

        - "trainable": requires grad and is stepped by the recorded optimizer;
        - "frozen": ``requires_grad=False`` (a frozen backbone);
        - "not_stepped": requires grad but is in none of the optimizer's parameter groups
          (stepped by another optimizer, as a GAN's discriminator, or by nothing);
        - "sparse": owned by a module with ``sparse=True`` (``nn.Embedding``): sparse gradients.

        Only "trainable" parameters take part in gradient-flow figures and diagnoses by default.
        """
        optimizer = self.optimizer
        for _ in range(8):  # wrappers (Lookahead) hold the optimizer whose groups they share
            inner = getattr(optimizer, "optimizer", None)
            if not isinstance(inner, torch.optim.Optimizer):
                break
            optimizer = inner
        stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
        stepped |= {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        sparse = {
            id(p)
            for m in self.module.modules()
            if getattr(m, "sparse", False) is True
            for p in m.parameters(recurse=False)
        }
        roles = []
        for p in self.params:
            if not p.requires_grad:
                roles.append("frozen")
            elif id(p) not in stepped:
                roles.append("not_stepped")
            elif id(p) in sparse:
                roles.append("sparse")
            else:
                roles.append("trainable")
        return roles

    def take_snapshot(self) -> None:
        """Copy every parameter on its device (one pass; only on record steps that need it)."""
        with torch.no_grad():  # one fused copy of every parameter: a per-record allocation
            params = self.params
            self._snapshot = list(torch._foreach_mul(params, 1)) if params else []
        self._minus_update = self._update_norms = None

    @property
    def snapshot(self) -> list[torch.Tensor] | None:
        """Parameters as they were before this record step's ``optimizer.step()``; None once
        :meth:`minus_update` has turned the copy into the update."""
        return self._snapshot

    def minus_update(self) -> list[torch.Tensor]:
        """θ_before − θ_after = −Δθ of every parameter, after ``optimizer.step()``: computed once
        a record step, in place in the snapshot's buffers (no allocation; :attr:`snapshot` is
        None from then on), and shared by every probe that needs the update (read-only).

        Minus the update, exactly: IEEE subtraction is sign-symmetric, so this is −(θ_after −
        θ_before) to the last bit, and its norms, |·| and negated dot products are Δθ's own.
        """
        if self._minus_update is None:
            if self._snapshot is None:
                raise RuntimeError("no snapshot of the parameters before the step")
            with torch.no_grad():
                minus = self._snapshot
                if minus:
                    torch._foreach_sub_(minus, self.params)
            self._minus_update, self._snapshot = minus, None
        return self._minus_update

    def update_norms(self) -> torch.Tensor:
        """‖Δθ‖₂ of every parameter as float64 [T] on :attr:`device`, computed once a record step
        from :meth:`minus_update` (one fused norm)."""
        if self._update_norms is None:
            self._update_norms = tensor_norms(self.minus_update(), self.device)
        return self._update_norms

    def grad_norms(self) -> torch.Tensor:
        """‖g‖₂ of every parameter's gradient as float64 [T] on :attr:`device` (0 where there is
        no gradient or a sparse one): one fused norm a record step, shared by every probe that
        needs it (the gradients probe's Σg², the global gradient norm, the steps probe)."""
        if self._grad_norms is None:
            grads = [p.grad for p in self.params]
            self._grad_norms = _norms_or_zero(grads, self.device)
        return self._grad_norms

    def param_norms(self) -> torch.Tensor:
        """‖θ‖₂ of every parameter before this record step's ``optimizer.step()``, float64 [T]
        on :attr:`device`: one fused norm a record step, shared by the weights probe's Σθ² and
        the steps probe. Asked for first after the step, it raises: the weights have moved."""
        if self._param_norms is None:
            if self.stepped:
                raise RuntimeError("the parameters' norms before the step were not taken before it")
            self._param_norms = tensor_norms(self.params, self.device)
        return self._param_norms

    def release_snapshot(self) -> None:
        """The end of a record step: what was computed once for it is dropped."""
        self._snapshot = self._minus_update = self._update_norms = None
        self._grad_norms = self._param_norms = None
        self.stepped = False

    def emit_scalar(self, name: str, value: torch.Tensor) -> None:
        """Record a per-record scalar (e.g. the global gradient norm) in the scalar log."""
        self.scalars[name] = value.detach()

    def warn_once(self, key, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"dyntrace: {message}", stacklevel=3)


@torch.no_grad()  # no graph, and no detach() of each tensor
def tensor_norms(tensors: list, device) -> torch.Tensor:
    """‖t‖₂ of every tensor as float64 [T] on ``device``: one fused ``_foreach_norm`` per kind,
    half types accumulated in float32 (their range a norm can exceed), others in their own
    precision (a float64 norm of float32 would copy each tensor on the CPU)."""
    if not tensors:
        return torch.zeros(0, dtype=torch.float64, device=device)
    narrow = [t.element_size() < 4 for t in tensors]
    if not any(narrow) and all(t.device == device for t in tensors):  # the usual case: one stack
        return torch.stack(torch._foreach_norm(tensors)).double()
    out = [None] * len(tensors)
    for kind in (True, False):
        index = [i for i, n in enumerate(narrow) if n == kind]
        if index:
            norms = (
                torch._foreach_norm([tensors[i] for i in index], 2, dtype=torch.float32)
                if kind
                else torch._foreach_norm([tensors[i] for i in index])
            )
            for i, n in zip(index, norms):
                out[i] = n.to(device, torch.float64)
    return torch.stack(out)


def _norms_or_zero(tensors: list, device) -> torch.Tensor:
    """:func:`tensor_norms` with 0 for a missing (None) or sparse tensor."""
    index = [i for i, t in enumerate(tensors) if t is not None and not t.is_sparse]
    if len(index) == len(tensors):
        return tensor_norms(tensors, device)
    out = torch.zeros(len(tensors), dtype=torch.float64, device=device)
    if index:
        out.index_copy_(
            0,
            device_constant(tuple(index), device, torch.long),
            tensor_norms([tensors[i] for i in index], device),
        )
    return out


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers and ``torch.compile``
    (its ``_orig_mod``), else the model: names in the file carry no ``module.``/``_orig_mod.``."""
    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    for _ in range(8):  # wrappers of wrappers (a compiled DDP model), never a cycle
        if isinstance(model, wrappers):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and isinstance(
            getattr(model, "_orig_mod", None), torch.nn.Module
        ):
            model = model._orig_mod
        else:
            break
    return model
