"""Reading for figures: per-layer statistics of all layers at once, and histograms by time
window, read in bounded blocks so a run of 10⁴ records × 100 layers plots in seconds.

The reader's per-tensor calls (``run.stat(probe, name, …)``, ``run.hist(probe, name)``) read
one column of a dataset whose chunks hold every column, so each call decompresses the whole
field; a figure over 100 layers would decompress it 100 times. Here each field is read once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dyntrace.analysis import fraction, merge_windows, rebin
from dyntrace.errors import MissingDataError

__all__ = [
    "layer_stat",
    "forward_order",
    "pick_evenly",
    "HistWindows",
    "hist_windows",
    "hist_rows",
    "missing",
    "scalar_or_none",
]

# A block of histogram rows read at a time: bounded memory whatever the run's length.
_BLOCK_BYTES = 64 << 20


def missing(run, what: str, how: str) -> MissingDataError:
    """A MissingDataError naming the file, the missing series and what records it."""
    return MissingDataError(f"{run.path}: no {what}; {how}")


def scalar_or_none(run, name: str):
    """(steps, values) of a scalar, or None if the run did not log it."""
    if name not in run.scalar_names:
        return None
    return run.scalar(name)


def layer_stat(run, probe: str, stat: str):
    """(steps (R,), names (T,), values (R, T)) of one derived statistic for every tensor, the
    tensors in forward order (:func:`forward_order`).

    The arithmetic is the reader's (:meth:`dyntrace.io.reader.Run.stat` with ``name=None``);
    this only refuses a file without records yet, rather than drawing empty axes.
    """
    steps, values = run.stat(probe, None, stat)
    if len(steps) == 0:
        raise missing(run, f"{probe!r} records yet", f"the {probe!r} probe writes one row per record step")
    names = run.names(probe)
    order = _forward_index(run, probe, len(names))
    return steps, [names[i] for i in order], values[:, order]


def _forward_index(run, probe: str, n: int) -> list[int]:
    if "order" not in run.fields(probe):
        return list(range(n))
    first_seen = np.asarray(run.field(probe, "order")[1], dtype=np.float64)[:n]
    return [int(i) for i in np.argsort(np.where(np.isfinite(first_seen), first_seen, np.inf), kind="stable")]


def forward_order(run, probe: str) -> list[str]:
    """The tensors of ``probe`` in the order the forward pass computes them: activations store
    when each column's output was first seen (a functional call site, whose column comes after
    every module's, takes its place among them); other probes keep the file's order."""
    names = run.names(probe)
    return [names[i] for i in _forward_index(run, probe, len(names))]


def pick_evenly(n: int, max_n: int) -> list[int]:
    """At most ``max_n`` indices of 0..n−1, evenly spread, the first and the last included."""
    if n <= max_n:
        return list(range(n))
    if max_n == 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (max_n - 1)) for i in range(max_n)})


@dataclass
class HistWindows:
    """Histograms of some tensors merged over windows of consecutive records.

    ``start``/``stop`` (W,): the step of the first record of each window and where the next
    window starts (the last window ends one record spacing after its last record);
    ``edges`` (n, B+1) per tensor; ``counts`` (W, n, B) in-range counts; ``sampled`` (W, n)
    elements binned (so ``counts / sampled`` is the fraction of values per bin);
    ``records`` the number of records merged into a window.
    """

    names: list
    start: np.ndarray
    stop: np.ndarray
    edges: np.ndarray
    counts: np.ndarray
    sampled: np.ndarray
    records: int
    scale: str

    def density(self) -> np.ndarray:
        """Fraction of the binned values in each bin, (W, n, B); NaN for empty windows."""
        return fraction(self.counts, self.sampled[..., None])


def _columns(run, probe, names):
    all_names = run.names(probe)
    missing_names = [n for n in names if n not in all_names]
    if missing_names:
        raise MissingDataError(
            f"{run.path}: {probe} has no tensor {missing_names[0]!r} (has: {', '.join(all_names)})"
        )
    return [all_names.index(n) for n in names]


def hist_rows(run, probe: str, field: str, start: int, stop: int, columns: list[int]) -> np.ndarray:
    """Rows [start, stop) of a per-record field for some columns (sorted), one read.

    The reader reads a field whole (``Run.field``) or one column of it (``Run.hist``), neither
    of which suits a histogram field of a long run (GBs, or one full decompression per
    column); so this reads a block through the reader's dataset handle.
    """
    return run.rows(probe, field, start, stop, columns)


def _record_ranges(run, probe, cols, n):
    """(lo, hi), each (n, len(cols)), for a probe whose histogram range follows the data."""
    if run.probe_attrs(probe).get("hist_range") != "per_record":
        return None
    lo = np.asarray(run.field(probe, "hist_lo")[1][:n], dtype=np.float64)[:, cols]
    hi = np.asarray(run.field(probe, "hist_hi")[1][:n], dtype=np.float64)[:, cols]
    return lo, hi


def _common_grid(lo, hi, bins: int, max_factor: int = 4):
    """Edges (len(cols), C + 1) covering every record's range of each column: C = ``bins``
    times the ratio of the widest to the narrowest range (at most ``max_factor``), so the
    narrow early records keep about their own resolution."""
    width = np.where(np.isfinite(hi - lo) & (hi > lo), hi - lo, np.nan)
    ratio = (
        np.nanmax(width, axis=0) / np.nanmin(width, axis=0)
        if np.isfinite(width).any()
        else np.ones(lo.shape[1])
    )
    factor = int(min(max_factor, max(1, math.ceil(np.nanmax(np.where(np.isfinite(ratio), ratio, 1.0))))))
    low = np.where(
        np.isfinite(lo).any(axis=0), np.nanmin(np.where(np.isfinite(lo), lo, np.nan), axis=0), -1.0
    )
    high = np.where(
        np.isfinite(hi).any(axis=0), np.nanmax(np.where(np.isfinite(hi), hi, np.nan), axis=0), 1.0
    )
    return np.linspace(low, high, bins * factor + 1, axis=1)


def hist_windows(run, probe: str, names: list[str], *, max_windows: int = 400) -> HistWindows:
    """Histograms of ``names`` (of ``probe``) merged into at most ``max_windows`` time windows.

    Counts of consecutive records are summed (the additive rule of
    :func:`dyntrace.analysis.merge_windows`), so a window shows everything its records binned.
    """
    cols = _columns(run, probe, names)
    steps = run.steps(probe)
    _, all_edges = run.field(probe, "edges")
    n = len(steps)  # the reader's committed records: every field holds them
    if n == 0:
        raise missing(run, f"{probe!r} records yet", f"the {probe!r} probe writes one row per record step")
    steps = steps[:n]
    size = max(1, math.ceil(n / max_windows))
    bins = len(all_edges[0]) + 1 if len(all_edges) else 0  # the under- and overflow besides the bins
    edges = np.asarray(all_edges, dtype=np.float64)[cols]
    ranges = _record_ranges(run, probe, cols, n)
    if ranges is not None:  # one range per record (weights): re-bin every record onto one grid
        unit, (lo, hi) = edges, ranges
        edges = _common_grid(lo, hi, bins - 2)
    rows_per_block = max(size, (_BLOCK_BYTES // max(1, len(cols) * bins * 8)) // size * size)
    counts, sampled = [], []
    for first in range(0, n, rows_per_block):
        last = min(first + rows_per_block, n)
        hist = hist_rows(run, probe, "hist", first, last, cols)[:, :, 1:-1]
        count = hist_rows(run, probe, "hist_count", first, last, cols)
        if ranges is not None:
            own = lo[first:last, :, None] + (hi - lo)[first:last, :, None] * unit[None]
            hist = np.stack([rebin(hist[:, j], own[:, j], edges[j]) for j in range(len(cols))], axis=1)
        _, merged = merge_windows(steps[first:last], {"hist": hist, "hist_count": count}, size)
        counts.append(merged["hist"])
        sampled.append(merged["hist_count"])
    start = steps[::size]
    spacing = steps[-1] - steps[-2] if n > 1 else 1
    stop = np.append(start[1:], steps[-1] + spacing)
    scale = run.probe_attrs(probe).get("hist_scale", "value")
    return HistWindows(
        names=list(names),
        start=start,
        stop=stop,
        edges=edges,
        counts=np.concatenate(counts),
        sampled=np.concatenate(sampled),
        records=size,
        scale=scale.decode() if isinstance(scale, bytes) else str(scale),
    )
