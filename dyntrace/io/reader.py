"""Reading a run file: ``dyntrace.open_run(path)`` → :class:`Run`.

Read-only, torch-free, and safe while the run is still being written: a Run is a snapshot
of the committed records present when it was opened (SWMR), so every read agrees with every
other; :meth:`Run.refresh` moves the snapshot forward. Raw additive summaries are turned
into means, stds and fractions here.

A damaged or inconsistent file is an error (:class:`dyntrace.errors.RunFileError`, one line
naming the file and what is wrong), never a hang and never a figure of wrong numbers: the
file is validated before it is read (:func:`dyntrace.io.format.open_validated`), each
snapshot's rows are checked (:func:`dyntrace.io.format.read_rows`), and every later read
turns what h5py or numpy raise into that error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from dyntrace import stats
from dyntrace.errors import MissingDataError
from dyntrace.io import format as fmt

__all__ = ["open_run", "Run", "Histogram", "STATS"]

#: The statistics of every summary probe (a probe may declare more: ``Run.stats(probe)``).
STATS = tuple(stats.BASE)


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
    """A read-only view of one run file. Use as a context manager or call :meth:`close`.

    Opening validates the file (:func:`dyntrace.io.format.open_validated`); every later read
    that fails (a damaged chunk, say) raises :class:`dyntrace.errors.RunFileError` naming the
    file and what could not be read.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._file, self._layout = fmt.open_validated(self.path)
        try:
            self.refresh()
        except BaseException:
            self._file.close()
            raise

    def refresh(self) -> "Run":
        """See what a writer appended since the file was opened (or last refreshed)."""
        # Arrays read in this snapshot (never dataset handles: a second handle on a dataset
        # that refresh() touches breaks SWMR reads).
        self._cache: dict = {}
        self._rows = fmt.read_rows(self._file, self._layout)
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
        return dict(self._layout.meta)

    @property
    def config(self) -> dict:
        return dict(self._layout.meta.get("config") or {})

    @property
    def closed_cleanly(self) -> bool:
        """False while the run is being written, if the writing process died, or if a write
        failure (a full disk) stopped the recording early."""
        return self._rows.closed == fmt.CLOSED_CLEANLY

    @property
    def status(self) -> str:
        """ "closed", "open or interrupted" (being written, or its process died) or
        "stopped early" (a write failed; the file holds what was written before)."""
        return {fmt.CLOSED_CLEANLY: "closed", fmt.CLOSED_STOPPED: "stopped early"}.get(
            self._rows.closed, "open or interrupted"
        )

    @property
    def notes(self) -> list[str]:
        """What the reader noticed and worked around (e.g. a half-written last row of an old file)."""
        return [*self._layout.notes, *self._rows.notes]

    # -- scalars ---------------------------------------------------------------------------

    @property
    def scalar_names(self) -> list[str]:
        return list(self._rows.scalar_names)

    def scalar(self, name: str):
        """(steps, values) of a logged scalar, in step order: every step it was logged."""
        names = self._rows.scalar_names
        if name not in names:
            raise MissingDataError(
                f"{self.path}: no scalar {name!r} (has: {', '.join(names) or 'none'}); "
                "scalars are logged with rec.log(...) or by the 'scalars' probe"
            )
        rows = self._rows
        mask = rows.scalar_key == names.index(name)
        steps, values = rows.scalar_step[mask], rows.scalar_value[mask]
        order = np.argsort(steps, kind="stable")
        return steps[order], values[order]

    @property
    def n_steps(self) -> int:
        """The last step anything was logged or recorded at."""
        last = int(self._rows.scalar_step.max()) if self._rows.scalar_step.size else 0
        rec = self.record_steps
        return max(last, int(rec[-1]) if rec.size else 0)

    # -- probes ----------------------------------------------------------------------------

    @property
    def probes(self) -> list[str]:
        return list(self._layout.probes)

    def names(self, probe: str) -> list[str]:
        """The tensors (columns) of ``probe``: module or parameter names. For activations, a
        functional call site reads ``<module path>/<function>#<call>``, an RNN's final hidden
        state ``<path>/h_n``; columns reserved for call sites and not taken are left out."""
        return list(self._columns(probe)[0])

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
        names, kinds = self._columns(probe)
        return dict(zip(names, kinds)) if kinds is not None else {}

    def unit_axes(self, probe: str) -> dict[str, int]:
        """The unit axis of each tensor of ``probe`` where recorded (activations), counted from
        the end: −1 is the last dim (features of (N, C) or (N, T, C)), −3 the channels of
        (N, C, H, W), −2 those of (N, C, L)."""
        if "unit_axis" not in self._probe(probe).fields:
            return {}
        names = self.names(probe)
        axes = self._cached(fmt.PROBES, probe, "unit_axis")[: len(names)]
        return {n: int(a) for n, a in zip(names, axes) if a < 0}

    def roles(self, probe: str | None = None) -> dict[str, str]:
        """Role of each parameter: "trainable", "frozen", "not_stepped" (not in the recorded
        optimizer) or "sparse" (see :meth:`dyntrace.probes.RecordContext.param_roles`); read
        from ``probe`` (default: the first parameter probe). Files without roles: all trainable."""
        probes = (
            [probe]
            if probe is not None
            else [p for p in ("gradients", "weights", "steps", "adaptive") if p in self.probes]
        )
        for name in probes:
            spec = self._probe(name)
            if "role" in spec.labels:
                return dict(zip(self.names(name), spec.labels["role"]))
        return {name: "trainable" for name in self.params}

    def steps(self, probe: str) -> np.ndarray:
        """Record steps of one probe (complete records only)."""
        self._probe(probe)
        return self._rows.probe_steps[probe]

    @property
    def record_steps(self) -> np.ndarray:
        """Steps at which any probe recorded."""
        steps = [self.steps(p) for p in self.probes]
        return np.unique(np.concatenate(steps)) if steps else np.zeros(0, dtype=np.int64)

    def fields(self, probe: str) -> list[str]:
        spec = self._probe(probe)
        return sorted([*spec.fields, *(k for k in spec.labels if k not in ("kind", "role"))])

    def field(self, probe: str, field: str, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(steps, raw values) of one stored field: [R, T, ...], or one tensor's column [R, ...].

        Per-record fields of one value per tensor are read once per snapshot and sliced in
        memory (every chunk holds all columns); histograms are read per column.
        """
        spec = self._probe(probe)
        if field not in spec.fields:
            raise MissingDataError(
                f"{self.path}: probe {probe!r} has no field {field!r} (has: {', '.join(self.fields(probe))})"
            )
        steps = self.steps(probe)
        column = self._column(probe, name) if name is not None else slice(0, len(self._columns(probe)[0]))
        info = spec.fields[field]
        if info.static:
            return steps, self._cached(fmt.PROBES, probe, field)[column]
        if info.ndim <= 2:
            return steps, self._cached(fmt.PROBES, probe, field, rows=len(steps))[:, column]
        where = f"{fmt.PROBES}/{probe}/{field}"
        with fmt.reading(self.path, f"/{where}"):
            return steps, self._ds(where)[: len(steps), column]

    def verify(self) -> "Run":
        """Read every value of this snapshot once: a damaged chunk anywhere in the file raises
        :class:`dyntrace.errors.RunFileError` now (the commands call it before they report)."""
        fmt.verify(self._file, self._layout, self._rows)
        return self

    def rows(self, probe: str, field: str, start: int, stop: int, columns=None) -> np.ndarray:
        """Rows ``[start, stop)`` of a per-record field, for some columns (in the order given)
        or all: one read straight from the file, not cached (for blocks of a long run's
        histograms, too big to read whole and too slow to read a column at a time)."""
        spec = self._probe(probe)
        if field not in spec.fields or spec.fields[field].static:
            raise MissingDataError(f"{self.path}: probe {probe!r} has no per-record field {field!r}")
        stop = min(stop, len(self.steps(probe)))  # committed rows only
        where = f"{fmt.PROBES}/{probe}/{field}"
        with fmt.reading(self.path, f"/{where}"):
            ds = self._ds(where)
            if columns is None:
                return ds[start:stop]
            columns = np.asarray(columns, dtype=np.int64)
            picked = sorted(set(columns.tolist()))  # h5py reads increasing columns
            if len(picked) < ds.shape[1]:
                return ds[start:stop, picked][:, np.searchsorted(picked, columns)]
            return ds[start:stop][:, columns]

    def probe_attrs(self, probe: str) -> dict:
        """The attributes of a probe's group (``hist_scale``, ``nonfinite_scope``, ``options`` …)."""
        return dict(self._probe(probe).attrs)

    def stats(self, probe: str) -> list[str]:
        """The statistics :meth:`stat` computes for a probe: :data:`dyntrace.stats.BASE` and
        those the probe declared in its layout (``frac_dead``, ``frac_saturated`` …)."""
        return list({**stats.BASE, **self._probe(probe).stats})

    def stat(self, probe: str, name: str | None, stat: str):
        """(steps, values) of a derived statistic of one tensor, or of every tensor at once.

        ``stat``: one of :meth:`stats`: mean, std, min, max, norm (√Σx²), count, sum, sumsq,
        frac_zero, frac_nonfinite for every summary probe, and the probe's own (activations:
        frac_saturated, frac_dead, frac_dead_persistent, dead, units). ``name`` None gives
        values [R, T] in the order of ``names(probe)``. Records with no elements give NaN.
        """
        table = {**stats.BASE, **self._probe(probe).stats}
        if stat not in table:
            raise ValueError(f"unknown stat {stat!r} for probe {probe!r}; valid: {', '.join(table)}")
        steps, count = self.field(probe, "count", name)
        shape = count[: len(steps)].shape

        def raw(field):
            values = self.field(probe, field, name)[1]
            if not self._probe(probe).fields[field].static:
                values = values[: len(steps)]
            return np.broadcast_to(np.asarray(values, dtype=np.float64), shape)

        return steps, np.array(table[stat](raw), dtype=np.float64)

    def hist(self, probe: str, name: str) -> Histogram:
        """The histogram of one tensor over record steps (``steps, edges, counts = run.hist(...)``)."""
        steps, counts = self.field(probe, "hist", name)
        _, edges = self.field(probe, "edges", name)
        if (
            self._probe(probe).attrs.get("hist_range") == "per_record"
        ):  # edges are fractions of each record's range
            lo = np.asarray(self.field(probe, "hist_lo", name)[1][: len(steps)], dtype=np.float64)
            hi = np.asarray(self.field(probe, "hist_hi", name)[1][: len(steps)], dtype=np.float64)
            edges = lo[:, None] + (hi - lo)[:, None] * np.asarray(edges, dtype=np.float64)[None, :]
        _, sampled = self.field(probe, "hist_count", name)
        zeros = (
            self.field(probe, "zero", name)[1]
            if "zero" in self._probe(probe).fields
            else np.zeros(len(steps))
        )
        scale = self._probe(probe).attrs.get("hist_scale", "value")
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
        if self._layout.trajectory is None:
            raise MissingDataError(
                f"{self.path}: no parameter trajectory; record with Recorder(..., trajectory=N)"
            )
        steps = self._rows.trajectory_steps
        with fmt.reading(self.path, f"/{fmt.TRAJECTORY}/params"):
            params = self._ds(f"{fmt.TRAJECTORY}/params")[: len(steps)].astype(np.float32)
        return steps, list(self._layout.trajectory["names"]), params

    def trajectory_sizes(self) -> np.ndarray:
        """Elements of each parameter in the flat vector of :meth:`trajectory`, in its order."""
        if self._layout.trajectory is None:
            raise MissingDataError(
                f"{self.path}: no parameter trajectory; record with Recorder(..., trajectory=N)"
            )
        return np.array(self._layout.trajectory["sizes"], dtype=np.int64)

    # -- landscapes ------------------------------------------------------------------------

    @property
    def landscape_names(self) -> list[str]:
        return list(self._layout.landscapes)

    def landscape(self, name: str):
        """A stored landscape as a :class:`~dyntrace.landscape.results.PlaneResult` (2-D) or
        :class:`~dyntrace.landscape.results.LineResult` (1-D); its ``meta`` holds the attributes."""
        from dyntrace.landscape.results import LineResult, PlaneResult

        if name not in self.landscape_names:
            raise MissingDataError(
                f"{self.path}: no landscape {name!r} (has: {', '.join(self.landscape_names) or 'none'}); "
                "compute one with `dyntrace landscape` or `dyntrace train --landscape`"
            )
        with fmt.reading(self.path, f"/{fmt.LANDSCAPE}/{name}"):
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
            "status": self.status,
            "steps": self.n_steps,
            "skipped_steps": int(len(self.scalar("skipped")[0]))
            if "skipped" in self._rows.scalar_names
            else 0,
            "records": int(len(self.record_steps)),
            "schedule": meta.get("schedule"),
            "model": meta.get("model_class"),
            "n_parameters": meta.get("n_parameters"),
            "optimizer": meta["optimizer"].get("class") if isinstance(meta.get("optimizer"), dict) else None,
            "scalars": self.scalar_names,
            "probes": {
                p: {
                    "records": int(len(self.steps(p))),
                    "tensors": len(self.names(p)),
                    "fields": self.fields(p),
                }
                for p in self.probes
            },
            "layers": self.layers,
            "params": self.params,
            "landscapes": self.landscape_names,
            "config": self.config,
            "notes": self.notes,
        }

    # -- internals -------------------------------------------------------------------------

    def _probe(self, probe: str) -> "fmt.Probe":
        if probe not in self._layout.probes:
            raise MissingDataError(
                f"{self.path}: no {probe!r} probe data (has: {', '.join(self.probes) or 'none'}); "
                f"record it with Recorder(..., probes=[..., {probe!r}])"
            )
        return self._layout.probes[probe]

    def _group(self, probe: str):
        """The h5py group of a validated probe (for tests and tools; reads through it are not
        turned into RunFileError: prefer the public methods)."""
        self._probe(probe)
        return self._file[fmt.PROBES][probe]

    def _columns(self, probe: str) -> tuple[list[str], list[str] | None]:
        """(names, kinds) of the columns shown, read once per snapshot. Activations reserve
        ``functional_slots`` columns at the end for call sites found while recording; a taken
        one has a finite static ``site`` (host, function, call) naming it, taken in order, so
        the columns shown are always the first ones."""
        key = ("columns", probe)
        if key not in self._cache:
            spec = self._probe(probe)
            names = list(spec.names)
            kinds = list(spec.labels["kind"]) if "kind" in spec.labels else None
            slots = spec.attrs.get("functional_slots", 0)
            if slots and "site" in spec.fields:
                hosts, functions = (
                    spec.attrs.get("functional_hosts", []),
                    spec.attrs.get("functional_kinds", []),
                )
                site = self._cached(fmt.PROBES, probe, "site")
                with fmt.reading(self.path, f"/{fmt.PROBES}/{probe}: functional call sites"):
                    if (
                        not isinstance(slots, int)
                        or not 0 <= slots <= len(names)
                        or site.ndim != 2
                        or site.shape[1] != 3
                    ):
                        raise ValueError(f"{slots!r} reserved columns, site {site.shape}")
                    shown = len(names) - slots
                    for j in range(shown, len(names)):
                        if not np.isfinite(site[j]).all():
                            break
                        host, function, call = (int(v) for v in site[j])
                        path, kind = hosts[host], functions[function]
                        names[j] = f"{path}/{kind}#{call}" if path else f"{kind}#{call}"
                        if kinds is not None:
                            kinds[j] = kind
                        shown = j + 1
                names = names[:shown]
                kinds = kinds[:shown] if kinds is not None else None
            self._cache[key] = (names, kinds)
        return self._cache[key]

    def _column(self, probe: str, name: str) -> int:
        names = self.names(probe)
        if name not in names:
            raise MissingDataError(f"{self.path}: {probe} has no tensor {name!r} (has: {', '.join(names)})")
        return names.index(name)

    def _ds(self, *path: str):
        where = "/".join(path)
        ds = self._file[where]
        if self._layout.open_for_write:  # SWMR: see what the writer flushed since the last refresh
            ds.refresh()
        return ds

    def _cached(self, *path, rows: int | None = None) -> np.ndarray:
        """A whole dataset (its first ``rows`` rows), read once per snapshot."""
        key = "/".join(path)
        if key not in self._cache:
            with fmt.reading(self.path, f"/{key}"):
                ds = self._ds(key)
                self._cache[key] = ds[:rows] if rows is not None else ds[()]
        return self._cache[key]
