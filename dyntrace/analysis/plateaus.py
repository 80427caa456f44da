"""Plateaus of a loss curve: long stretches where the loss hardly moves, and where they end."""

from dataclasses import dataclass

import numpy as np

from dyntrace.analysis.smoothing import _window_mean, kaiser_smooth

__all__ = ["Plateau", "find_plateaus", "first_escape"]

# A change within this many standard deviations of the loss's own noise does not end a plateau,
_NOISE_Z = 2.0
# ... provided it is also below this fraction of the change the whole curve makes per window.
_PACE_FRACTION = 0.25


@dataclass(frozen=True)
class Plateau:
    """A flat stretch of a loss curve, in training steps.

    ``start`` and ``end`` are the first and last step of the stretch; ``escape`` is the first
    step after it where the smoothed loss has fallen decisively below the plateau's level
    (``None`` if it never does); ``level`` is the median smoothed loss on the plateau.
    """

    start: int
    end: int
    escape: int | None
    level: float


def find_plateaus(steps, loss, *, window=None, threshold=0.01, min_length=None, escape_drop=0.1):
    """Find the plateaus of a loss curve, steps and loss of shape (N,) → list of Plateau.

    The loss is first smoothed (a Kaiser window ≈ window/4 wide, which tames minibatch noise
    but keeps corners sharp). A window [i, i+window] is flat when the smoothed loss changes by
    less than ``threshold`` relative to its level over it, or by no more than its own noise
    (2 stds of that difference, estimated locally from the step-to-step differences) while
    also under a quarter of the change the whole curve makes per window on average.
    A plateau is a connected union of flat windows, so its start and end are found at the
    corners of the curve, not half a window inside them; it must span at least ``min_length``
    points. Its escape is the first later step where s ≤ level·(1 − ``escape_drop``).

    Defaults scale with the series: window = max(5, N // 20) points, min_length = 2·window
    points; threshold 1 % per window; escape at a 10 % drop. Steps must be increasing; the
    window is counted in points, so a log-spaced record schedule gives windows of growing span.
    Non-finite losses are skipped by the smoothing.
    """
    steps = np.asarray(steps)
    loss = np.asarray(loss, dtype=np.float64)
    if steps.shape != loss.shape or loss.ndim != 1:
        raise ValueError(f"steps and loss must be 1-D of the same shape, got {steps.shape} and {loss.shape}")
    n = loss.size
    window = max(5, n // 20) if window is None else int(window)
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window!r}")
    min_length = 2 * window if min_length is None else int(min_length)
    taps = _odd(window // 4)
    s = kaiser_smooth(loss, taps=taps)
    if n <= window:
        return []
    # Noise allowance: the smoothed change between two points carries noise of std
    # ‖k‖·√(σ_i² + σ_j²), k the normalised kernel. σ² = Var(x_{i+1} − x_i)/2, a local estimate
    # that a trend (even a steep one) does not inflate, since a slope only shifts the mean of
    # the differences. Differences beyond 5 robust stds of the whole series are clipped first,
    # so a single spike does not pass for a noisy stretch.
    diff = np.append(np.diff(loss), np.nan)
    diff[~np.isfinite(diff)] = np.nan  # differences next to a missing value are missing too
    if np.isnan(diff).all():
        return []
    centre = np.nanmedian(diff)
    spread = 5 * 1.4826 * np.nanmedian(np.abs(diff - centre))
    diff = np.clip(diff, centre - spread, centre + spread)
    box = np.ones(window | 1)
    noise_var = np.maximum(_window_mean(diff**2, box)[0] - _window_mean(diff, box)[0] ** 2, 0.0) / 2
    kernel = np.kaiser(taps, 2.0)
    allowance = _NOISE_Z * np.linalg.norm(kernel / kernel.sum()) * np.sqrt(noise_var[window:] + noise_var[:-window])
    change = np.abs(s[window:] - s[:-window])
    # Within the noise is flat only if also slow next to the curve's overall pace: a noisy
    # loss that falls as fast as the run does on average is descending, not on a plateau.
    finite = s[np.isfinite(s)]
    pace = (finite.max() - finite.min()) / n * window if finite.size else 0.0
    within_noise = (change < allowance) & (change < _PACE_FRACTION * pace)
    flat_from = (change < threshold * np.abs(s[:-window])) | within_noise  # NaN compares False
    # every point of a flat window [i, i + window] is on a plateau: point j is flat when a
    # flat window starts in [j − window, j]
    started = np.concatenate([[0], np.cumsum(flat_from), np.full(window, flat_from.sum())])
    j = np.arange(n)
    flat = started[j + 1] > started[np.maximum(j - window, 0)]
    edges = np.diff(np.concatenate([[0], flat.astype(np.int8), [0]]))
    plateaus = []
    for first, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        if stop - first < min_length:
            continue
        level = float(np.nanmedian(s[first:stop]))
        below = np.flatnonzero(s[stop:] <= level - escape_drop * abs(level))
        escape = int(steps[stop + below[0]]) if below.size else None
        plateaus.append(Plateau(int(steps[first]), int(steps[stop - 1]), escape, level))
    return plateaus


def first_escape(steps, loss, *, drop: float = 0.1):
    """The first step at which the loss is ``drop`` (relative) below its first finite value,
    (N,), (N,) → int or None: the end of the initial plateau, by the same rule as the escape of
    :func:`dyntrace.analysis.find_plateaus` (level·(1 − drop)), but without needing a plateau
    to be detected first (a run that never stalls escapes early). Non-finite losses are skipped.
    """
    steps = np.asarray(steps)
    loss = np.asarray(loss, dtype=np.float64)
    if steps.shape != loss.shape or loss.ndim != 1:
        raise ValueError(f"steps and loss must be 1-D of the same shape, got {steps.shape} and {loss.shape}")
    if not 0 < drop < 1:
        raise ValueError(f"drop must be in (0, 1), got {drop!r}")
    finite = np.flatnonzero(np.isfinite(loss))
    if finite.size == 0:
        return None
    start = loss[finite[0]]
    below = finite[loss[finite] <= start - drop * abs(start)]
    return int(steps[below[0]]) if below.size else None


def _odd(k):
    """The smallest odd integer ≥ max(k, 1)."""
    k = max(int(k), 1)
    return k if k % 2 else k + 1
