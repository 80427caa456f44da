"""Additive summaries: what probes compute on the device and the store writes.

Every per-tensor field is an additive sufficient statistic with a merge rule (``reduce``):
counts and sums add, minima and maxima combine. One rule therefore merges micro-batches,
accumulation steps, data-parallel ranks and time windows. Means, stds and fractions are
derived on read.

This module is the contract between probes (torch, no h5py) and the file format (h5py, no
torch): :class:`FieldSpec` and :class:`ProbeLayout` are plain data.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

__all__ = [
    "FieldSpec",
    "ProbeLayout",
    "MOMENT_FIELDS",
    "COLUMNS",
    "COUNT",
    "SUM",
    "SUMSQ",
    "MIN",
    "MAX",
    "ZERO",
    "NONFINITE",
    "HIST_COUNT",
    "HIST",
    "packed_width",
    "nice_ceiling",
    "symmetric_limit",
    "edges_tensor",
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
    "sample_moments",
    "tensor_reductions",
    "moments_from_reductions",
    "histogram_rows",
    "device_constant",
    "segment_sums",
    "strided_view",
    "on_device",
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
    stats: list = field(default_factory=list)  # dyntrace.stats.Ratio: statistics of the probe's own fields


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

# -- the packed layout: one float64 row per tensor --------------------------------------------
#: Column names of a packed summary row, in order; the histogram (``bins + 2`` columns:
#: underflow, the bins, overflow) follows from column :data:`HIST`. Use these names, never
#: bare numbers, to read or patch a packed row.
COLUMNS = ("count", "sum", "sumsq", "min", "max", "zero", "nonfinite", "hist_count")
COUNT, SUM, SUMSQ, MIN, MAX, ZERO, NONFINITE, HIST_COUNT = range(len(COLUMNS))
HIST = len(COLUMNS)


def packed_width(bins: int) -> int:
    """Columns of a packed row with a histogram of ``bins`` bins (plus under- and overflow)."""
    return HIST + bins + 2


def moments(flat: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """[count, sum, sumsq, min, max] of a flat tensor as one float64 vector, on its device.

    No host sync. The sums are accumulated in float32 around ``shift`` (a value near the
    mean, e.g. a sample's mean): Σ(x−c) and Σ(x−c)², then Σx = Σ(x−c) + nc and
    Σx² = Σ(x−c)² + 2cΣ(x−c) + nc² are rebuilt in float64. A float64 accumulation would cost a
    float64 copy of the tensor on the CPU (ten times the price); an unshifted float32 Σx²
    would lose the variance of tightly clustered values (Adam's ψ, saturated sigmoids).
    """
    if flat.numel() == 0:
        return empty_summary(0, flat.device)[: HIST - 3]
    return _moments_of([flat], None if shift is None else shift.reshape(1))[0]


def merge_packed(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Merge two packed summaries of the same tensor (layout of :func:`summarise_tensor`,
    optionally followed by more additive counts): min and max combine, the rest adds."""
    out = old + new
    out[..., MIN] = torch.minimum(old[..., MIN], new[..., MIN])
    out[..., MAX] = torch.maximum(old[..., MAX], new[..., MAX])
    return out


def strided_view(flat: torch.Tensor, cap: int) -> torch.Tensor:
    """The elements :func:`strided_sample` takes, as a view (no copy)."""
    n = flat.numel()
    if n <= cap:
        return flat
    stride = -(-n // cap)
    stride += stride % 2 == 0
    return flat[::stride]


def strided_sample(flat: torch.Tensor, cap: int) -> torch.Tensor:
    """At most ``cap`` elements of a flat tensor, taken with an odd stride, made contiguous.

    An odd stride walks through every residue of a power-of-two row length, so a
    [batch, units] tensor is sampled across all units rather than a few columns. The copy
    (``cap`` elements) makes the passes over the sample run at full speed.
    """
    return strided_view(flat, cap).contiguous()


def histogram(values: torch.Tensor, edges) -> torch.Tensor:
    """Counts of ``values`` in ``bins`` equal bins on [lo, hi], plus under- and overflow.

    ``edges`` is (lo, hi, bins); lo and hi may be numbers or 0-d tensors on the values'
    device (ranges decided on the device need no host sync). Returns float64 [bins + 2]:
    index 0 counts values below lo (−inf included), the last index values above hi (+inf
    included); NaN is not counted. Slot arithmetic and one ``scatter_add_`` into a
    preallocated buffer: no ``bincount``, whose output size depends on the data (a CUDA sync).
    """
    lo, hi, bins = edges
    values = values.reshape(-1)
    slot = _slots(values.float(), lo, hi, bins)
    counts = torch.zeros(bins + 3, dtype=torch.float32, device=values.device)  # per-record allocation
    counts.scatter_add_(0, slot, _ones(values))
    return counts[: bins + 2].double()


def log10_magnitude_edges(lo: float, hi: float, per_decade: int) -> tuple[float, float, int]:
    """Histogram spec for log10 |x| on [lo, hi] decades with ``per_decade`` bins a decade."""
    return (float(lo), float(hi), int(round((hi - lo) * per_decade)))


def nice_ceiling(value: torch.Tensor) -> torch.Tensor:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above ``value``, element-wise, on its device.

    A readable histogram limit decided without a host sync; 1 where ``value`` is not a
    positive finite number. (float64: the mantissa test must not round 2.5 × 10^k up.)
    """
    value = value.double()
    value = torch.where(torch.isfinite(value) & (value > 0), value, torch.ones_like(value))
    power = torch.pow(10.0, torch.floor(torch.log10(value)))
    m = value / power * (1 - 1e-12)  # absorbs the rounding of log10 at exact powers
    # m <= 1 → 1, m <= 2 → 2, m <= 2.5 → 2.5, m <= 5 → 5, else 10: one search, one gather
    device = value.device
    step = torch.bucketize(m, device_constant((1.0, 2.0, 2.5, 5.0), device, torch.float64))
    mantissa = torch.take(device_constant((1.0, 2.0, 2.5, 5.0, 10.0), device, torch.float64), step)
    return mantissa * power


def symmetric_limit(packed: torch.Tensor) -> torch.Tensor:
    """h = :func:`nice_ceiling` (max |x|) of each packed row (from its min and max columns): the
    data-decided histogram range [−h, h]. The small margin keeps a max |x| that is itself a
    round number (a constant init) inside the last bin instead of on the overflow edge."""
    return nice_ceiling(torch.maximum(-packed[:, MIN], packed[:, MAX]) * (1 + 1e-6))


def edges_tensor(lo, hi, bins: int, device) -> torch.Tensor:
    """The ``bins + 1`` edges of equal bins on [lo, hi] as float64 on ``device`` (lo and hi
    numbers, 0-d tensors or [T] tensors, giving [T, bins + 1])."""
    steps = torch.arange(bins + 1, dtype=torch.float64, device=device) / bins
    lo = lo.double().unsqueeze(-1) if isinstance(lo, torch.Tensor) else lo
    hi = hi.double().unsqueeze(-1) if isinstance(hi, torch.Tensor) else hi
    return lo + (hi - lo) * steps


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


def empty_summary(bins: int, device, rows: int | None = None) -> torch.Tensor:
    """The identity of :func:`merge_packed` in the packed layout: a row (or ``rows`` rows) of
    zeros with min = +inf and max = −inf. Filled on ``device``: no copy from the host."""
    shape = (packed_width(bins),) if rows is None else (rows, packed_width(bins))
    out = torch.zeros(shape, dtype=torch.float64, device=device)
    out[..., MIN] = float("inf")
    out[..., MAX] = float("-inf")
    return out


def summarise_tensor(
    x: torch.Tensor, edges, *, cap: int, magnitude: bool, centred: bool = True
) -> torch.Tensor:
    """Exact moments of ``x`` and counts over a strided sample of it, packed in one vector.

    Layout (:data:`COLUMNS`): [count, sum, sumsq, min, max, zero, nonfinite, hist_count,
    hist(bins + 2)]. ``zero``, ``nonfinite`` and the histogram are counted in the sample (all
    of ``x`` when it has at most ``cap`` elements). With ``magnitude`` the histogram bins
    log10 |x| and leaves exact zeros out; otherwise it bins the values. Non-finite values are
    counted, never binned; if there are any, the moments are NaN/inf and a probe may
    recompute them. ``centred`` accumulates the sums around the sample's mean (see
    :func:`moments`): one more pass, needed where values cluster far from 0 (activations,
    adaptive rates), not for gradients and weights, whose spread is large next to their mean.
    ``edges`` = (lo, hi, bins), lo and hi numbers or 0-d tensors on ``x``'s device.
    """
    return summarise_tensors([x], edges, cap=cap, magnitude=magnitude, centred=centred, device=x.device)[0]


@torch.no_grad()  # no graph, and no detach() of each tensor
def summarise_tensors(
    tensors,
    edges,
    *,
    cap: int,
    magnitude: bool,
    centred: bool = False,
    device=None,
    norms=None,
    with_limit: bool = False,
):
    """:func:`summarise_tensor` of many tensors at once: packed rows [T, 8 + bins + 2].

    The moments are taken per tensor (three reductions each); everything counted over the
    samples — zeros, non-finite values, the histogram — is done once for all tensors: their
    samples are concatenated, each element's slot (tensor, bin) computed, and the counts
    accumulated with one ``scatter_add_`` into a preallocated buffer (no ``bincount``: its
    output size depends on the data, which costs a CUDA sync). ``edges`` = (lo, hi, bins)
    with lo and hi numbers, 0-d tensors, or [T] tensors (one range per tensor), on the
    tensors' device; or lo = hi = None for a symmetric range per tensor decided by the data,
    [−h, h] with h = :func:`nice_ceiling` (max |x|) — recomputable from the row's min and max,
    so a probe stores nothing more. ``None`` or empty tensors get an empty row. Tensors on several devices,
    or of a non-floating type, are summarised one by one and gathered on the first one's
    device. ``device`` places the rows when no tensor is present (default: the first tensor's).
    ``norms``: ‖t‖₂ of each tensor (float64 [T], e.g. one fused norm shared with other probes),
    whose squares are then the ``sumsq`` column instead of a pass of their own (uncentred only).
    ``with_limit`` (data-decided ranges only): returns ``(rows, h)``, h the [T] limits the rows
    were binned with, each :func:`symmetric_limit` of its row (not computed twice).
    """
    lo, hi, bins = edges
    present = [i for i, t in enumerate(tensors) if t is not None and t.numel() > 0]
    if not present:
        where = device if device is not None else next((t.device for t in tensors if t is not None), None)
        if where is None:
            raise ValueError("summarise_tensors: no tensor to take a device from; pass device=")
        out = empty_summary(bins, where, rows=len(tensors))
        return (out, symmetric_limit(out)) if with_limit else out
    device = tensors[present[0]].device
    if any(tensors[i].device != device or not tensors[i].is_floating_point() for i in present):
        out = _one_by_one(  # (norms unused: the rare path)
            tensors, edges, present, cap=cap, magnitude=magnitude, centred=centred, device=device
        )
        return (out, symmetric_limit(out)) if with_limit else out
    per_tensor = isinstance(lo, torch.Tensor) and lo.dim() == 1
    if lo is not None and per_tensor and len(present) < len(tensors):
        index = device_constant(tuple(present), device, torch.long)
        lo, hi = lo.index_select(0, index), hi.index_select(0, index)
    flats = [tensors[i].reshape(-1) for i in present]
    t = len(flats)
    if t == 1:
        sample, segment = strided_sample(flats[0], cap).float(), None
        sizes_key = (sample.numel(),)
        sizes = torch.full((1,), float(sample.numel()), dtype=torch.float64, device=device)
    else:  # the samples are strided views, pooled by one copy
        views = [strided_view(f, cap) for f in flats]
        sizes_key = tuple(v.numel() for v in views)
        segment, sizes = _segments(sizes_key, device)
        sample = torch.cat(views).float()  # per-record allocation: the pooled samples
    shifts = None
    if centred:
        clean = torch.nan_to_num(sample, nan=0.0, posinf=0.0, neginf=0.0)
        shifts = segment_sums(clean, sizes_key, device) / sizes
    if norms is not None and not centred:
        squares = norms.double().square()
        if len(present) < len(tensors):
            squares = squares.index_select(0, device_constant(tuple(present), device, torch.long))
        moments_ = _moments_of(flats, None, squares)
    else:
        moments_ = _moments_of(flats, shifts)
    if lo is None:  # a symmetric range from the data: [−h, h], h = max |x| rounded up
        hi = symmetric_limit(moments_)
        lo, per_tensor = -hi, True
    scale = bins / (hi - lo)  # per tensor: the same number each element's bin arithmetic used
    lo_of, scale_of = lo, scale
    if per_tensor and segment is not None:
        lo_of, scale_of = lo.index_select(0, segment), scale.index_select(0, segment)
    values = torch.log10(sample.abs()) if magnitude else sample
    counts = _slot_counts(sample, values, lo_of, scale_of, bins, sizes_key, device)
    zeros = counts[:, bins + 3]
    if not magnitude:  # a value histogram's zeros also belong in their bin
        counts = _zeros_into_their_bins(counts, lo, scale, bins, t if per_tensor else 1)
    packed = torch.cat(
        [moments_, zeros[:, None], counts[:, bins + 2 : bins + 3], sizes[:, None], counts[:, : bins + 2]],
        dim=1,
    )
    if len(present) == len(tensors):
        return (packed, hi) if with_limit else packed
    out = empty_summary(bins, device, rows=len(tensors))
    out[device_constant(tuple(present), device, torch.long)] = packed
    return (out, symmetric_limit(out)) if with_limit else out


def sample_moments(x: torch.Tensor, *, cap: int, centred: bool):
    """The first half of :func:`summarise_tensor`, for summaries whose histograms are counted
    later, many tensors at once (:func:`histogram_rows`): exact moments [count, sum, sumsq,
    min, max] of ``x`` (float64, on its device), its strided sample in ``x``'s dtype (a view,
    for use at once) and the same sample as a float32 copy: kept until the histograms are
    counted, it must not change when the model rewrites ``x`` in place meanwhile (a
    ``ReLU(inplace=True)`` after a norm). ``x`` must be a non-empty floating-point tensor."""
    reductions, shift, raw, sample = tensor_reductions(x, cap=cap, centred=centred)
    return moments_from_reductions(reductions, (x.numel(),), [shift], x.device)[0], raw, sample


def tensor_reductions(x: torch.Tensor, *, cap: int, centred: bool):
    """The passes :func:`sample_moments` makes over ``x``, not yet assembled: for hooks that
    run on every forward pass and leave the assembling to one batch a record step
    (:func:`moments_from_reductions`). Returns ``([min, max, Σ(x−c), Σ(x−c)²], c, raw, sample)``:
    four 0-d tensors, the shift c (float64 [1], the sample's mean with NaN/±inf made 0) or
    None when not ``centred``, the strided sample as a view and as a float32 copy."""
    flat = x.reshape(-1)
    raw = strided_view(flat, cap)
    sample = raw.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    shift = None
    if centred:
        clean = torch.nan_to_num(sample, nan=0.0, posinf=0.0, neginf=0.0)
        shift = clean.sum(dtype=torch.float64).reshape(1) / sample.numel()
        shift = torch.nan_to_num(shift, nan=0.0, posinf=0.0, neginf=0.0)
    return _reductions(flat, shift), shift, raw, sample


def moments_from_reductions(reductions: list, counts: tuple, shifts, device, squares=None) -> torch.Tensor:
    """[R, 5] moments [count, sum, sumsq, min, max] (float64 on ``device``) of R tensors from
    their :func:`tensor_reductions`: ``reductions`` the 4R 0-d tensors in order, ``counts``
    their sizes, ``shifts`` each one's shift or None (or one float64 [R] tensor when every
    row is centred, or None when none is). One stack for all, the sums of the centred ones
    rebuilt around their shift (see :func:`moments`), exactly as for one. ``squares``: Σx² of
    each row known already (float64 [R], uncentred): the reductions are then 3R, without it."""
    rows = len(counts)
    if any(r.device != device for r in reductions):  # columns on several devices (rare)
        reductions = [on_device(r, device) for r in reductions]
    width = 4 if squares is None else 3
    lows, highs, s1, *s2 = torch.stack(reductions).double().view(rows, width).unbind(1)
    s2 = s2[0] if squares is None else squares
    count = device_constant(tuple(float(n) for n in counts), device, torch.float64)
    if isinstance(shifts, torch.Tensor):  # every row centred
        c = shifts.double()
        s1, s2 = s1 + count * c, s2 + 2 * c * s1 + count * c * c
    elif shifts is not None and any(c is not None for c in shifts):
        zero = device_constant((0.0,), device, torch.float64)
        c = torch.cat([zero if s is None else on_device(s, device) for s in shifts])
        r1, r2 = s1 + count * c, s2 + 2 * c * s1 + count * c * c
        if all(s is not None for s in shifts):
            s1, s2 = r1, r2
        else:  # only the centred rows (0 · inf would turn an uncentred inf sum into NaN)
            mask = device_constant(tuple(s is not None for s in shifts), device, torch.bool)
            s1, s2 = torch.where(mask, r1, s1), torch.where(mask, r2, s2)
    return torch.stack([count, s1, s2, lows, highs], dim=1)


def on_device(tensor: torch.Tensor, device) -> torch.Tensor:
    """``tensor`` on ``device``; itself, without a dispatched call, when it is there already."""
    return tensor if tensor.device == device else tensor.to(device)


def _reductions(flat: torch.Tensor, shift: torch.Tensor | None, squares: bool = True) -> list:
    """[min, max, Σ(x−c), Σ(x−c)²] of a flat tensor as 0-d tensors (Σ(x−c)² left out without
    ``squares``); ``shift`` c float64 [1] or None. Half types are summed in float32."""
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    centred = flat if shift is None else flat - shift.to(flat.dtype)  # one pass: exact variances
    out = [*torch.aminmax(flat), centred.sum()]
    if squares:
        out.append(torch.dot(centred, centred))
    return out


def histogram_rows(
    samples: list, lo: torch.Tensor, hi: torch.Tensor, bins: int, *, owners: tuple | None = None, rows=None
) -> torch.Tensor:
    """The second half: [zero, nonfinite, hist_count, hist(bins + 2)] of each float32 sample
    (from :func:`sample_moments`) in its own value range, ``lo`` and ``hi`` float64 [R] on the
    samples' device, all counted with one ``scatter_add_``. The bin arithmetic is float32, as
    :func:`summarise_tensor`'s with a number or 0-d range: each row equals its columns there.
    With ``owners`` (the row of each sample, out of ``rows``) the counts of the samples of one
    row are added up (several forward passes of one layer)."""
    r = len(samples)
    sizes_key = tuple(s.numel() for s in samples)
    device = samples[0].device
    scale = (bins / (hi - lo)).float()
    lo = lo.float()
    if r == 1:
        sample, lo_of, scale_of = samples[0], lo, scale
    else:
        segment, _ = _segments(sizes_key, device)
        sample = torch.cat(samples)  # per-record allocation: the pooled samples
        lo_of, scale_of = lo.index_select(0, segment), scale.index_select(0, segment)
    counts = _slot_counts(sample, sample, lo_of, scale_of, bins, sizes_key, device)
    counts = _zeros_into_their_bins(counts, lo, scale, bins, r)
    sizes = device_constant(tuple(float(n) for n in sizes_key), device, torch.float64)
    out = torch.cat(
        [counts[:, bins + 3 :], counts[:, bins + 2 : bins + 3], sizes[:, None], counts[:, : bins + 2]], dim=1
    )
    if owners is None:
        return out
    summed = torch.zeros((rows, out.shape[1]), dtype=torch.float64, device=device)
    return summed.index_add_(0, device_constant(tuple(owners), device, torch.long), out)


def _slot_counts(sample, values, lo_of, scale_of, bins: int, sizes_key: tuple, device) -> torch.Tensor:
    """Counts [T, bins + 4] of the pooled samples of T tensors (``sizes_key`` elements each) by
    slot: 0 underflow, 1…bins, bins + 1 overflow, bins + 2 NaN/±inf, bins + 3 exact zeros (a
    magnitude histogram's log10 0 = −inf would land in underflow). ``values`` are what is
    binned (the samples or log10 of their magnitudes), ``lo_of``/``scale_of`` each element's
    range. Float arithmetic only, one conversion and one ``scatter_add_``: on a CPU a
    comparison or a select costs three to five times an add, and a ``bincount`` syncs a GPU."""
    t, slots = len(sizes_key), bins + 4
    poison = sample * 0  # NaN where the value is NaN or ±inf, else ±0
    slot = ((values - lo_of) * scale_of).add_(poison).floor_().clamp_(-1, bins).add_(1)  # NaN: non-finite
    sign = sample.sign()
    nonzero = sign.mul_(sign)  # 1, or 0 for an exact zero
    slot = (slot - (bins + 3)).mul_(nonzero).add_(bins + 3).nan_to_num_(nan=bins + 2)
    if t > 1:  # each tensor's slots after the previous ones' (exact: small integers in floats)
        slot = slot.add_(_segment_offsets(sizes_key, slots, device, slot.dtype))
    counts = torch.zeros(t * slots, dtype=torch.float32, device=device)  # per-record allocation
    return counts.scatter_add_(0, slot.long(), _ones(sample)).reshape(t, slots).double()


def _zeros_into_their_bins(counts, lo, scale, bins: int, ranges: int) -> torch.Tensor:
    """A value histogram's zeros (slot bins + 3) added to the bin that holds 0 in each row's
    range, found by the very arithmetic that binned the values (``ranges``: 1 for one shared
    range, else one per row; float32 as the samples)."""
    t = counts.shape[0]
    zero = torch.zeros(ranges, dtype=torch.float32, device=counts.device)
    bin_of_zero = ((zero - lo) * scale).floor_().clamp_(-1, bins).add_(1).long()
    return counts.scatter_add(1, bin_of_zero.expand(t).reshape(t, 1), counts[:, bins + 3 :])


def _one_by_one(tensors, edges, present, *, cap, magnitude, centred, device) -> torch.Tensor:
    """Rare path: tensors on several devices or of integer type, each on its own device."""
    lo, hi, bins = edges
    per_tensor = isinstance(lo, torch.Tensor) and lo.dim() == 1
    rows = []
    for i, tensor in enumerate(tensors):
        if i not in present:
            rows.append(empty_summary(bins, device))
            continue
        x = tensor.detach() if tensor.is_floating_point() else tensor.detach().double()
        own = (lo[i].to(x.device), hi[i].to(x.device), bins) if per_tensor else edges
        rows.append(summarise_tensors([x], own, cap=cap, magnitude=magnitude, centred=centred)[0].to(device))
    return torch.stack(rows)


def _slots(values, lo, hi, bins) -> torch.Tensor:
    """Bin index of every value for :func:`histogram`: 0 underflow (−inf included), 1…bins,
    bins + 1 overflow (+inf included), bins + 2 NaN, as int64."""
    scale = bins / (hi - lo)
    slot = ((values - lo) * scale).floor_().clamp_(-1, bins).add_(1)
    slot = torch.where(values == float("inf"), bins + 1, slot)
    slot = torch.where(values == float("-inf"), 0, slot)
    slot = torch.where(values != values, bins + 2, slot)
    return slot.long()


def segment_sums(values: torch.Tensor, sizes: tuple, device) -> torch.Tensor:
    """Sums of consecutive segments of ``values`` (lengths ``sizes``) as float64 [T]: one
    cumulative sum and a gather at the segment ends (a scatter into a handful of slots
    serialises on the CPU)."""
    if len(sizes) == 1:
        return values.sum(dtype=torch.float64).reshape(1)
    total = torch.cumsum(values, 0, dtype=torch.float64)
    ends = total.index_select(0, device_constant(tuple(itertools.accumulate(sizes)), device, torch.long) - 1)
    return torch.diff(ends, prepend=ends.new_zeros(1))


def _ones(like: torch.Tensor) -> torch.Tensor:
    """A float32 vector of ones the size of ``like``, without writing it (a stride-0 view)."""
    return torch.ones((), dtype=torch.float32, device=like.device).expand(like.numel())


_CONSTANTS: dict = {}


def device_constant(values: tuple, device, dtype) -> torch.Tensor:
    """A small constant tensor on ``device``, copied there once and cached by value, device and
    dtype (a bounded cache): parameter shapes do not change, so record steps reuse it instead
    of copying from the host every time."""
    key = (values, str(device), dtype)
    if key not in _CONSTANTS:
        if len(_CONSTANTS) >= 256:  # bounded: a handful of probes and shape sets
            _CONSTANTS.pop(next(iter(_CONSTANTS)))
        _CONSTANTS[key] = torch.tensor(values, dtype=dtype, device=device)
    return _CONSTANTS[key]


def _segments(sizes: tuple[int, ...], device):
    """(segment id of every sample element, sizes as float64), both cached constants."""
    counts = device_constant(sizes, device, torch.long)
    segment_key = (("segments",) + sizes, str(device), torch.long)
    if segment_key not in _CONSTANTS:
        _CONSTANTS[segment_key] = torch.repeat_interleave(
            torch.arange(len(sizes), device=device), counts, output_size=sum(sizes)
        )
    return _CONSTANTS[segment_key], device_constant(sizes, device, torch.float64)


def _segment_offsets(sizes: tuple[int, ...], slots: int, device, dtype) -> torch.Tensor:
    """``slots`` × the segment id of every sample element, where its tensor's slots begin, in
    ``dtype`` (cached): added to the float slots before their one conversion to int64."""
    key = (("offsets", slots) + sizes, str(device), dtype)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = (_segments(sizes, device)[0] * slots).to(dtype)
    return _CONSTANTS[key]


def _moments_of(flats, shifts, squares=None) -> torch.Tensor:
    """[T, 5] moments (see :func:`moments`): the reductions of all tensors gathered by one stack.
    ``squares``: Σx² of each tensor, known already (float64 [T]; uncentred): not summed again."""
    if shifts is not None:
        shifts = torch.nan_to_num(shifts, nan=0.0, posinf=0.0, neginf=0.0)
    reductions = []
    for k, flat in enumerate(flats):
        reductions += _reductions(flat, None if shifts is None else shifts[k], squares is None)
    counts = tuple(f.numel() for f in flats)
    return moments_from_reductions(reductions, counts, shifts, flats[0].device, squares)


def split_summary(packed: torch.Tensor) -> dict[str, torch.Tensor]:
    """Packed summaries [T, 8 + bins + 2] as per-field tensors [T] and [T, bins + 2]."""
    out = {name: packed[:, i] for i, name in enumerate(COLUMNS)}
    out["hist"] = packed[:, HIST:]
    return out


# -- the one device-to-host transfer of a record step -------------------------------------------


def to_host(parts: dict) -> tuple[dict, dict]:
    """Move the tensors of a record step to the host: one copy per device (one on a GPU run).

    ``parts`` maps an owner (a probe, a scalar, any hashable key) to a tensor or a dict of
    tensors (numpy arrays and numbers pass through as they are). Every tensor is cast to
    float64 on its device, the tensors of one device concatenated into one buffer, copied
    once — the single device-host synchronisation of a record step — and split again.

    Returns ``(host, failed)``: ``host`` has the same shape as ``parts`` with numpy arrays;
    ``failed`` maps each owner whose tensors could not be moved (a tensor on a meta device, a
    complex dtype, an exception) to the exception. Only then is each owner of the failing
    device moved on its own to find the culprits, so one bad owner never costs the others.
    """
    leaves: dict = {}  # (owner, field or None) -> tensor
    host: dict = {}
    failed: dict = {}
    for owner, value in parts.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        try:
            for field_name, tensor in items:
                if isinstance(tensor, torch.Tensor):
                    if tensor.is_complex() or tensor.is_sparse:
                        raise TypeError(
                            f"cannot record a {'complex' if tensor.is_complex() else 'sparse'} tensor "
                            f"({field_name or owner})"
                        )
                    leaves[(owner, field_name)] = tensor
        except TypeError as exc:
            failed[owner] = exc
    by_device: dict = {}
    for key, tensor in leaves.items():
        if key[0] not in failed:
            by_device.setdefault(tensor.device, []).append(key)
    arrays = {}
    for device, keys in by_device.items():
        try:
            arrays.update(_copy_to_host({k: leaves[k] for k in keys}))
        except Exception:  # find the owners that fail, keep the others (rare: a bug in a probe)
            for owner in dict.fromkeys(k[0] for k in keys):
                try:
                    arrays.update(_copy_to_host({k: leaves[k] for k in keys if k[0] == owner}))
                except Exception as exc:
                    failed[owner] = exc
    for owner, value in parts.items():
        if owner in failed:
            continue
        # a moved tensor's array, else the value itself (numpy or a number): never np.asarray
        # of a tensor, which would fail for one on a GPU (and a .get default is always evaluated)
        if isinstance(value, dict):
            host[owner] = {
                f: arrays[(owner, f)] if (owner, f) in arrays else _as_array(v) for f, v in value.items()
            }
        else:
            host[owner] = arrays[(owner, None)] if (owner, None) in arrays else _as_array(value)
    return host, failed


def _copy_to_host(tensors: dict) -> dict:
    keys = list(tensors)
    with torch.no_grad():  # column views go into the concatenation as they are: no copy each
        parts = [_flat_float64(tensors[k]) for k in keys]
        flat = (torch.cat(parts) if len(parts) > 1 else parts[0]).cpu().numpy()  # <- the device-host sync
    out, offset = {}, 0
    for key, part in zip(keys, parts):
        size = part.numel()
        out[key] = flat[offset : offset + size].reshape(tuple(tensors[key].shape))
        offset += size
    return out


def _flat_float64(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.dtype != torch.float64:
        tensor = tensor.double()
    return tensor if tensor.dim() == 1 else tensor.reshape(-1)


def _as_array(value):
    import numpy as np

    return value if isinstance(value, np.ndarray) else np.asarray(value, dtype=np.float64)
