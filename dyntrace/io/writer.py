"""Writes a run file on a background thread behind a bounded queue.

The training thread only enqueues host arrays; HDF5 work (compression, resizing, flushing)
happens here. What arrives is written in batches, one write per dataset:

- **When.** Every item carries a due time: ``flush_every`` seconds after it was logged
  (records and trajectory snapshots: when they were handed over; scalars: the recorder
  hands them over in batches, so from the previous batch, the earliest moment any of them
  can have been logged). A batch is written as soon as its earliest item is due (less the
  time the last write took), so everything logged more than ``flush_every`` plus the time of
  one write before a crash is in the file.
- **Visible only when whole.** A batch's rows are appended and flushed, and only then
  committed (``/committed``, see :func:`dyntrace.io.format.commit`) and flushed again: a
  reader never sees a row whose fields are not all written, whatever fails and wherever
  the process dies.
- **Disk space first.** Before a batch, the space it can need (and what closing the file
  needs) is allocated to the file (``posix_fallocate``). Where the disk is full, recording
  stops before anything is written: one warning, and the file is closed cleanly with every
  record written so far (``/closed`` = 2: stopped early).
- **One writer per path**, across processes: :class:`dyntrace.io.lock.WriteLock`.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import math
import os
import queue
import sys
import threading
import time
import warnings
from collections import defaultdict

import numpy as np

from dyntrace.errors import DyntraceError
from dyntrace.io import format as fmt
from dyntrace.io import hdf5
from dyntrace.io.lock import WriteLock

__all__ = ["RunWriter"]

_STOP = object()
# Room kept for closing the file (the /closed flag, the last metadata flush).
_CLOSE_RESERVE = 1 << 16
# Metadata a batch may add besides its chunks: object headers, chunk indexes, the superblock.
_BASE_RESERVE = 1 << 16
_PER_DATASET_RESERVE = 1 << 12


class RunWriter:
    """Owns the HDF5 file of one run: ``add_*`` from the training thread, ``close`` once.

    A write failure (a full disk, an I/O error) is reported once as a warning and the writer
    stops writing; training goes on, and the file keeps every batch written before.

    Args:
        path: the run file to create (overwritten; refused while another writer holds it).
        meta, layouts, trajectory: what :func:`dyntrace.io.format.create` takes.
        flush_every: seconds from ``add_*`` to the file (plus the time of one write).
        queue_size: items the queue holds before ``add_*`` waits for the writer.
    """

    def __init__(self, path, meta, layouts, *, trajectory=None, flush_every=2.0, queue_size=64):
        self.path = os.fspath(path)
        self._lock = WriteLock(self.path)
        try:
            self._file = fmt.create(self.path, meta, layouts, trajectory=trajectory)
        except BaseException:
            self._lock.release()
            raise
        self._groups = set(
            self._file[fmt.PROBES]
        )  # a probe with no tensors has none: its records are dropped
        self._has_trajectory = fmt.TRAJECTORY in self._file
        self._rows: dict[str, int] = {}
        self._space = _Space(self.path, self._file)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._flush_every = float(flush_every)
        self._scalars_since = time.monotonic()
        self.failed = False
        self.last_write_seconds = 0.0  # wall time of the last batch (write, flush, commit, flush)
        self.max_write_seconds = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="dyntrace-writer", daemon=True)
        self._thread.start()

    # -- the training thread's side: enqueue only ----------------------------------------------

    def add_scalars(self, new_names, steps, keys, values):
        now = time.monotonic()
        # the recorder hands scalars over in batches: the oldest was logged after the last batch
        due, self._scalars_since = self._scalars_since + self._flush_every, now
        self._put(("scalars", (list(new_names), steps, keys, values)), due)

    def add_record(self, probe: str, step: int, fields: dict):
        if probe in self._groups:
            self._put(("record", (probe, step, fields)), time.monotonic() + self._flush_every)

    def add_static(self, probe: str, fields: dict):
        if probe in self._groups:
            self._put(("static", (probe, fields)), time.monotonic() + self._flush_every)

    def add_trajectory(self, step: int, flat: np.ndarray):
        if self._has_trajectory:
            self._put(("trajectory", (step, flat)), time.monotonic() + self._flush_every)

    def _put(self, item, due: float):
        if not self.failed and not self._closed:
            self._queue.put((*item, due))  # blocks only when the writer is behind

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self):
        pending, due = _Pending(), math.inf
        while True:
            lead = min(self.last_write_seconds, self._flush_every / 2)  # start early by a write's time
            timeout = None if due == math.inf else max(0.0, due - lead - time.monotonic())
            try:
                items = [self._queue.get(timeout=timeout)]
            except queue.Empty:
                items = []
            while True:  # everything already queued joins this batch
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = False
            for item in items:
                if item is _STOP:
                    stop = True
                    continue
                kind, args, item_due = item
                pending.add(kind, args)
                due = min(due, item_due)
            if stop:
                break
            if pending and time.monotonic() >= due - lead:
                self._write(pending)
                pending, due = _Pending(), math.inf
        self._write(pending)

    def _write(self, pending: "_Pending"):
        if self.failed or not pending:
            return
        start = time.monotonic()
        f = self._file
        try:
            need = pending.bytes_needed(f)
        except Exception as exc:  # noqa: BLE001  (the recorder never kills training)
            self._stop(f"{type(exc).__name__}: {exc}")
            return
        if not self._space.reserve(need + _CLOSE_RESERVE):
            why = self._space.error
            self._space.reserve(_CLOSE_RESERVE)
            self._stop(f"no room for the next {need / 1e6:.2f} MB ({why})")
            return
        try:
            with _quiet_h5py_teardown():
                rows = pending.write(f)
                f.flush()  # the rows are in the file ...
                fmt.commit(f, rows)
                f.flush()  # ... before they are committed
        except Exception as exc:  # noqa: BLE001  (the recorder never kills training)
            self._stop(_describe(exc))
            return
        self._rows.update(rows)
        self.last_write_seconds = time.monotonic() - start
        self.max_write_seconds = max(self.max_write_seconds, self.last_write_seconds)

    def _stop(self, reason: str):
        self.failed = True
        kept = self._rows.get(fmt.SCALARS, 0)
        records = {
            table.split("/", 1)[1]: n for table, n in self._rows.items() if table.startswith(f"{fmt.PROBES}/")
        }
        warnings.warn(
            f"dyntrace: writing {self.path} failed, recording stops: {reason}. Training goes on; the file keeps "
            f"what was written before ({kept} scalar values, "
            f"{max(records.values(), default=0)} records).",
            stacklevel=1,
        )

    def close(self):
        """Write what is queued, mark the file closed (2 if recording had stopped), flush and close it."""
        if self._closed:
            return
        self._closed = True
        closed = False
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        try:
            with _quiet_h5py_teardown():
                try:
                    fmt.mark_closed(self._file, fmt.CLOSED_STOPPED if self.failed else fmt.CLOSED_CLEANLY)
                    self._file.flush()
                except Exception as exc:  # noqa: BLE001
                    if not self.failed:
                        self._stop(_describe(exc))
                closed = False
                try:
                    self._file.close()
                    closed = True
                except Exception:  # noqa: BLE001  (already reported: the file keeps its committed rows)
                    pass
                gc.collect()  # h5py objects of a failed write go now, inside the quiet window
        finally:
            self._space.close(truncate=closed)
            self._lock.release()


class _Pending:
    """Everything received since the last write, grouped per dataset."""

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

    def bytes_needed(self, f) -> int:
        """An upper bound of the file space this batch takes: every chunk it touches (a SWMR
        writer writes a rewritten chunk to new space) plus metadata."""
        total, datasets = _BASE_RESERVE, 0

        def add(ds, n):
            nonlocal total, datasets
            rows_per_chunk = ds.chunks[0] if ds.chunks else max(1, ds.shape[0])
            row_bytes = ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64))
            chunks = (ds.shape[0] % rows_per_chunk + n + rows_per_chunk - 1) // rows_per_chunk
            total += int(chunks * rows_per_chunk * row_bytes * 1.05) + _PER_DATASET_RESERVE
            datasets += 1

        for probe, fields in self.statics:
            for name in fields:
                ds = f[fmt.PROBES][probe][name]
                total += int(ds.nbytes * 1.05) + _PER_DATASET_RESERVE
        for probe, (steps, rows) in self.records.items():
            group = f[fmt.PROBES][probe]
            add(group["step"], len(steps))
            for name in rows:
                add(group[name], len(steps))
        if self.scalars[0] or self.names:
            group = f[fmt.SCALARS]
            add(group["names"], len(self.names))
            for name in ("step", "key", "value"):
                add(group[name], len(self.scalars[0]))
        if self.trajectory[0]:
            group = f[fmt.TRAJECTORY]
            add(group["step"], len(self.trajectory[0]))
            add(group["params"], len(self.trajectory[0]))
        return total

    def write(self, f) -> dict:
        """Append everything (nothing committed yet); returns the new row counts per table."""
        rows_after = {}
        for probe, fields in self.statics:
            fmt.write_static(f, probe, fields)
        for probe, (steps, rows) in self.records.items():
            fields = {name: np.stack(r) for name, r in rows.items()}
            rows_after.update(fmt.append_records(f, probe, steps, fields, commit_rows=False))
        if self.scalars[0] or self.names:
            rows_after.update(fmt.append_scalars(f, self.names, *self.scalars, commit_rows=False))
        if self.trajectory[0]:
            rows_after.update(
                fmt.append_trajectory(f, self.trajectory[0], np.stack(self.trajectory[1]), commit_rows=False)
            )
        return rows_after


class _Space:
    """File space allocated ahead of HDF5's writes, so a full disk is found before a batch is
    written rather than half-way through it."""

    def __init__(self, path: str, f):
        self._path, self._file = path, f
        self._fd = None
        self.error = ""  # why the last reservation failed
        if hasattr(os, "posix_fallocate"):
            try:
                self._fd = os.open(path, os.O_WRONLY)
            except OSError:
                self._fd = None

    def reserve(self, nbytes: int) -> bool:
        """Make sure ``nbytes`` past HDF5's end of file are allocated; False if the disk is full."""
        end = int(self._file.id.get_filesize()) + int(nbytes)
        if self._fd is not None:
            try:
                size = os.fstat(self._fd).st_size
                if end > size:
                    os.posix_fallocate(self._fd, size, end - size)
                return True
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    self.error = os.strerror(exc.errno)
                    return False
                os.close(self._fd)  # a file system without fallocate: ask for free space instead
                self._fd = None
        free = self.free_bytes()
        self.error = f"{free / 1e6:.2f} MB free on the device"
        return free >= nbytes

    def free_bytes(self) -> int:
        try:
            st = os.statvfs(os.path.dirname(os.path.abspath(self._path)))
            return st.f_bavail * st.f_frsize
        except (OSError, AttributeError):
            return sys.maxsize

    def close(self, *, truncate: bool):
        """Stop reserving; with ``truncate`` (the file closed cleanly) give back what HDF5 did not use."""
        if self._fd is None:
            return
        try:
            if truncate:
                block = hdf5.superblock(self._path)
                if block is not None and os.fstat(self._fd).st_size > block.eof:
                    os.ftruncate(self._fd, block.eof)
        except (OSError, ValueError):
            pass
        finally:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def _quiet_h5py_teardown():
    """While a failed write's h5py objects are torn down, their ``__dealloc__`` may fail again
    (the same full disk) and print "Exception ignored in ObjectID.__dealloc__" tracebacks; the
    failure is reported once as a warning instead."""
    previous = sys.unraisablehook

    def hook(args):
        if "h5py" in repr(args.object) or "h5py" in repr(args.err_msg):
            return
        previous(args)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:  # h5py's message carries HDF5's whole error stack
        return f"{os.strerror(exc.errno)} (errno {exc.errno})"
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if isinstance(exc, DyntraceError):
        return first
    return f"{type(exc).__name__}: {first[:300]}"
