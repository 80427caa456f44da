"""The scalar log of a run: values logged every step, waiting for the file.

``rec.log(loss=loss)`` must cost almost nothing and never force a device sync, so logged
values wait here, tensors still on their device, until the next record step's single
transfer or until the log is due (:meth:`ScalarLog.due`: every ``flush_every`` seconds or
every :data:`MAX_PENDING` values), when only the waiting tensors are moved. Whatever happens
to a transfer, the pending list is emptied: a failure never makes later steps slower.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch

__all__ = ["ScalarLog", "MAX_PENDING"]

#: Pending values that make the log due whatever the time (bounds memory and the write).
MAX_PENDING = 4096


class ScalarLog:
    """(step, name, value) events of one run, handed to a writer's ``add_scalars`` in batches.

    Args:
        writer: a :class:`dyntrace.io.writer.RunWriter` (or anything with ``add_scalars``).
        flush_every: seconds after which pending values are due (default: 2.0).
    """

    def __init__(self, writer, flush_every: float = 2.0):
        self._writer = writer
        self.flush_every = flush_every
        self._pending: list[tuple[int, str, object]] = []
        self._keys: dict[str, int] = {}
        self._last = time.monotonic()
        self._warned: set = set()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, step: int, name: str, value) -> None:
        """Queue one value: a Python number, or a 0-d tensor (kept on its device)."""
        self._pending.append((step, name, value))

    def extend(self, events) -> None:
        self._pending.extend(events)

    def due(self) -> bool:
        """True when the pending values should go to the file now (time or count)."""
        return len(self._pending) >= MAX_PENDING or time.monotonic() - self._last >= self.flush_every

    def tensors(self) -> dict[tuple, torch.Tensor]:
        """The pending tensor values, keyed ("scalar", index) for :func:`dyntrace.summaries.to_host`."""
        return {("scalar", i): v for i, (_, _, v) in enumerate(self._pending) if isinstance(v, torch.Tensor)}

    def write(self, host: dict, failed: dict) -> None:
        """Hand every pending value to the writer and empty the list.

        ``host`` maps ("scalar", i) to the host value of pending tensor i; ``failed`` maps
        the keys whose transfer failed (their values are dropped with one warning per name).
        """
        pending, self._pending = self._pending, []
        self._last = time.monotonic()
        if not pending:
            return
        new_names, steps, keys, values = [], [], [], []
        for i, (step, name, value) in enumerate(pending):
            key = ("scalar", i)
            if key in failed:
                self._warn(
                    name,
                    f"log: a value of {name!r} could not be moved to the host ({failed[key]!r}); dropped",
                )
                continue
            if isinstance(value, torch.Tensor):
                number = float(np.asarray(host[key]).reshape(-1)[0])
            else:
                number = _number(value)
            if name not in self._keys:
                self._keys[name] = len(self._keys)
                new_names.append(name)
            steps.append(step)
            keys.append(self._keys[name])
            values.append(number)
        if steps or new_names:
            self._writer.add_scalars(new_names, steps, keys, values)

    def drop(self) -> int:
        """Forget the pending values (after a failure); returns how many."""
        n, self._pending = len(self._pending), []
        self._last = time.monotonic()
        return n

    def _warn(self, key, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"dyntrace: {message}", stacklevel=4)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan
