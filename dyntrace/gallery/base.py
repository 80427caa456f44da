"""What a gallery entry is, and the pieces entries share.

An entry is one module in ``dyntrace/gallery/`` with:

- ``TITLE`` and ``CAPTION`` (what the figure shows and what to see in it);
- ``runs(quick: bool) -> dict[label, RunSpec]``: the recorded runs it needs, each a
  :class:`dyntrace.trainer.TrainConfig` (trained with ``dyntrace.train``) or a callable
  ``path -> None`` that records a run with :class:`dyntrace.Recorder` into ``path``;
- ``figure(runs: dict[label, Run]) -> Figure``: drawn from the run files alone, with
  ``dyntrace.plots`` functions;
- ``claims(runs: dict[label, Run]) -> list[Claim]``: the caption's claims, checked on the
  recorded numbers.

Configuration values are plain and commented at the top of each entry; ``quick`` shrinks
them so the test suite can run every entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Union

if TYPE_CHECKING:
    from dyntrace.trainer import TrainConfig

__all__ = ["Claim", "CLAIM_KINDS", "claim", "EntryResult", "RunSpec"]

RunSpec = Union["TrainConfig", Callable[[str], None]]


#: What a claim is: a *phenomenon* could fail if the physics of the experiment changed (a
#: control run without the phenomenon fails it); a *check* says the implementation agrees
#: with its formula (it fails only if the code is wrong).
CLAIM_KINDS = ("phenomenon", "check")


@dataclass
class Claim:
    """One checked statement: its text, the measured value, the reference, the verdict, its kind."""

    text: str
    measured: str
    expected: str
    passed: bool
    kind: str = "check"

    def __post_init__(self):
        if self.kind not in CLAIM_KINDS:
            raise ValueError(f"Invalid claim kind: {self.kind!r} (expected one of {', '.join(CLAIM_KINDS)})")

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "measured": self.measured,
            "expected": self.expected,
            "passed": self.passed,
            "kind": self.kind,
        }


def claim(text: str, measured, passed: bool, expected: str = "", *, kind: str = "check") -> Claim:
    """A :class:`Claim`; numbers are shown with 3 significant digits, sequences joined.

    ``kind`` is "phenomenon" (a control experiment without the phenomenon would fail it) or
    "check" (the implementation agrees with its formula); see :data:`CLAIM_KINDS`.
    """
    return Claim(text=text, measured=_show(measured), expected=expected, passed=bool(passed), kind=kind)


def _show(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_show(v)}" for k, v in value.items())
    if hasattr(value, "__len__"):
        return ", ".join(_show(v) for v in value)
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return str(value)


@dataclass
class EntryResult:
    """What building one entry produced."""

    name: str
    title: str
    caption: str
    figure: str | None
    claims: list[Claim] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.claims)
