"""Recording under ``torch.distributed``: every rank trains, rank 0 alone writes one file.

The :class:`~dyntrace.Recorder` notices an initialised process group and hands this module
the parts of a record step that depend on the other ranks. Three modes
(``Recorder(..., distributed=...)``):

- ``"reduce"`` (default): summaries of *sharded* probes (those whose input differs between
  ranks: activations, each rank sees its own slice of the global batch) are combined across
  ranks by each field's ``FieldSpec.reduce`` rule, so the file holds what one process would
  have recorded on the concatenated global batch. *Replicated* probes (gradients, weights,
  steps, adaptive, scalars) run on rank 0 only: DDP all-reduces (averages) the gradients in
  backward, so after it every rank holds the same gradients and, stepping the same
  optimizer, the same weights; summing them over ranks would count each one W times.
  That they are equal is checked, not assumed: every rank adds a per-parameter fingerprint
  of its gradients (Σg, float64) to the record step's MAX reduction; rank 0 warns (once)
  and logs ``dist/grad_mismatch`` (parameters whose gradients differ) if any do, e.g. a
  loop that forgot DDP or averages gradients by hand only every few steps.
- ``"rank0"``: rank 0 records its own shard like a single process; no collective at all,
  other ranks run no probe.
- ``"per_rank"``: as "reduce", plus every rank's own summaries of the sharded probes in
  groups ``<probe>@rank<r>`` (same layout as ``<probe>``), and every scalar logged with
  ``reduce=`` also as ``<name>@rank<r>``: to see skew between ranks.

Collectives, on record steps only (none on other steps, so no hidden synchronisation):
"reduce" issues two, whatever the number of tensors, layers or steps: a ``reduce`` to rank 0
with SUM of one float64 buffer holding every sum-rule field (counts, sums, sums of squares,
histogram counts, zeros, saturated) and every scalar logged with ``reduce="mean"``/``"sum"``,
and one with MAX of a buffer holding every max-rule field, the *negated* min-rule fields
(min x = −max −x), the per-unit "active" masks of the activations (a unit is dead when it is
zero on every rank's shard: an OR of the masks, i.e. a MAX), the gradient fingerprints and
the step counter (both as ±x, so rank 0 sees their max and min). Two reductions rather than
one ``gather``: a reduction moves O(n) bytes per rank (ring or tree), whatever the number of
ranks, where a gather brings W·n bytes to rank 0. "per_rank" needs every rank's values
anyway, so it issues one ``gather`` of the same two buffers and reduces them on rank 0.
Other ranks get nothing back: only rank 0 writes.

Once per run, at the first record step, the histogram range of each unbounded activation
(ReLU, GELU, ..., set by the probe from the first batch it sees) is agreed on with one
small MAX all-reduce per such layer, issued from a forward hook that runs before the
probe's own: every rank then bins with the same edges, those a single process would pick
from the global batch (the largest |x| over all shards).

Scalars logged with ``rec.log(..., reduce="mean")`` (also "sum", "min", "max") are buffered
on every rank, values and tensors alike, and travel with the next record step's reduction
(or with the last one, at close; or when 4096 are pending). Every rank must log the same
names in the same order, as the same training loop on every rank does. Without ``reduce``,
rank 0's values are logged and other ranks drop theirs at once.

Requirements (as for DDP itself): every rank runs the same schedule, the same modules in
the same order, and steps its optimizer in lockstep.

The recorder talks to one object with the same small interface in every mode — a single
process included (:class:`Local`, which communicates nothing): ``setup``, ``meta``,
``attach``, ``before_step``, ``before_collect``, ``combine``, ``after_transfer``,
``add_scalar``/``pending``/``drop_pending`` and ``rank_groups``. The order rule lives in
:meth:`Sync.combine`: every collective of a run is issued from ``combine`` (and the first
record's range agreement in ``attach``'s hooks), which every rank reaches at the same points
of the same training loop — a record step's ``optimizer.step()``, a full scalar buffer, and
``close`` — so collectives match across ranks by construction; no other method communicates.
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np
import torch
import torch.distributed as dist

from dyntrace.probes.activations import BOUNDS, ActivationsProbe, module_kind

__all__ = [
    "MODES",
    "SCALAR_REDUCES",
    "active",
    "coordinator",
    "is_sharded",
    "rank_group",
    "Local",
    "Sync",
    "NullWriter",
]

MODES = ("reduce", "rank0", "per_rank")
SCALAR_REDUCES = ("mean", "sum", "min", "max")
#: Pending ``reduce=`` scalars that trigger a collective flush (a count, identical on every rank).
MAX_PENDING = 4096


def check_mode(mode) -> None:
    if mode is not None and mode not in MODES:
        raise ValueError(
            f"Invalid distributed: {mode!r} (expected one of {', '.join(map(repr, MODES))} or None)"
        )


def check_scalar_reduce(reduce) -> None:
    if reduce is not None and reduce not in SCALAR_REDUCES:
        raise ValueError(
            f"Invalid reduce: {reduce!r} (expected one of {', '.join(map(repr, SCALAR_REDUCES))} or None)"
        )


def is_sharded(probe) -> bool:
    """True if the probe's summaries differ between ranks and must be reduced over them."""
    return bool(getattr(probe, "sharded", False))


def rank_group(name: str, rank: int) -> str:
    """Name of the per-rank copy of a probe's group (``per_rank`` mode): ``activations@rank1``."""
    return f"{name}@rank{rank}"


def active(mode=None, process_group=None) -> "Sync | None":
    """A :class:`Sync` when a process group is initialised, else None (a single process)."""
    check_mode(mode)
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return Sync(mode or "reduce", process_group)


def coordinator(mode=None, process_group=None) -> "Local | Sync":
    """The recorder's distributed side: a :class:`Sync` under an initialised process group,
    else a :class:`Local` (one process: everything is local, nothing is communicated)."""
    return active(mode, process_group) or Local()


class Local:
    """A single process: the interface of :class:`Sync`, doing nothing but pass data through."""

    mode = None
    rank, world_size = 0, 1
    writes = True
    communicates = False
    pending = 0

    def setup(self, probes: list, layouts: dict, param_names: list[str]) -> tuple[list, dict]:
        return probes, layouts

    def meta(self, model) -> dict | None:
        return None

    def rank_groups(self, probes) -> list:
        return []

    def attach(self, probes) -> list:
        return []

    def before_step(self, ctx) -> None:
        pass

    def before_collect(self, probes) -> None:
        pass

    def add_scalar(self, step, name, value, reduce) -> None:  # never called: nothing to reduce
        raise RuntimeError("a single process has nothing to reduce")

    def combine(self, step: int, fields: dict | None):
        return fields or {}, [], {}

    def after_transfer(self, step: int, checks: dict) -> list:
        return []

    def drop_pending(self) -> int:
        return 0


class NullWriter:
    """The writer of a rank that writes nothing: no file, no HDF5, no thread."""

    failed = False
    path = None

    def add_scalars(self, *args):
        pass

    def add_record(self, *args):
        pass

    def add_static(self, *args):
        pass

    def add_trajectory(self, *args):
        pass

    def close(self):
        pass


class _Slot:
    """Where one packed quantity sits in the SUM or MAX buffer and how to read it back."""

    __slots__ = ("key", "field", "buffer", "offset", "numel", "shape", "negate")

    def __init__(self, key, field, buffer, offset, numel, shape, negate):
        self.key, self.field, self.buffer, self.offset = key, field, buffer, offset
        self.numel, self.shape, self.negate = numel, shape, negate


class _Packer:
    """Builds the two flat float64 buffers of a record step, remembering every slot."""

    def __init__(self, device):
        self.device = device
        self.parts = {"sum": [], "max": []}
        self.sizes = {"sum": 0, "max": 0}
        self.slots: list[_Slot] = []

    def add(self, key, field, values: torch.Tensor, rule: str, shape=None):
        buffer = "sum" if rule == "sum" else "max"
        flat = values.detach().reshape(-1).to(device=self.device, dtype=torch.float64)
        if rule == "min":
            flat = -flat  # min x = −max(−x): one MAX reduction serves both
        self.slots.append(_Slot(key, field, buffer, self.sizes[buffer], flat.numel(), shape, rule == "min"))
        self.parts[buffer].append(flat)
        self.sizes[buffer] += flat.numel()

    def buffers(self):
        empty = torch.zeros(0, dtype=torch.float64, device=self.device)
        return tuple(torch.cat(self.parts[b]) if self.parts[b] else empty for b in ("sum", "max"))

    def read(self, sums: torch.Tensor, maxes: torch.Tensor, slot: _Slot) -> torch.Tensor:
        source = sums if slot.buffer == "sum" else maxes
        out = source[slot.offset : slot.offset + slot.numel]
        out = -out if slot.negate else out
        return out.reshape(slot.shape) if slot.shape is not None else out


class _DeadTracker:
    """Dead units from reduced per-unit masks, as ``ActivationsProbe.collect`` counts them locally.

    ``dead``: units of an observed layer inactive on every shard; ``dead_persistent``: units
    dead for ``patience`` consecutive records (a layer not run this record keeps its run).
    """

    def __init__(self, patience: int, layers: int):
        self.patience = patience
        self.runs: list[torch.Tensor | None] = [None] * layers

    def update(self, observed: list[torch.Tensor], active: list[torch.Tensor], device):
        dead, persistent = [], []
        for i, (seen, mask) in enumerate(zip(observed, active)):
            if mask.numel() == 0:
                dead.append(torch.zeros((), dtype=torch.float64, device=device))
                persistent.append(torch.zeros((), dtype=torch.float64, device=device))
                continue
            seen = seen.reshape(()) > 0
            is_dead = (mask <= 0) & seen
            run = (
                self.runs[i]
                if self.runs[i] is not None and self.runs[i].shape == mask.shape
                else torch.zeros(mask.shape, dtype=torch.int32, device=device)
            )
            self.runs[i] = torch.where(seen, torch.where(is_dead, run + 1, torch.zeros_like(run)), run)
            dead.append(is_dead.sum().double())
            persistent.append(torch.where(seen, (self.runs[i] >= self.patience).sum(), 0).double())
        return torch.stack(dead), torch.stack(persistent)


class Sync:
    """The distributed side of one Recorder on one rank (built by :func:`active`).

    Attributes: ``mode``, ``rank``, ``world_size``, ``backend``, ``writes`` (this rank writes
    the file), ``collective_seconds`` (wall time spent in record-step collectives, for the
    benchmark), ``collective_calls`` and ``buffer_sizes`` (elements of the last two buffers).
    """

    def __init__(self, mode: str, group=None):
        check_mode(mode)
        self.mode = mode
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.backend = str(dist.get_backend(group))
        self.root = 0 if group is None else dist.get_global_rank(group, 0)
        self.writes = self.rank == 0
        self.communicates = mode != "rank0"
        self.collective_seconds = 0.0
        self.collective_calls = 0
        self.buffer_sizes = (0, 0)  # float64 elements of the last SUM and MAX buffers
        self._sharded: list = []  # (probe, [FieldSpec reduced by rule], number of tensors)
        self._replicated = False
        self._names: list[str] = []
        self._pending: list[tuple[int, str, object, str]] = []
        self._masks: dict[str, list] = {}
        self._fingerprint: torch.Tensor | None = None
        self._dead: dict[str, _DeadTracker] = {}
        self._warned: set = set()

    # -- setup ---------------------------------------------------------------------------------

    def setup(self, probes: list, layouts: dict, param_names: list[str]) -> tuple[list, dict]:
        """The probes this rank runs, and the groups rank 0 writes (per-rank copies added).

        Rank 0 runs every probe. With collectives, other ranks run the sharded probes only
        (their summaries are reduced; replicated probes would only repeat rank 0's); in
        "rank0" mode they run none.
        """
        self._names = list(param_names)
        self._sharded = []
        for probe in probes:
            if probe.name in layouts and is_sharded(probe):
                masked = _mask_fields(probe)
                specs = [s for s in layouts[probe.name].fields if not s.static and s.name not in masked]
                self._sharded.append((probe, specs, len(layouts[probe.name].names)))
        self._replicated = any(not is_sharded(p) for p in probes)
        if self.writes:
            local = list(probes)
        elif self.communicates:
            local = [p for p in probes if is_sharded(p)]
        else:
            local = []
        if not self.writes:
            return local, {}
        layouts = dict(layouts)
        for name, layout in list(layouts.items()):
            sharded = any(p.name == name for p, *_ in self._sharded)
            if self.mode == "rank0":
                note = f"rank 0 of {self.world_size}: its shard only"
            elif sharded:
                note = f"reduced over {self.world_size} ranks (sum, min, max by field; dead = dead on every rank)"
            else:
                note = f"rank 0 of {self.world_size}: identical on every rank under DDP (gradient fingerprints checked)"
            layouts[name] = dataclasses.replace(layout, attrs={**layout.attrs, "distributed": note})
            if sharded and self.mode == "per_rank":
                for r in range(self.world_size):
                    attrs = {
                        **layout.attrs,
                        "distributed": f"rank {r} of {self.world_size}: its shard only",
                        "rank": r,
                    }
                    layouts[rank_group(name, r)] = dataclasses.replace(layout, attrs=attrs)
        return local, layouts

    def meta(self, model) -> dict:
        """The root attribute ``distributed``: how this file was recorded."""
        groups = (
            [rank_group(p.name, r) for p, *_ in self._sharded for r in range(self.world_size)]
            if self.mode == "per_rank"
            else []
        )
        return {
            "mode": self.mode,
            "world_size": self.world_size,
            "backend": self.backend,
            "wrapper": type(model).__name__,
            "sharded_probes": [p.name for p, *_ in self._sharded],
            "rank_groups": groups,
        }

    def rank_groups(self, probes) -> list[tuple[str, object]]:
        """(group name, probe) of the per-rank copies rank 0 writes."""
        if self.mode != "per_rank":
            return []
        alive = {id(p) for p in probes}
        return [
            (rank_group(p.name, r), p)
            for p, *_ in self._sharded
            if id(p) in alive
            for r in range(self.world_size)
        ]

    # -- a record step, in order ---------------------------------------------------------------

    def attach(self, probes) -> list:
        """At arming: first-record hooks that agree on unbounded activations' histogram range."""
        if not self.communicates:
            return []
        handles = []
        for probe, *_ in self._sharded:
            if not isinstance(probe, ActivationsProbe) or probe not in probes:
                continue
            for (_, module), state in zip(probe._layers, probe._state):
                kind = module_kind(module)
                if state.edges is None and kind not in BOUNDS:
                    # prepend: runs before the probe's hook, which then finds the edges set
                    handles.append(
                        module.register_forward_hook(self._edge_hook(probe, state, kind), prepend=True)
                    )
        return handles

    def _edge_hook(self, probe, state, kind):
        def hook(module, inputs, output):
            if not torch.is_grad_enabled() or state.edges is not None:
                return
            ok = isinstance(output, torch.Tensor) and output.is_floating_point() and output.numel() > 0
            device = self._device(output if ok else None)
            local = (
                output.detach().abs().amax().double()
                if ok
                else torch.full((), float("-inf"), dtype=torch.float64, device=device)
            )
            largest = local.reshape(1).to(device)
            # Once per unbounded layer per run: the largest |x| over every rank's shard.
            dist.all_reduce(largest, op=dist.ReduceOp.MAX, group=self.group)
            state.edges = probe._edges_for(kind, largest)  # the probe's rule, on the global max

        return hook

    def before_step(self, ctx) -> None:
        """After backward, before ``optimizer.step()``: fingerprint this rank's gradients."""
        self._fingerprint = None
        if not (self.communicates and self._replicated):
            return
        params = ctx.params
        if not params:
            return
        device = params[0].device
        with torch.no_grad():
            sums = [
                p.grad.detach().sum(dtype=torch.float64).to(device)
                if p.grad is not None and not p.grad.is_sparse
                else torch.zeros((), dtype=torch.float64, device=device)
                for p in params
            ]
        self._fingerprint = torch.stack(sums)

    def before_collect(self, probes) -> None:
        """Keep the per-unit active masks of the activations before ``collect`` clears them."""
        self._masks = {}
        for probe, *_ in self._sharded:
            if isinstance(probe, ActivationsProbe) and probe in probes:
                self._masks[probe.name] = [(s.active, s.units) for s in probe._state]

    def add_scalar(self, step: int, name: str, value, reduce: str) -> None:
        self._pending.append((step, name, value, reduce))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def combine(self, step: int, fields: dict | None):
        """The record step's collectives. Every rank calls it at the same point.

        ``fields`` maps a probe's group to its fields (device tensors) (None: scalars only,
        at a flush). Returns None on ranks that do not write; on rank 0, (fields, scalars,
        checks): the sharded probes' fields replaced by their reduction (plus per-rank groups),
        scalar events (step, name, 0-d tensor) and device tensors to check after the
        transfer (:meth:`after_transfer`). All of them are still on the device: the
        recorder's single host transfer moves them with everything else.
        """
        device = self._device(next((t for group in (fields or {}).values() for t in group.values()), None))
        packer = _Packer(device)
        if fields is not None:
            self._pack_probes(packer, fields, device)
        scalar_slots = self._pack_scalars(packer, device)
        # filled on the device (no copy from the host)
        packer.add("check", "step", torch.full((), float(step), dtype=torch.float64, device=device), "max")
        packer.add("check", "-step", torch.full((), float(step), dtype=torch.float64, device=device), "min")
        if fields is not None and self._fingerprint is not None:
            packer.add("check", "fp_max", self._fingerprint, "max")
            packer.add("check", "fp_min", self._fingerprint, "min")
        self._fingerprint = None
        sums, maxes = packer.buffers()
        self.buffer_sizes = (sums.numel(), maxes.numel())

        began = time.perf_counter()
        if self.mode == "per_rank":
            both = torch.cat([sums, maxes])
            rows = [torch.empty_like(both) for _ in range(self.world_size)] if self.writes else None
            dist.gather(both, rows, dst=self.root, group=self.group)
            if self.writes:
                rows = torch.stack(rows)
                per_rank = [(row[: sums.numel()], row[sums.numel() :]) for row in rows]
                sums, maxes = rows[:, : sums.numel()].sum(0), rows[:, sums.numel() :].amax(0)
        else:
            if sums.numel():
                dist.reduce(sums, dst=self.root, op=dist.ReduceOp.SUM, group=self.group)
            dist.reduce(maxes, dst=self.root, op=dist.ReduceOp.MAX, group=self.group)
            per_rank = []
        self.collective_seconds += time.perf_counter() - began
        self.collective_calls += 1
        if not self.writes:
            return None

        out_fields = {group: dict(values) for group, values in (fields or {}).items()}
        for key, value in self._unpack_probes(packer, sums, maxes, None, device).items():
            out_fields.setdefault(key[0], {})[key[1]] = value
        scalars = self._unpack_scalars(packer, sums, maxes, scalar_slots, None)
        for r, (rank_sums, rank_maxes) in enumerate(per_rank):
            for key, value in self._unpack_probes(packer, rank_sums, rank_maxes, r, device).items():
                out_fields.setdefault(key[0], {})[key[1]] = value
            scalars += self._unpack_scalars(packer, rank_sums, rank_maxes, scalar_slots, r)
        checks = {slot.field: packer.read(sums, maxes, slot) for slot in packer.slots if slot.key == "check"}
        return out_fields, scalars, checks

    def after_transfer(self, step: int, checks: dict) -> list[tuple[int, str, float]]:
        """Host-side checks of a record step; returns scalar events to log (mismatches)."""
        events = []
        hi, lo = (
            float(np.asarray(checks[k]).reshape(-1)[0]) if k in checks else None for k in ("step", "-step")
        )
        if hi is not None and hi != lo:
            self._warn(
                "step",
                f"the ranks disagree on the step counter (from {int(lo)} to {int(hi)} "
                f"at rank 0's step {step}): do all ranks call optimizer.step() in lockstep?",
            )
        if "fp_max" in checks:
            fp_hi, fp_lo = np.asarray(checks["fp_max"]), np.asarray(checks["fp_min"])
            differ = ~((fp_hi == fp_lo) | (np.isnan(fp_hi) & np.isnan(fp_lo)))
            if differ.any():
                names = [n for n, d in zip(self._names, differ) if d]
                self._warn(
                    "grad",
                    f"gradients differ across ranks at step {step} for {len(names)} parameter(s) "
                    f"({', '.join(names[:5])}{', …' if len(names) > 5 else ''}); gradient and weight "
                    "statistics are rank 0's. Is the model wrapped in DistributedDataParallel?",
                )
                events.append((step, "dist/grad_mismatch", float(len(names))))
        return events

    def drop_pending(self) -> int:
        """Forget buffered ``reduce=`` scalars (a rank failed: no collective is safe)."""
        n, self._pending = len(self._pending), []
        return n

    # -- internals ----------------------------------------------------------------------------

    def _device(self, tensor) -> torch.device:
        """Where the buffers live: the backend's device (gloo: CPU, NCCL: this rank's GPU)."""
        if self.backend == "gloo":
            return torch.device("cpu")
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return tensor.device if isinstance(tensor, torch.Tensor) else torch.device("cpu")

    def _pack_probes(self, packer: _Packer, fields: dict, device) -> None:
        for probe, specs, tensors in self._sharded:
            for spec in specs:
                value = fields.get(probe.name, {}).get(spec.name)
                shape = None if value is None else tuple(value.shape)
                if value is None:  # this rank's probe failed or saw nothing: the rule's identity
                    value = _identity(spec, tensors, device)
                    shape = tuple(value.shape)
                packer.add(probe.name, spec.name, value, spec.reduce, shape)
            if isinstance(probe, ActivationsProbe):
                # a probe switched off on this rank still sends (empty) masks of the same sizes
                masks = self._masks.get(probe.name) or [(None, s.units) for s in probe._state]
                for index, (mask, units) in enumerate(masks):
                    seen = torch.full(
                        (), 1.0 if mask is not None else 0.0, dtype=torch.float64, device=device
                    )
                    values = (
                        mask.double()
                        if mask is not None
                        else torch.zeros(int(units), dtype=torch.float64, device=device)
                    )
                    packer.add(probe.name, ("seen", index), seen, "max")
                    packer.add(probe.name, ("active", index), values, "max")
        self._masks = {}

    def _unpack_probes(self, packer: _Packer, sums, maxes, rank, device) -> dict:
        out, masks = {}, {}
        for slot in packer.slots:
            if slot.key == "check" or slot.key == "scalar":
                continue
            group = slot.key if rank is None else rank_group(slot.key, rank)
            if isinstance(slot.field, tuple):
                masks.setdefault(slot.key, {}).setdefault(slot.field[1], {})[slot.field[0]] = packer.read(
                    sums, maxes, slot
                )
            else:
                out[(group, slot.field)] = packer.read(sums, maxes, slot)
        for name, layers in masks.items():
            probe = next(p for p, *_ in self._sharded if p.name == name)
            group = name if rank is None else rank_group(name, rank)
            tracker = self._dead.setdefault(group, _DeadTracker(probe.dead_patience, len(layers)))
            order = sorted(layers)
            dead, persistent = tracker.update(
                [layers[i]["seen"] for i in order], [layers[i]["active"] for i in order], device
            )
            out[(group, "dead")] = dead
            out[(group, "dead_persistent")] = persistent
        return out

    def _pack_scalars(self, packer: _Packer, device) -> list:
        pending, self._pending = self._pending, []
        if not pending:
            return []
        values = [v for _, _, v, _ in pending]
        numbers = torch.tensor(
            [0.0 if isinstance(v, torch.Tensor) else float(v) for v in values],
            dtype=torch.float64,
            device="cpu",
        )
        # numbers logged on the host: one small copy that waits for no kernel (non_blocking)
        packed = numbers.to(device, non_blocking=True)
        tensors = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor)]
        if tensors:  # logged tensors stay on their device until here: no sync per log call
            packed[tensors] = torch.stack([values[i].to(device=device, dtype=torch.float64) for i in tensors])
        slots = []
        for rule in ("sum", "max", "min"):
            index = [
                i for i, (_, _, _, r) in enumerate(pending) if (r if r in ("max", "min") else "sum") == rule
            ]
            if index:
                packer.add("scalar", rule, packed[index], rule)
                slots.append((packer.slots[-1], [pending[i] for i in index]))
        return slots

    def _unpack_scalars(self, packer: _Packer, sums, maxes, slots, rank) -> list:
        events = []
        for slot, entries in slots:
            values = packer.read(sums, maxes, slot)
            for value, (step, name, _, reduce) in zip(values, entries):
                if rank is not None:
                    events.append((step, f"{name}@rank{rank}", value))
                else:
                    events.append((step, name, value / self.world_size if reduce == "mean" else value))
        return events

    def _warn(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"dyntrace: {message}", stacklevel=3)


def _mask_fields(probe) -> tuple[str, ...]:
    """Fields recomputed from reduced per-unit masks rather than reduced themselves."""
    return ("dead", "dead_persistent") if isinstance(probe, ActivationsProbe) else ()


def _identity(spec, tensors: int, device) -> torch.Tensor:
    """The merge identity of one field for every tensor of a probe: 0, +inf (min), −inf (max)."""
    fill = {"sum": 0.0, "min": float("inf"), "max": float("-inf")}[spec.reduce]
    return torch.full((tensors, *spec.shape), fill, dtype=torch.float64, device=device)
