"""Learning-rate schedules as multipliers ``t -> factor`` of the initial rate α₀.

``t`` counts completed optimizer steps: the first step uses factor(0). Each schedule is a small
frozen dataclass (picklable, so ``LambdaLR.state_dict`` saves it). ``make_scheduler`` wraps one
in ``torch.optim.lr_scheduler.LambdaLR``; call ``scheduler.step()`` after every optimizer step.
This module imports torch only inside ``make_scheduler``. Any schedule takes ``warmup_steps=w``:
the factor rises linearly (t+1)/w over the first w steps, then the schedule runs from its own t = 0.
"""

import math
from dataclasses import dataclass

from dyntrace.catalog import ConfigError, lookup

__all__ = [
    "SCHEDULES",
    "make_schedule",
    "make_scheduler",
    "Constant",
    "Step",
    "Exponential",
    "InverseTime",
    "InvSqrt",
    "Cosine",
    "Warmup",
]


def _check(condition: bool, name: str, value, rule: str) -> None:
    if not condition:
        raise ConfigError(f"Invalid {name}: {value!r} ({rule})")


@dataclass(frozen=True)
class Constant:
    """α = α₀."""

    def __call__(self, t: int) -> float:
        return 1.0


@dataclass(frozen=True)
class Step:
    """Step decay α = α₀ · γ^⌊t / step_size⌋ (γ = 0.5 every ``step_size`` steps)."""

    step_size: int
    gamma: float = 0.5

    def __post_init__(self):
        _check(
            isinstance(self.step_size, int) and self.step_size >= 1,
            "step_size",
            self.step_size,
            "an integer >= 1",
        )
        _check(self.gamma > 0, "gamma", self.gamma, "> 0")

    def __call__(self, t: int) -> float:
        return self.gamma ** (t // self.step_size)


@dataclass(frozen=True)
class Exponential:
    """Exponential decay α = α₀ · γ^(t / decay_steps), or γ^⌊t / decay_steps⌋ with ``staircase``.

    Defaults γ = 0.95, decay_steps = 1 (the lecture's 0.95^epoch·α₀ when stepped per epoch).
    """

    gamma: float = 0.95
    decay_steps: int = 1
    staircase: bool = False

    def __post_init__(self):
        _check(self.gamma > 0, "gamma", self.gamma, "> 0")
        _check(self.decay_steps > 0, "decay_steps", self.decay_steps, "> 0")

    def __call__(self, t: int) -> float:
        exponent = t / self.decay_steps
        return self.gamma ** (math.floor(exponent) if self.staircase else exponent)


@dataclass(frozen=True)
class InverseTime:
    """Inverse-time decay α = α₀ / (1 + k·t) (k = ``decay`` = 0.01)."""

    decay: float = 0.01

    def __post_init__(self):
        _check(self.decay >= 0, "decay", self.decay, ">= 0")

    def __call__(self, t: int) -> float:
        return 1.0 / (1.0 + self.decay * t)


@dataclass(frozen=True)
class InvSqrt:
    """α = α₀ · k / √t with t clamped to >= 1 (so the first two steps use k) (k = 1)."""

    k: float = 1.0

    def __post_init__(self):
        _check(self.k > 0, "k", self.k, "> 0")

    def __call__(self, t: int) -> float:
        return self.k / math.sqrt(max(t, 1))


@dataclass(frozen=True)
class Cosine:
    """Cosine annealing α = α₀ · [m + (1 − m)·½(1 + cos(π·min(t, T)/T))], T = ``total_steps``,
    m = ``min_factor`` (0); constant at m after T. Reference: Loshchilov & Hutter, SGDR, ICLR 2017.
    """

    total_steps: int
    min_factor: float = 0.0

    def __post_init__(self):
        _check(self.total_steps >= 1, "total_steps", self.total_steps, ">= 1")
        _check(0 <= self.min_factor <= 1, "min_factor", self.min_factor, "in [0, 1]")

    def __call__(self, t: int) -> float:
        progress = min(t, self.total_steps) / self.total_steps
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Warmup:
    """Linear warm-up: factor (t + 1)/w for t < w, then ``after(t − w)``.

    Reference: Goyal et al., "Accurate, Large Minibatch SGD", 2017.
    """

    steps: int
    after: object = Constant()

    def __post_init__(self):
        _check(isinstance(self.steps, int) and self.steps >= 1, "warmup_steps", self.steps, "an integer >= 1")

    def __call__(self, t: int) -> float:
        return (t + 1) / self.steps if t < self.steps else self.after(t - self.steps)


SCHEDULES = {
    "constant": Constant,
    "step": Step,
    "exponential": Exponential,
    "inverse_time": InverseTime,
    "inv_sqrt": InvSqrt,
    "cosine": Cosine,
    "warmup": Warmup,
}


def make_schedule(name: str, *, warmup_steps: int = 0, **options):
    """The multiplier ``t -> factor`` called ``name`` with ``options``, behind a warm-up if asked.

    ``make_schedule("warmup", warmup_steps=w)`` is warm-up to a constant rate.
    """
    cls = lookup("schedule", SCHEDULES, name)
    if cls is Warmup:
        return Warmup(warmup_steps, **options)
    schedule = cls(**options)
    return Warmup(warmup_steps, schedule) if warmup_steps else schedule


def make_scheduler(name: str, optimizer, *, warmup_steps: int = 0, **options):
    """``torch.optim.lr_scheduler.LambdaLR`` following ``make_schedule(name, ...)``; step it per optimizer step."""
    from torch.optim.lr_scheduler import LambdaLR  # here, so the multipliers stay usable without torch

    return LambdaLR(optimizer, make_schedule(name, warmup_steps=warmup_steps, **options))
