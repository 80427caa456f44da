"""Writes a run file on a background thread behind a bounded queue.

The training thread only enqueues host arrays; HDF5 work (compression, resizing, flushing)
happens here. What arrives between two flushes is written in one batch per dataset, then
the file is flushed: at least every ``flush_every`` seconds and on close, so a killed
process leaves every record up to the last flush.
"""

from __future__ import annotations

import queue
import threading
import time
import warnings
from collections import defaultdict

import numpy as np

from dyntrace.io import format as fmt

__all__ = ["RunWriter"]

_STOP = object()


class RunWriter:
    """Owns the HDF5 file of one run: ``add_*`` from the training thread, ``close`` once.

    A write error is reported once as a warning and the writer stops writing; training
    goes on.
    """

    def __init__(self, path, meta, layouts, *, trajectory=None, flush_every=2.0, queue_size=64):
        self.path = str(path)
        self._file = fmt.create(self.path, meta, layouts, trajectory=trajectory)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._flush_every = flush_every
        self.failed = False
        self._thread = threading.Thread(target=self._run, name="dyntrace-writer", daemon=True)
        self._thread.start()

    # -- the training thread's side: enqueue only ----------------------------------------------

    def add_scalars(self, new_names, steps, keys, values):
        self._put(("scalars", (list(new_names), steps, keys, values)))

    def add_record(self, probe: str, step: int, fields: dict):
        self._put(("record", (probe, step, fields)))

    def add_static(self, probe: str, fields: dict):
        self._put(("static", (probe, fields)))

    def add_trajectory(self, step: int, flat: np.ndarray):
        self._put(("trajectory", (step, flat)))

    def _put(self, item):
        if not self.failed:
            self._queue.put(item)  # blocks only when the writer is behind

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self):
        pending = _Pending()
        last_flush = time.monotonic()
        while True:
            timeout = max(0.0, self._flush_every - (time.monotonic() - last_flush))
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if item is not None:
                pending.add(*item)
            if pending and time.monotonic() - last_flush >= self._flush_every:
                self._write(pending)
                pending = _Pending()
                last_flush = time.monotonic()
        self._write(pending)

    def _write(self, pending: "_Pending"):
        if self.failed or not pending:
            return
        try:
            pending.write(self._file)
            self._file.flush()
        except Exception as exc:  # the recorder never kills training
            self.failed = True
            warnings.warn(f"dyntrace: writing {self.path} failed, recording stops: {exc}", stacklevel=1)

    def close(self):
        """Write what is queued, mark the file closed, flush and close it."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        try:
            if not self.failed:
                fmt.mark_closed(self._file)
            self._file.flush()
        finally:
            self._file.close()


class _Pending:
    """Everything received since the last flush, grouped per dataset."""

    def __init__(self):
        self.names: list[str] = []
        self.scalars = [[], [], []]  # steps, keys, values
        self.records = defaultdict(lambda: ([], defaultdict(list)))  # probe -> (steps, field -> rows)
        self.statics: list[tuple[str, dict]] = []
        self.trajectory = ([], [])

    def __bool__(self):
        return bool(self.scalars[0] or self.records or self.statics or self.trajectory[0] or self.names)

    def add(self, kind, args):
        if kind == "scalars":
            new_names, steps, keys, values = args
            self.names += new_names
            for column, data in zip(self.scalars, (steps, keys, values)):
                column.extend(data)
        elif kind == "record":
            probe, step, fields = args
            steps, rows = self.records[probe]
            steps.append(step)
            for name, array in fields.items():
                rows[name].append(array)
        elif kind == "static":
            self.statics.append(args)
        else:
            step, flat = args
            self.trajectory[0].append(step)
            self.trajectory[1].append(flat)

    def write(self, f):
        for probe, fields in self.statics:
            fmt.write_static(f, probe, fields)
        for probe, (steps, rows) in self.records.items():
            fmt.append_records(f, probe, steps, {name: np.stack(r) for name, r in rows.items()})
        if self.scalars[0] or self.names:
            fmt.append_scalars(f, self.names, *self.scalars)
        if self.trajectory[0]:
            fmt.append_trajectory(f, self.trajectory[0], np.stack(self.trajectory[1]))
