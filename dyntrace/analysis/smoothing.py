"""Smoothing and thinning of 1-D training curves (loss, gradient norm, any logged scalar).

Every function here treats non-finite entries (NaN, ±inf) as missing observations: they are
skipped, never averaged in, so one diverged step or one gap in a log does not poison a curve.
"""

from dataclasses import dataclass

import numpy as np
from scipy import signal

__all__ = ["ewma", "moving_average", "kaiser_smooth", "decimate", "decimate_bands", "Bands"]


def _as_series(values, name="values"):
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
    return x


def ewma(values, beta, *, bias_correction=True):
    """Exponentially weighted moving average of a series, shape (N,) → (N,).

    v_t = β·v_{t−1} + (1−β)·x_t with v_0 = 0; with ``bias_correction`` (default) the output is
    v_t / (1 − βᵗ), which removes the pull towards 0 of the first ≈ 1/(1−β) values
    (REFERENCES §8; Adam's bias correction). β = 0.9 averages over roughly the last 10 values,
    0.98 over 50. A non-finite x_t is a missing observation: the average does not move, t does
    not advance, and the output repeats the previous value (NaN before the first finite one).
    """
    x = _as_series(values)
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    finite = np.isfinite(x)
    observed = x[finite]
    v = signal.lfilter([1.0 - beta], [1.0, -beta], observed)  # the recurrence above, in C
    if bias_correction and beta > 0:
        t = np.arange(1, observed.size + 1)
        v = v / -np.expm1(t * np.log(beta))  # 1 − βᵗ, accurate for β close to 1
    # position i gets the average of the finite values up to and including i
    count = np.cumsum(finite)
    out = np.full(x.shape, np.nan)
    seen = count > 0
    out[seen] = v[count[seen] - 1]
    return out


def _window_mean(x, weights):
    """Centred weighted mean over the finite neighbours of each point, shape (N,) → (N,).

    At the edges and around gaps the kernel is truncated and renormalised over the values that
    exist, so no value is invented (no padding, no reflection). ``weights`` has odd length; its
    middle entry is the point itself. Returns (mean, weight): mean is NaN where a window holds
    no finite value; weight is the sum of the weights that were used (a count for a boxcar).
    """
    finite = np.isfinite(x)
    num = signal.convolve(np.where(finite, x, 0.0), weights, mode="same")
    den = signal.convolve(finite.astype(np.float64), weights, mode="same")
    # FFT convolution leaves round-off where the true weight sum is exactly 0
    has_data = den > 1e-9 * weights.sum()
    mean = np.full(x.shape, np.nan)
    mean[has_data] = num[has_data] / den[has_data]
    return mean, np.where(has_data, den, 0.0)


def moving_average(values, window):
    """Centred moving average over ``window`` points (odd), shape (N,) → (N,).

    Edges and gaps are handled as in :func:`kaiser_smooth`: the window is truncated to the
    finite values that exist, so the first and last window//2 points average fewer values.
    """
    x = _as_series(values)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window!r}")
    return _window_mean(x, np.ones(window))[0]


def kaiser_smooth(values, taps=11, beta=2.0):
    """Smooth a loss curve with a normalised Kaiser window, shape (N,) → (N,).

    The book's smoothing (Saito, ch. 6: 11 taps, β = 2; REFERENCES §1), centred so it does not
    lag. Where the book pads the ends with reflected values, here the window is truncated and
    renormalised over the values that exist, so the first and last few points are averages of
    fewer real values rather than of invented ones. Non-finite values are skipped the same way.
    ``taps`` must be odd and positive.
    """
    x = _as_series(values)
    if taps < 1 or taps % 2 == 0:
        raise ValueError(f"taps must be a positive odd integer, got {taps!r}")
    return _window_mean(x, np.kaiser(taps, beta))[0]


def _buckets(steps, values, n_buckets):
    """Split a series into at most ``n_buckets`` consecutive runs of equal length.

    Returns (steps, values) reshaped to (buckets, size), the last row padded with NaN values
    (and repeats of the last step); every row holds at least one real point.
    """
    s = np.asarray(steps)
    x = _as_series(values)
    if s.shape != x.shape:
        raise ValueError(f"steps and values must have the same shape, got {s.shape} and {x.shape}")
    size = -(-x.size // n_buckets)
    n_buckets = -(-x.size // size)
    pad = size * n_buckets - x.size
    xs = np.concatenate([x, np.full(pad, np.nan)]).reshape(n_buckets, size)
    ss = np.concatenate([s, np.repeat(s[-1:], pad)]).reshape(n_buckets, size)
    return ss, xs


def decimate(steps, values, max_points):
    """Thin a long series for plotting while keeping every spike, (N,), (N,) → (M,), (M,).

    The series is cut into ⌊max_points/2⌋ consecutive buckets of equal length; each bucket keeps
    the points where its minimum and its maximum occur, in step order, so a line through the
    result covers the same envelope as the full series (M ≤ max_points). A bucket that holds only
    non-finite values keeps one NaN so the gap still shows. Series of at most ``max_points``
    points come back unchanged (as copies).
    """
    s = np.asarray(steps)
    x = _as_series(values)
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points!r}")
    if x.size <= max_points:
        return s.copy(), x.copy()
    _, xs = _buckets(s, x, max_points // 2)
    finite = np.isfinite(xs)
    lo = np.argmin(np.where(finite, xs, np.inf), axis=1)
    hi = np.argmax(np.where(finite, xs, -np.inf), axis=1)
    offset = np.arange(xs.shape[0])[:, None] * xs.shape[1]
    # an all-NaN bucket gives index 0 twice: one NaN kept; unique also sorts into step order
    keep = np.unique(np.stack([lo, hi], axis=1) + offset)
    return s[keep], x[keep]


@dataclass(frozen=True)
class Bands:
    """Per-bucket summary of a series for a line with a shaded band; all arrays shape (M,).

    ``steps`` is the mean step of each bucket; ``mean``, ``min``, ``max`` ignore non-finite
    values and are NaN for a bucket with none.
    """

    steps: np.ndarray
    mean: np.ndarray
    min: np.ndarray
    max: np.ndarray


def decimate_bands(steps, values, n_buckets):
    """Mean, minimum and maximum of a series over ``n_buckets`` consecutive buckets → Bands.

    For a line (the mean) with a shaded min–max band. Series of at most ``n_buckets`` points
    give one bucket per point.
    """
    s = np.asarray(steps, dtype=np.float64)
    x = _as_series(values)
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be at least 1, got {n_buckets!r}")
    if x.size == 0:
        return Bands(steps=s.copy(), mean=x.copy(), min=x.copy(), max=x.copy())
    ss, xs = _buckets(s, x, n_buckets)
    # mean step over the real points of each bucket (the padding repeats the last step)
    real = np.arange(xs.size).reshape(xs.shape) < x.size
    step_mean = (ss * real).sum(axis=1) / real.sum(axis=1)
    finite = np.isfinite(xs)
    n = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, xs, 0.0).sum(axis=1) / n
    lo = np.where(n > 0, np.where(finite, xs, np.inf).min(axis=1), np.nan)
    hi = np.where(n > 0, np.where(finite, xs, -np.inf).max(axis=1), np.nan)
    return Bands(steps=step_mean, mean=mean, min=lo, max=hi)
