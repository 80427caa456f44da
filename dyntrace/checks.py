"""Argument checks with one wording everywhere: ``Invalid <name>: <value> (expected …)``.

PyTorch's style (``Invalid learning rate: -1``): the type is checked first (a bool is not an
int), then the range; the message names the option, shows the bad value and says what is
allowed. ``error`` chooses the exception class (``ValueError`` by default; the trainer passes
its ``ConfigError`` so that a bad config is one line on the command line).
"""

from __future__ import annotations

import math
import numbers

__all__ = ["check_int", "check_number", "check_choice", "check_bool", "check_range"]


def _expected(kind: str, low, high, strict_low: bool = False) -> str:
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if strict_low else '>='} {low}")
    if high is not None:
        bounds.append(f"<= {high}")
    return f"{kind} {' and '.join(bounds)}".strip()


def check_int(name: str, value, *, low=None, high=None, optional: bool = False, error=ValueError):
    """``value`` as an int, if it is an integer in [low, high] (None allowed when ``optional``)."""
    if optional and value is None:
        return None
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        expected = _expected("an int", low, high) + (" or None" if optional else "")
        raise error(f"Invalid {name}: {value!r} (expected {expected})")
    return int(value)


def check_number(
    name: str,
    value,
    *,
    low=None,
    high=None,
    strict_low: bool = False,
    optional: bool = False,
    error=ValueError,
):
    """``value`` as a float, if it is a finite real number in its range (``strict_low``: > low)."""
    if optional and value is None:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if strict_low else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        expected = _expected("a finite number", low, high, strict_low) + (" or None" if optional else "")
        raise error(f"Invalid {name}: {value!r} (expected {expected})")
    return float(value)


def check_choice(name: str, value, choices, *, error=ValueError):
    """``value``, if it is one of ``choices``."""
    if value not in choices:
        raise error(f"Invalid {name}: {value!r} (expected one of {', '.join(map(repr, choices))})")
    return value


def check_bool(name: str, value, *, error=TypeError):
    """``value``, if it is True or False."""
    if not isinstance(value, bool):
        raise error(f"Invalid {name}: {value!r} (expected True or False)")
    return value


def check_range(name: str, value, *, error=ValueError) -> tuple[float, float]:
    """A pair (lo, hi) of finite numbers with lo < hi, as floats."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise error(f"Invalid {name}: {value!r} (expected a pair (lo, hi))") from None
    lo = check_number(f"{name}[0]", lo, error=error)
    hi = check_number(f"{name}[1]", hi, error=error)
    if not lo < hi:
        raise error(f"Invalid {name}: {value!r} (expected lo < hi)")
    return lo, hi
