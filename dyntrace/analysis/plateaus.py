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
    corners of the curve, not half a window inside them, that is also flat over its whole span
    (a line fitted to it changes by at most 2 × ``threshold`` of its level, or within 2
    standard errors under the curve's own noise: a slow descent is no plateau);
    it must span at least ``min_length`` points. Its escape is the first later step where
    s ≤ level·(1 − ``escape_drop``) and stays so for ``window`` points (none if the run ends
    before that is seen); a stretch after which the loss falls no faster than 3 × its own drift
    is a slow descent and no plateau.

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
    allowance = (
        _NOISE_Z * np.linalg.norm(kernel / kernel.sum()) * np.sqrt(noise_var[window:] + noise_var[:-window])
    )
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
        first, stop = _longest_flat(loss, first, stop, threshold, noise_var, max(1, window // 4))
        if stop - first < min_length:
            continue
        level = float(np.nanmedian(s[first:stop]))
        escape = _persistent_escape(s, stop, level - escape_drop * abs(level), window)
        if escape is not None and not _leaves_faster(loss, first, stop, window):
            continue  # the loss goes on falling as it did: a slow descent, not a plateau
        plateaus.append(
            Plateau(
                int(steps[first]), int(steps[stop - 1]), None if escape is None else int(steps[escape]), level
            )
        )
    return plateaus


def _longest_flat(loss, first, stop, threshold, noise_var, stride):
    """(start, end) of the longest stretch inside [first, stop) that is flat over its whole
    span (:func:`_flat_span`), trying starts every ``stride`` points."""
    best = (first, first)
    for start in range(first, stop, stride):
        if stop - start <= best[1] - best[0]:
            break
        end = _flat_span(loss, start, stop, threshold, noise_var)
        if end - start > best[1] - best[0]:
            best = (start, end)
    return best


def _flat_span(loss, first, stop, threshold, noise_var):
    """The end (exclusive) of the longest stretch from ``first`` inside [first, stop) that is
    flat over its whole span, not only window by window: a straight line fitted to the loss
    there changes, end to end, by at most 2 × ``threshold`` of its level or 2 standard errors
    of that change under the curve's own noise. A slow, steady descent passes every window's
    test but not this one; a true plateau of a noisy curve does."""
    x = loss[first:stop]
    ok = np.isfinite(x)
    t = np.arange(x.size, dtype=np.float64)
    n = np.cumsum(ok)
    st, sx = np.cumsum(np.where(ok, t, 0.0)), np.cumsum(np.where(ok, x, 0.0))
    stt, stx = np.cumsum(np.where(ok, t * t, 0.0)), np.cumsum(np.where(ok, t * x, 0.0))
    var = np.cumsum(np.where(ok, np.nan_to_num(noise_var[first:stop]), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = stt - st * st / n  # Σ(t − t̄)²
        slope = (stx - st * sx / n) / spread
        change = np.abs(slope) * t  # fitted change from the first point to point t
        se = np.sqrt(var / n / spread) * t
        level = np.abs(sx / n)
        flat = (n >= 3) & (change <= np.maximum(threshold * level, 3 * se))
    flat[: min(2, flat.size)] = True  # two points are always "flat"
    within = np.flatnonzero(flat)
    return first + int(within[-1]) + 1


#: An escape falls at least this many times faster than the plateau drifted.
_ESCAPE_SPEEDUP = 3.0


def _slope(x):
    """Least-squares slope of the finite values of ``x`` against their index (NaN if < 3)."""
    t = np.arange(x.size, dtype=np.float64)
    ok = np.isfinite(x)
    if ok.sum() < 3:
        return np.nan
    return float(np.polyfit(t[ok], x[ok], 1)[0])


def _leaves_faster(loss, first, stop, window):
    """Whether the loss, right after [first, stop), falls ``_ESCAPE_SPEEDUP`` times faster than
    its fitted drift on the stretch (over the next max(window, stretch length) points)."""
    during = _slope(loss[first:stop])
    after = _slope(loss[stop : stop + max(window, stop - first)])
    if not np.isfinite(after):
        return True  # nothing to compare with: the escape found is all there is
    return after < 0 and -after >= _ESCAPE_SPEEDUP * max(-during, 0.0)


def _persistent_escape(s, stop, below, window):
    """The first index at or after ``stop`` where the smoothed loss falls to ``below`` and stays
    there for ``window`` points (a blip down and back is no escape); None if it never does, or
    if the run ends before the fall can be confirmed."""
    under = np.append(s[stop:] <= below, False)
    starts = np.flatnonzero(under[:-1] & ~np.concatenate([[False], under[:-2]]))
    for begin in starts:
        run_end = begin + np.argmin(under[begin:])  # first point no longer under
        if run_end - begin >= window:
            return stop + int(begin)
    return None


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
