"""Derived statistics of a probe's summaries, known to both sides without torch.

Every tensor-summary probe stores the packed columns (``count``, ``sum``, ``sumsq``, ``min``,
``max``, ``zero``, ``nonfinite``, ``hist_count``); :data:`BASE` turns them into mean, std,
norm and the like. A probe with fields of its own declares the statistics built from them in
its layout (``ProbeLayout.stats``): each is a :class:`Ratio` of sums of named fields, written
into the file as the probe group's ``stats`` attribute, so the reader computes a new probe's
statistic without knowing the probe::

    ProbeLayout(..., stats=[Ratio("frac_dead", ("dead",), ("units",), "units zero over the batch")])

    run.stat("activations", "fc1", "frac_dead")

A declared statistic replaces a base one of the same name (the parameter probes count
non-finite elements over the whole tensor, not the histogram sample).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Ratio", "BASE", "encode", "decode", "declared_before_stats"]


@dataclass(frozen=True)
class Ratio:
    """``sum(numerator fields) / sum(denominator fields)``; NaN where the denominator is not
    positive. An empty denominator gives the numerator itself (a raw count or a static
    field, broadcast over the records)."""

    name: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...] = ()
    description: str = ""

    def fields(self) -> tuple[str, ...]:
        return self.numerator + self.denominator

    def __call__(self, raw: Callable[[str], np.ndarray]) -> np.ndarray:
        top = sum(raw(name) for name in self.numerator)
        if not self.denominator:
            return np.asarray(top, dtype=np.float64)
        return top / _positive(sum(raw(name) for name in self.denominator))


def _positive(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.where(values > 0, values, np.nan)


def _mean(raw):
    return raw("sum") / _positive(raw("count"))


def _std(raw):
    count = _positive(raw("count"))
    mean = raw("sum") / count
    return np.sqrt(np.maximum(raw("sumsq") / count - mean**2, 0.0))


def _extreme(column):
    def value(raw):
        return np.where(raw("count") > 0, raw(column), np.nan)

    return value


#: Statistics of the packed summary columns, for every tensor-summary probe. Each takes
#: ``raw(field) -> float64 [R, T]`` (static fields broadcast) and gives values [R, T].
BASE: dict[str, Callable] = {
    "count": Ratio("count", ("count",)),
    "sum": Ratio("sum", ("sum",)),
    "sumsq": Ratio("sumsq", ("sumsq",)),
    "mean": _mean,
    "std": _std,
    "min": _extreme("min"),
    "max": _extreme("max"),
    "norm": lambda raw: np.sqrt(raw("sumsq")),
    "frac_zero": Ratio("frac_zero", ("zero",), ("hist_count",), "zeros in the histogram sample"),
    "frac_nonfinite": Ratio(
        "frac_nonfinite", ("nonfinite",), ("hist_count",), "non-finite elements in the sample"
    ),
}


def encode(stats) -> str:
    """The ``stats`` attribute of a probe group: JSON of each declared ratio."""
    return json.dumps(
        {
            s.name: {
                "numerator": list(s.numerator),
                "denominator": list(s.denominator),
                "description": s.description,
            }
            for s in stats
        }
    )


def decode(text) -> dict[str, Ratio]:
    """The declared ratios of a ``stats`` attribute, as JSON text or parsed (ValueError on
    anything else)."""
    if isinstance(text, bytes):
        text = text.decode()
    table = json.loads(text) if isinstance(text, str) else text
    if not isinstance(table, dict):
        raise ValueError("stats is not a JSON object")
    out = {}
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise ValueError(f"stats {name!r} is not an object")
        parts = [entry.get("numerator"), entry.get("denominator", [])]
        if not all(isinstance(p, list) and all(isinstance(f, str) for f in p) for p in parts) or not parts[0]:
            raise ValueError(f"stats {name!r} needs a numerator and a denominator: lists of field names")
        out[name] = Ratio(name, tuple(parts[0]), tuple(parts[1]), str(entry.get("description", "")))
    return out


def declared_before_stats(fields, attrs) -> dict[str, Ratio]:
    """What files written before the ``stats`` attribute declared, from their fields and
    ``nonfinite_scope`` (the activations and parameter probes of schema 1). Never grows."""
    out = {}
    if "saturated" in fields:
        out["frac_saturated"] = Ratio("frac_saturated", ("saturated",), ("hist_count",))
    if "units" in fields:
        out["units"] = Ratio("units", ("units",))
        for name, field in (("frac_dead", "dead"), ("frac_dead_persistent", "dead_persistent")):
            if field in fields:
                out[name] = Ratio(name, (field,), ("units",))
        if "dead" in fields:
            out["dead"] = Ratio("dead", ("dead",))
    scope = attrs.get("nonfinite_scope", "sample")
    if (scope.decode() if isinstance(scope, bytes) else scope) == "tensor":
        out["frac_nonfinite"] = Ratio("frac_nonfinite", ("nonfinite",), ("count", "nonfinite"))
    return out
