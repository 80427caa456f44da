"""Additive summaries: what probes compute on the device and the store writes.

Every per-tensor field is an additive sufficient statistic with a merge rule (``reduce``):
counts and sums add, minima and maxima combine. One rule therefore merges micro-batches,
accumulation steps, data-parallel ranks and time windows. Means, stds and fractions are
derived on read.

This module is the contract between probes (torch, no h5py) and the file format (h5py, no
torch): :class:`FieldSpec` and :class:`ProbeLayout` are plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = [
    "FieldSpec",
    "ProbeLayout",
    "MOMENT_FIELDS",
    "DEFAULT_HIST_SAMPLE",
    "moments",
    "merge_packed",
    "strided_sample",
    "histogram",
    "log10_magnitude_edges",
    "to_host",
    "tensor_fields",
    "summarise_tensor",
    "empty_summary",
    "split_summary",
    "summarise_tensors",
]

REDUCES = ("sum", "min", "max")


@dataclass(frozen=True)
class FieldSpec:
    """One per-tensor quantity: stored as [records, tensors, *shape] (or [tensors, *shape] if static).

    ``reduce`` is the merge rule ("sum", "min", "max"); ``static`` fields (bin edges, unit
    counts) are written once, at the first record.
    """

    name: str
    dtype: str = "float64"
    shape: tuple[int, ...] = ()
    reduce: str = "sum"
    unit: str = ""
    description: str = ""
    static: bool = False

    def __post_init__(self):
        if self.reduce not in REDUCES:
            raise ValueError(f"Invalid reduce {self.reduce!r} for field {self.name!r}: one of {REDUCES}")


@dataclass
class ProbeLayout:
    """What a probe writes: the names of its tensors (columns) and its fields."""

    names: list[str]
    fields: list[FieldSpec]
    labels: dict[str, list[str]] = field(default_factory=dict)  # static string columns, e.g. kind
    attrs: dict = field(default_factory=dict)


#: Elements of a tensor binned into its histogram (and counted for zeros / non-finite values):
#: a strided sample above this size, which bounds the cost of the expensive passes.
DEFAULT_HIST_SAMPLE = 1 << 14

MOMENT_FIELDS = [
    FieldSpec("count", "int64", description="number of (finite) elements summarised"),
    FieldSpec("sum", description="sum of elements"),
    FieldSpec("sumsq", description="sum of squared elements"),
    FieldSpec("min", reduce="min", description="smallest element"),
    FieldSpec("max", reduce="max", description="largest element"),
]


def moments(flat: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """[count, sum, sumsq, min, max] of a flat tensor as one float64 vector, on its device.

    No host sync. The sums are accumulated in float32 around ``shift`` (a value near the
    mean, e.g. a sample's mean): Σ(x−c) and Σ(x−c)², then Σx = Σ(x−c) + nc and
    Σx² = Σ(x−c)² + 2cΣ(x−c) + nc² are rebuilt in float64. A float64 accumulation would cost a
    float64 copy of the tensor on the CPU (ten times the price); an unshifted float32 Σx²
    would lose the variance of tightly clustered values (Adam's ψ, saturated sigmoids).
    """
    if flat.numel() == 0:
        return empty_summary(0, flat.device)[: len(MOMENT_FIELDS)]
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    n = float(flat.numel())
    lo, hi = torch.aminmax(flat)
    if shift is None:
        centred, c = flat, torch.zeros((), dtype=torch.float64, device=flat.device)
    else:
        c = torch.nan_to_num(shift.to(flat.dtype), nan=0.0, posinf=0.0, neginf=0.0)
        centred = flat - c  # one pass; buys exact variances (per-record allocation)
        c = c.double()
    s1, s2 = centred.sum().double(), torch.dot(centred, centred).double()
    total = s1 + n * c
    total_sq = s2 + 2 * c * s1 + n * c * c
    count = torch.full((), n, dtype=torch.float64, device=flat.device)  # a fill kernel, not a host copy
    return torch.stack([count, total, total_sq, lo.double(), hi.double()])


def merge_packed(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Merge two packed summaries of the same tensor (layout of :func:`summarise_tensor`,
    optionally followed by more additive counts): min and max combine, the rest adds."""
    out = old + new
    out[3] = torch.minimum(old[3], new[3])
    out[4] = torch.maximum(old[4], new[4])
    return out


def strided_sample(flat: torch.Tensor, cap: int) -> torch.Tensor:
    """At most ``cap`` elements of a flat tensor, taken with an odd stride, made contiguous.

    An odd stride walks through every residue of a power-of-two row length, so a
    [batch, units] tensor is sampled across all units rather than a few columns. The copy
    (``cap`` elements) makes the passes over the sample run at full speed.
    """
    n = flat.numel()
    if n <= cap:
        return flat
    stride = -(-n // cap)
    stride += stride % 2 == 0
    return flat[::stride].contiguous()


def histogram(values: torch.Tensor, edges: tuple[float, float, int]) -> torch.Tensor:
    """Counts of ``values`` in ``bins`` equal bins on [lo, hi], plus under- and overflow.

    Returns float64 [bins + 2]: index 0 counts values below lo (−inf included), the last
    index values above hi (+inf included); NaN is not counted. One clamp and one histc pass.
    """
    lo, hi, bins = edges
    width = (hi - lo) / bins
    clamped = values.float().clamp(lo - width / 2, hi + width / 2)
    return torch.histc(clamped, bins + 2, lo - width, hi + width).double()


def log10_magnitude_edges(lo: float, hi: float, per_decade: int) -> tuple[float, float, int]:
    """Histogram spec for log10 |x| on [lo, hi] decades with ``per_decade`` bins a decade."""
    return (float(lo), float(hi), int(round((hi - lo) * per_decade)))


def to_host(tensors: dict[str, torch.Tensor]) -> dict:
    """Move a flat dict of device tensors to the host in one transfer; returns numpy arrays.

    This is the one device-to-host synchronisation of a record step: every summary is cast
    to float64, concatenated into one buffer, copied once, and split again on the host.
    """
    if not tensors:
        return {}
    keys = list(tensors)
    parts = [tensors[k].detach().reshape(-1).to(torch.float64) for k in keys]
    host = torch.cat(parts).cpu().numpy()  # <- the single device-host sync
    out, offset = {}, 0
    for key, part in zip(keys, parts):
        size = part.numel()
        out[key] = host[offset : offset + size].reshape(tuple(tensors[key].shape))
        offset += size
    return out


def tensor_fields(bins: int, *, unit: str = "", hist_description: str = "") -> list[FieldSpec]:
    """Fields of :func:`summarise_tensor`: exact moments, then counts over the histogram sample."""
    return [
        *MOMENT_FIELDS,
        FieldSpec("zero", "int64", description="elements exactly 0 in the histogram sample"),
        FieldSpec("nonfinite", "int64", description="NaN or infinite elements"),
        FieldSpec("hist_count", "int64", description="elements in the histogram sample"),
        FieldSpec(
            "hist",
            "int32",  # counts of a sample of at most hist_sample elements per forward pass
            (bins + 2,),
            description=hist_description + "; index 0 underflow (zeros excluded), last overflow",
            unit=unit,
        ),
    ]


def empty_summary(bins: int, device) -> torch.Tensor:
    """The identity of :func:`merge_packed` in the packed layout of :func:`summarise_tensor`."""
    out = torch.zeros(8 + bins + 2, dtype=torch.float64, device=device)
    out[3], out[4] = float("inf"), float("-inf")
    return out


def summarise_tensor(x: torch.Tensor, edges: tuple[float, float, int], *, cap: int, magnitude: bool, centred: bool = True) -> torch.Tensor:
    """Exact moments of ``x`` and counts over a strided sample of it, packed in one vector.

    Layout: [count, sum, sumsq, min, max, zero, nonfinite, hist_count, hist(bins + 2)].
    ``zero``, ``nonfinite`` and the histogram are counted in the sample (all of ``x`` when it
    has at most ``cap`` elements). With ``magnitude`` the histogram bins log10 |x| and leaves
    exact zeros out; otherwise it bins the values. Non-finite values are counted, never
    binned; if there are any, the moments are NaN/inf and a probe may recompute them.
    ``centred`` accumulates the sums around the sample's mean (see :func:`moments`): one more
    pass, needed where values cluster far from 0 (activations, adaptive rates), not for
    gradients and weights, whose spread is large next to their mean.
    """
    flat = x.detach().reshape(-1)
    if flat.numel() == 0:
        return empty_summary(edges[2], flat.device)
    sample = strided_sample(flat, cap)
    finite = torch.isfinite(sample)
    zero = (sample == 0).sum()
    values = torch.log10(sample.abs()) if magnitude else sample
    hist = histogram(values.masked_fill(~finite, float("nan")), edges)  # histc skips NaN
    if magnitude:
        hist[0] -= zero  # log10(0) = -inf lands in the underflow bin
    counts = torch.stack([zero, sample.numel() - finite.sum(), torch.full((), sample.numel(), device=flat.device)]).double()
    shift = sample.float().mean() if centred else None
    return torch.cat([moments(flat, shift), counts, hist])


def summarise_tensors(tensors, edges: tuple[float, float, int], *, cap: int, magnitude: bool, centred: bool = False) -> torch.Tensor:
    """:func:`summarise_tensor` of many tensors at once: packed rows [T, 8 + bins + 2].

    The moments are taken per tensor (three reductions each); everything counted over the
    samples — zeros, non-finite values, the histogram — is done once for all tensors: their
    samples are concatenated and binned by one ``bincount`` over (tensor, slot), so a model
    with hundreds of small parameters pays a dozen operations, not a dozen per tensor.
    ``None`` or empty tensors get an empty row. Tensors on several devices, or of a
    non-floating type, are summarised one by one. (For a single tensor, as in a forward hook,
    :func:`summarise_tensor` is faster: one ``histc`` beats the slot arithmetic; both agree,
    which a test checks.)
    """
    lo, hi, bins = edges
    present = [i for i, t in enumerate(tensors) if t is not None and t.numel() > 0]
    if not present:
        return torch.stack([empty_summary(bins, "cpu") for _ in tensors]) if tensors else torch.zeros(0, 8 + bins + 2, dtype=torch.float64)
    device = tensors[present[0]].device
    if any(tensors[i].device != device or not tensors[i].is_floating_point() for i in present):
        rows = [summarise_tensor(t, edges, cap=cap, magnitude=magnitude, centred=centred) if i in present else empty_summary(bins, device) for i, t in enumerate(tensors)]
        return torch.stack([r.to(device) for r in rows])
    flats = [tensors[i].detach().reshape(-1) for i in present]
    samples = [strided_sample(f, cap) for f in flats]
    segment, sizes = _segments(tuple(s.numel() for s in samples), device)
    sample = torch.cat(samples).float()
    t = len(samples)
    # slots per tensor: 0 underflow, 1…bins, bins + 1 overflow, bins + 2 non-finite, and for
    # a magnitude histogram bins + 3 exact zeros (log10 0 = −inf would land in underflow)
    values = torch.log10(sample.abs()) if magnitude else sample
    slot = ((values - lo) * (bins / (hi - lo))).floor_().clamp_(-1, bins).add_(1)
    slot = torch.where(torch.isfinite(sample), slot, bins + 2)
    if magnitude:
        slot = torch.where(sample == 0, bins + 3, slot)
    slots = bins + 4
    counts = torch.bincount(segment * slots + slot.long(), minlength=t * slots).reshape(t, slots).double()
    if magnitude:
        zeros = counts[:, bins + 3]
    else:
        zeros = torch.bincount(segment * 2 + (sample == 0).long(), minlength=2 * t).reshape(t, 2)[:, 1].double()
    shifts = None
    if centred:
        finite_sum = torch.zeros(t, dtype=torch.float64, device=device).index_add_(0, segment, torch.nan_to_num(sample, 0.0, 0.0, 0.0).double())
        shifts = (finite_sum / sizes).to(sample.dtype)
    moments_ = _moments_of(flats, shifts)
    packed = torch.cat([moments_, zeros[:, None], counts[:, bins + 2 : bins + 3], sizes[:, None], counts[:, : bins + 2]], dim=1)
    if len(present) == len(tensors):
        return packed
    out = torch.stack([empty_summary(bins, device) for _ in tensors])
    out[_constant(tuple(present), device, torch.long)] = packed
    return out


_CONSTANTS: dict = {}


def _constant(values: tuple, device, dtype) -> torch.Tensor:
    """A small constant tensor on ``device``, copied there once: parameter shapes do not
    change, so record steps reuse it instead of copying from the host every time."""
    key = (values, str(device), dtype)
    if key not in _CONSTANTS:
        if len(_CONSTANTS) >= 256:  # bounded: a handful of probes and shape sets
            _CONSTANTS.pop(next(iter(_CONSTANTS)))
        _CONSTANTS[key] = torch.tensor(values, dtype=dtype, device=device)
    return _CONSTANTS[key]


def _segments(sizes: tuple[int, ...], device):
    """(segment id of every sample element, sizes as float64), both cached constants."""
    counts = _constant(sizes, device, torch.long)
    segment_key = (("segments",) + sizes, str(device), torch.long)
    if segment_key not in _CONSTANTS:
        _CONSTANTS[segment_key] = torch.repeat_interleave(torch.arange(len(sizes), device=device), counts)
    return _CONSTANTS[segment_key], _constant(sizes, device, torch.float64)


def _moments_of(flats, shifts) -> torch.Tensor:
    """[T, 5] moments (see :func:`moments`), gathered with one stack per statistic."""
    lows, highs, s1, s2 = [], [], [], []
    for k, flat in enumerate(flats):
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.float()
        lo, hi = torch.aminmax(flat)
        centred = flat if shifts is None else flat - shifts[k].to(flat.dtype)  # one pass: exact variances
        lows.append(lo)
        highs.append(hi)
        s1.append(centred.sum())
        s2.append(torch.dot(centred, centred))
    count = _constant(tuple(f.numel() for f in flats), flats[0].device, torch.float64)
    s1, s2 = torch.stack(s1).double(), torch.stack(s2).double()
    if shifts is not None:
        c = shifts.double()
        s1, s2 = s1 + count * c, s2 + 2 * c * s1 + count * c * c
    return torch.stack([count, s1, s2, torch.stack(lows).double(), torch.stack(highs).double()], dim=1)


def split_summary(packed: torch.Tensor) -> dict[str, torch.Tensor]:
    """Packed summaries [T, 8 + bins + 2] as per-field tensors [T] and [T, bins + 2]."""
    names = ["count", "sum", "sumsq", "min", "max", "zero", "nonfinite", "hist_count"]
    out = {name: packed[:, i] for i, name in enumerate(names)}
    out["hist"] = packed[:, len(names) :]
    return out
