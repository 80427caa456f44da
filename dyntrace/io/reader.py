"""Reading a run file: ``dyntrace.open_run(path)`` → :class:`Run`.

Read-only, torch-free, and safe while the run is still being written: a Run is a snapshot
of the complete records present when it was opened (SWMR), so every read agrees with every
other; :meth:`Run.refresh` moves the snapshot forward. Raw additive summaries are turned
into means, stds and fractions here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from dyntrace.errors import MissingDataError
from dyntrace.io import format as fmt

__all__ = ["open_run", "Run", "Histogram", "STATS"]

STATS = (
    "mean", "std", "min", "max", "norm", "count", "sum", "sumsq", "frac_zero",
    "frac_saturated", "frac_dead", "frac_dead_persistent", "frac_nonfinite", "dead", "units",
)


@dataclass
class Histogram:
    """Binned counts of one tensor over record steps. Unpacks as ``steps, edges, counts``.

    ``edges`` are [B + 1], or [R, B + 1] for a probe whose range follows the data (the
    weights: one range per record, see ``hist_lo``/``hist_hi``).
    ``counts`` [R, B] are the in-range bins; ``underflow``/``overflow`` [R] the values past
    the edges (zeros of a magnitude histogram are in neither; see ``zeros``); ``sampled``
    [R] how many elements were binned (all of them unless the tensor was larger than the
    probe's ``hist_sample``).
    """

    steps: np.ndarray
    edges: np.ndarray
    counts: np.ndarray
    underflow: np.ndarray
    overflow: np.ndarray
    sampled: np.ndarray
    zeros: np.ndarray
    scale: str

    def __iter__(self):
        return iter((self.steps, self.edges, self.counts))


def open_run(path) -> "Run":
    """Open a run file for reading; raises :class:`dyntrace.errors.RunFileError` on bad input."""
    return Run(path)


class Run:
    """A read-only view of one run file. Use as a context manager or call :meth:`close`."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._file = fmt.open_validated(self.path)
        self.refresh()

    def refresh(self) -> "Run":
        """See what a writer appended since the file was opened (or last refreshed)."""
        # Arrays read in this snapshot (never dataset handles: a second handle on a dataset
        # that refresh() touches breaks SWMR reads).
        self._cache: dict = {}
        self._records = {}
        if fmt.PROBES in self._file:
            for probe, group in self._file[fmt.PROBES].items():
                group["step"].refresh()
                self._records[probe] = group["step"].shape[0]
        lengths = []
        for name in ("step", "key", "value"):
            ds = self._file[fmt.SCALARS][name]
            ds.refresh()
            lengths.append(ds.shape[0])
        self._scalar_rows = min(lengths)
        names = self._file[fmt.SCALARS]["names"]
        names.refresh()
        self._scalar_names = fmt.decode(names[:])
        return self

    # -- lifecycle -------------------------------------------------------------------------

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<dyntrace.Run {self.path!r}: {self.n_steps} steps, {len(self.record_steps)} records>"

    # -- what the run was ------------------------------------------------------------------

    @property
    def meta(self) -> dict:
        """Root attributes, JSON fields decoded."""
        return fmt.decode_attrs(self._file.attrs)

    @property
    def config(self) -> dict:
        return json.loads(self._file.attrs.get("config", "{}"))

    @property
    def closed_cleanly(self) -> bool:
        """False while the run is being written, or if the writing process died."""
        ds = self._ds(fmt.CLOSED)
        return bool(ds[0])

    # -- scalars ---------------------------------------------------------------------------

    @property
    def scalar_names(self) -> list[str]:
        return list(self._scalar_names)

    def scalar(self, name: str):
        """(steps, values) of a logged scalar, in step order: every step it was logged."""
        names = self.scalar_names
        if name not in names:
            raise MissingDataError(
                f"{self.path}: no scalar {name!r} (has: {', '.join(names) or 'none'}); "
                "scalars are logged with rec.log(...) or by the 'scalars' probe"
            )
        key = names.index(name)
        all_steps, keys, all_values = (self._cached(fmt.SCALARS, n, rows=self._scalar_rows) for n in ("step", "key", "value"))
        mask = keys == key
        steps, values = all_steps[mask], all_values[mask]
        order = np.argsort(steps, kind="stable")
        return steps[order], values[order]

    @property
    def n_steps(self) -> int:
        """The last step anything was logged or recorded at."""
        last = int(self._cached(fmt.SCALARS, "step", rows=self._scalar_rows).max()) if self._scalar_rows else 0
        rec = self.record_steps
        return max(last, int(rec[-1]) if rec.size else 0)

    # -- probes ----------------------------------------------------------------------------

    @property
    def probes(self) -> list[str]:
        return list(self._file[fmt.PROBES]) if fmt.PROBES in self._file else []

    def names(self, probe: str) -> list[str]:
        return fmt.decode(self._group(probe)["names"][:])

    @property
    def layers(self) -> list[str]:
        return self.names("activations") if "activations" in self.probes else []

    @property
    def params(self) -> list[str]:
        for probe in ("gradients", "weights"):
            if probe in self.probes:
                return self.names(probe)
        return []

    def kinds(self, probe: str) -> dict[str, str]:
        """Module kind of each tensor of ``probe`` ('relu', 'sigmoid', …), where recorded."""
        group = self._group(probe)
        if "kind" not in group:
            return {}
        return dict(zip(self.names(probe), fmt.decode(group["kind"][:])))

    def roles(self, probe: str | None = None) -> dict[str, str]:
        """Role of each parameter: "trainable", "frozen", "not_stepped" (not in the recorded
        optimizer) or "sparse" (see :meth:`dyntrace.probes.RecordContext.param_roles`); read
        from ``probe`` (default: the first parameter probe). Files without roles: all trainable."""
        probes = [probe] if probe is not None else [p for p in ("gradients", "weights", "steps", "adaptive") if p in self.probes]
        for name in probes:
            group = self._group(name)
            if "role" in group:
                return dict(zip(self.names(name), fmt.decode(group["role"][:])))
        return {name: "trainable" for name in self.params}

    def steps(self, probe: str) -> np.ndarray:
        """Record steps of one probe (complete records only)."""
        self._group(probe)
        return self._cached(fmt.PROBES, probe, "step", rows=self._records.get(probe, 0))

    @property
    def record_steps(self) -> np.ndarray:
        """Steps at which any probe recorded."""
        steps = [self.steps(p) for p in self.probes]
        return np.unique(np.concatenate(steps)) if steps else np.zeros(0, dtype=np.int64)

    def fields(self, probe: str) -> list[str]:
        group = self._group(probe)
        return [k for k in group if k not in ("names", "step", "kind", "role")]

    def field(self, probe: str, field: str, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(steps, raw values) of one stored field: [R, T, ...], or one tensor's column [R, ...].

        Per-record fields of one value per tensor are read once per snapshot and sliced in
        memory (every chunk holds all columns); histograms are read per column.
        """
        group = self._group(probe)
        if field not in group:
            raise MissingDataError(f"{self.path}: probe {probe!r} has no field {field!r} (has: {', '.join(self.fields(probe))})")
        steps = self.steps(probe)
        column = self._column(probe, name) if name is not None else slice(None)
        ds = group[field]
        static, ndim = bool(ds.attrs.get("static", False)), ds.ndim
        del ds  # no second handle may be open while _cached refreshes the dataset (SWMR)
        if static:
            return steps, self._cached(fmt.PROBES, probe, field)[column]
        if ndim <= 2:
            return steps, self._cached(fmt.PROBES, probe, field, rows=len(steps))[:, column]
        return steps, self._ds(fmt.PROBES, probe, field)[: len(steps), column]

    def stat(self, probe: str, name: str | None, stat: str):
        """(steps, values) of a derived statistic of one tensor, or of every tensor at once.

        ``stat``: mean, std, min, max, norm (√Σx²), count, sum, sumsq, frac_zero,
        frac_saturated, frac_dead, frac_dead_persistent, frac_nonfinite, dead, units.
        ``name`` None gives values [R, T] in the order of ``names(probe)``. Records with no
        elements give NaN.
        """
        if stat not in STATS:
            raise ValueError(f"unknown stat {stat!r}; valid: {', '.join(STATS)}")
        steps, count = self.field(probe, "count", name)
        count = count.astype(np.float64)
        safe = np.where(count > 0, count, np.nan)

        def raw(field):
            return self.field(probe, field, name)[1][: len(steps)].astype(np.float64)

        if stat in ("count", "sum", "sumsq", "dead"):
            return steps, raw(stat)
        if stat == "mean":
            return steps, raw("sum") / safe
        if stat == "std":
            mean = raw("sum") / safe
            return steps, np.sqrt(np.maximum(raw("sumsq") / safe - mean**2, 0.0))
        if stat in ("min", "max"):
            return steps, np.where(count > 0, raw(stat), np.nan)
        if stat == "norm":
            return steps, np.sqrt(raw("sumsq"))
        if stat == "frac_zero":  # zeros are counted in the histogram sample
            return steps, raw("zero") / _positive(raw("hist_count"))
        if stat == "frac_saturated":
            return steps, raw("saturated") / _positive(raw("hist_count"))
        if stat in ("units", "frac_dead", "frac_dead_persistent"):
            units = self.field(probe, "units", name)[1].astype(np.float64)
            if stat == "units":
                return steps, np.broadcast_to(units, count.shape).copy()
            dead = raw("dead" if stat == "frac_dead" else "dead_persistent")
            return steps, dead / _positive(units)
        # frac_nonfinite: counted in the histogram sample, or exactly over the whole tensor
        nonfinite = raw("nonfinite")
        if self._group(probe).attrs.get("nonfinite_scope", "sample") == "tensor":
            return steps, nonfinite / _positive(count + nonfinite)
        return steps, nonfinite / _positive(raw("hist_count"))

    def hist(self, probe: str, name: str) -> Histogram:
        """The histogram of one tensor over record steps (``steps, edges, counts = run.hist(...)``)."""
        steps, counts = self.field(probe, "hist", name)
        _, edges = self.field(probe, "edges", name)
        if _attr(self._group(probe), "hist_range") == "per_record":  # edges are fractions of each record's range
            lo = np.asarray(self.field(probe, "hist_lo", name)[1][: len(steps)], dtype=np.float64)
            hi = np.asarray(self.field(probe, "hist_hi", name)[1][: len(steps)], dtype=np.float64)
            edges = lo[:, None] + (hi - lo)[:, None] * np.asarray(edges, dtype=np.float64)[None, :]
        _, sampled = self.field(probe, "hist_count", name)
        zeros = self.field(probe, "zero", name)[1] if "zero" in self._group(probe) else np.zeros(len(steps))
        scale = self._group(probe).attrs.get("hist_scale", "value")
        return Histogram(
            steps=steps,
            edges=np.asarray(edges, dtype=np.float64),
            counts=counts[:, 1:-1],
            underflow=counts[:, 0],
            overflow=counts[:, -1],
            sampled=sampled[: len(steps)],
            zeros=zeros[: len(steps)],
            scale=scale.decode() if isinstance(scale, bytes) else str(scale),
        )

    # -- trajectory ------------------------------------------------------------------------

    def trajectory(self):
        """(steps [T], parameter names, flat parameters [T, D]) kept with ``Recorder(trajectory=n)``."""
        if fmt.TRAJECTORY not in self._file:
            raise MissingDataError(f"{self.path}: no parameter trajectory; record with Recorder(..., trajectory=N)")
        steps = self._ds(fmt.TRAJECTORY, "step")[:]
        params = self._ds(fmt.TRAJECTORY, "params")
        n = min(len(steps), params.shape[0])
        names = fmt.decode(self._file[fmt.TRAJECTORY]["names"][:])
        return steps[:n], names, params[:n].astype(np.float32)

    # -- landscapes ------------------------------------------------------------------------

    @property
    def landscape_names(self) -> list[str]:
        return fmt.landscape_names(self._file)

    def landscape(self, name: str):
        """A stored landscape as a :class:`~dyntrace.landscape.results.PlaneResult` (2-D) or
        :class:`~dyntrace.landscape.results.LineResult` (1-D); its ``meta`` holds the attributes."""
        from dyntrace.landscape.results import LineResult, PlaneResult

        if name not in self.landscape_names:
            raise MissingDataError(
                f"{self.path}: no landscape {name!r} (has: {', '.join(self.landscape_names) or 'none'}); "
                "compute one with `dyntrace landscape` or `dyntrace train --landscape`"
            )
        arrays, attrs = fmt.read_landscape(self._file, name)
        cls = PlaneResult if "ycoordinates" in arrays else LineResult
        return cls.from_arrays(arrays, attrs)

    # -- summary ---------------------------------------------------------------------------

    def info(self) -> dict:
        """What the file holds, as plain JSON-able data (for ``dyntrace info``)."""
        meta = self.meta
        return {
            "path": self.path,
            "size_bytes": os.path.getsize(self.path),
            "schema_version": int(meta.get("schema_version", 0)),
            "versions": {k: meta.get(k) for k in ("dyntrace_version", "torch_version", "python_version")},
            "created": meta.get("created"),
            "closed_cleanly": self.closed_cleanly,
            "steps": self.n_steps,
            "skipped_steps": int(len(self.scalar("skipped")[0])) if "skipped" in self._scalar_names else 0,
            "records": int(len(self.record_steps)),
            "schedule": meta.get("schedule"),
            "model": meta.get("model_class"),
            "n_parameters": meta.get("n_parameters"),
            "optimizer": (meta.get("optimizer") or {}).get("class") if isinstance(meta.get("optimizer"), dict) else None,
            "scalars": self.scalar_names,
            "probes": {p: {"records": int(len(self.steps(p))), "tensors": len(self.names(p)), "fields": self.fields(p)} for p in self.probes},
            "layers": self.layers,
            "params": self.params,
            "landscapes": self.landscape_names,
            "config": self.config,
        }

    # -- internals -------------------------------------------------------------------------

    def _group(self, probe: str):
        if fmt.PROBES not in self._file or probe not in self._file[fmt.PROBES]:
            raise MissingDataError(
                f"{self.path}: no {probe!r} probe data (has: {', '.join(self.probes) or 'none'}); "
                f"record it with Recorder(..., probes=[..., {probe!r}])"
            )
        return self._file[fmt.PROBES][probe]

    def _column(self, probe: str, name: str) -> int:
        names = self.names(probe)
        if name not in names:
            raise MissingDataError(f"{self.path}: {probe} has no tensor {name!r} (has: {', '.join(names)})")
        return names.index(name)

    def _ds(self, *path):
        ds = self._file["/".join(path)]
        ds.refresh()
        return ds

    def _cached(self, *path, rows: int | None = None) -> np.ndarray:
        """A whole dataset (its first ``rows`` rows), read once per snapshot."""
        key = "/".join(path)
        if key not in self._cache:
            ds = self._ds(*path)
            self._cache[key] = ds[:rows] if rows is not None else ds[()]
        return self._cache[key]


def _attr(group, key, default=None):
    value = group.attrs.get(key, default)
    return value.decode() if isinstance(value, bytes) else value


def _positive(values):
    values = np.asarray(values, dtype=np.float64)
    return np.where(values > 0, values, np.nan)
