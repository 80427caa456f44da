"""Writes a run file on a background thread behind a bounded queue.

The training thread only enqueues host arrays; HDF5 work (compression, resizing, flushing)
happens here. The file is flushed at least every ``flush_every`` seconds and on close, so a
killed process leaves every record up to the last flush.
"""

from __future__ import annotations

import queue
import threading
import time
import warnings

from dyntrace.io import format as fmt

__all__ = ["RunWriter"]

_STOP = object()


class RunWriter:
    """Owns the HDF5 file of one run. ``submit`` from the training thread; ``close`` once.

    Items are ``(method_name, args)`` tuples naming a writing function of
    :mod:`dyntrace.io.format`. A write error is reported once as a warning and the writer
    stops writing; training goes on.
    """

    def __init__(self, path, meta, layouts, *, trajectory=None, flush_every=2.0, queue_size=64):
        self.path = str(path)
        self._file = fmt.create(self.path, meta, layouts, trajectory=trajectory)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._flush_every = flush_every
        self.failed = False
        self._thread = threading.Thread(target=self._run, name="dyntrace-writer", daemon=True)
        self._thread.start()

    def submit(self, method: str, *args):
        """Queue one write; blocks only when the queue is full (the writer is behind)."""
        if not self.failed:
            self._queue.put((method, args))

    def _run(self):
        last_flush = time.monotonic()
        dirty = False
        while True:
            try:
                item = self._queue.get(timeout=self._flush_every)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if item is not None and not self.failed:
                method, args = item
                try:
                    getattr(fmt, method)(self._file, *args)
                    dirty = True
                except Exception as exc:  # the recorder never kills training
                    self.failed = True
                    warnings.warn(f"dyntrace: writing {self.path} failed, recording stops: {exc}", stacklevel=1)
            if dirty and time.monotonic() - last_flush >= self._flush_every:
                self._flush()
                dirty = False
                last_flush = time.monotonic()

    def _flush(self):
        try:
            self._file.flush()
        except Exception as exc:
            self.failed = True
            warnings.warn(f"dyntrace: flushing {self.path} failed: {exc}", stacklevel=1)

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
