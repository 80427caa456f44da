"""When to record: schedules are callables ``step -> bool`` over optimizer steps 1, 2, 3, …

Step ``s`` is the iteration that produces the s-th ``optimizer.step()``: its forward and
backward pass see the weights after s − 1 updates. Probes measure that iteration when the
schedule says so; everything else costs nothing.
"""

from __future__ import annotations

import math
from typing import Callable

__all__ = ["Every", "LogSpaced", "FirstThenEvery", "as_schedule"]


class Every:
    """Record steps 1, 1 + n, 1 + 2n, … (the first step is always recorded)."""

    def __init__(self, n: int):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"Invalid record interval: every={n!r} (expected an int >= 1)")
        self.n = n

    def __call__(self, step: int) -> bool:
        return (step - 1) % self.n == 0

    def __repr__(self):
        return f"Every({self.n})"


class LogSpaced:
    """About ``per_decade`` record steps per decade of steps, as Cockpit's log schedule.

    Early training, where most happens, is recorded densely; late training sparsely.
    """

    def __init__(self, per_decade: int = 10, *, start: int = 1):
        if per_decade < 1 or start < 1:
            raise ValueError(f"Invalid log schedule: per_decade={per_decade}, start={start}")
        self.per_decade = per_decade
        self.start = start

    def __call__(self, step: int) -> bool:
        if step < self.start:
            return False
        # A step is recorded when it is the first integer at or past a log-grid point.
        k = math.floor(math.log10(step) * self.per_decade + 1e-9)
        previous = math.floor(math.log10(step - 1) * self.per_decade + 1e-9) if step > 1 else -1
        return k != previous or step == self.start

    def __repr__(self):
        return f"LogSpaced(per_decade={self.per_decade}, start={self.start})"


class FirstThenEvery:
    """Every step up to ``first``, then every ``every`` steps."""

    def __init__(self, first: int, every: int):
        if first < 0 or every < 1:
            raise ValueError(f"Invalid schedule: first={first}, every={every}")
        self.first = first
        self.every = every

    def __call__(self, step: int) -> bool:
        return step <= self.first or (step - self.first) % self.every == 0

    def __repr__(self):
        return f"FirstThenEvery(first={self.first}, every={self.every})"


def as_schedule(every: int | Callable[[int], bool]) -> Callable[[int], bool]:
    """An int becomes :class:`Every`; a callable ``step -> bool`` is used as it is."""
    if isinstance(every, int) and not isinstance(every, bool):
        return Every(every)
    if callable(every):
        return every
    raise TypeError(f"every must be an int or a callable step -> bool, got {every!r}")
