"""How noisy training is: minibatch loss noise around its trend, and the gradient noise scale."""

from dataclasses import dataclass

import numpy as np

from dyntrace.analysis.smoothing import _window_mean, ewma

__all__ = [
    "MinibatchNoise",
    "minibatch_noise",
    "NoiseScale",
    "gradient_noise_scale",
    "NoiseScaleEstimate",
    "noise_scale_estimate",
]


@dataclass(frozen=True)
class MinibatchNoise:
    """Noise of a per-step loss around its trend; every array has shape (N,).

    ``trend`` is the centred moving average, ``residual`` = loss − trend, ``variance`` the
    local variance of the loss around the trend (loss units²), ``rel_std`` = √variance / |trend|.
    """

    steps: np.ndarray
    trend: np.ndarray
    residual: np.ndarray
    variance: np.ndarray
    rel_std: np.ndarray


def minibatch_noise(steps, loss, *, window=None):
    """Local noise of a minibatch loss curve around its smoothed trend, (N,), (N,) → MinibatchNoise.

    trend = centred moving average over ``window`` points (odd; default N // 50 rounded up
    to odd, at least 5); variance = centred moving average of residual²/(1 − 1/n), where n is the
    number of finite points in the trend's window: the residual of a point that is part of its
    own average is shrunk by that factor, so the result is unbiased for white noise around a
    locally linear trend. Non-finite losses are skipped.
    """
    steps = np.asarray(steps)
    x = np.asarray(loss, dtype=np.float64)
    if steps.shape != x.shape or x.ndim != 1:
        raise ValueError(f"steps and loss must be 1-D of the same shape, got {steps.shape} and {x.shape}")
    if window is None:
        window = max(5, (x.size // 50) | 1)
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer ≥ 3, got {window!r}")
    box = np.ones(window)
    trend, count = _window_mean(x, box)
    residual = x - trend
    with np.errstate(divide="ignore", invalid="ignore"):
        unbiased_sq = residual**2 / (1.0 - 1.0 / count)
        variance = _window_mean(unbiased_sq, box)[0]
        rel_std = np.sqrt(variance) / np.abs(trend)
    return MinibatchNoise(steps=steps, trend=trend, residual=residual, variance=variance, rel_std=rel_std)


@dataclass(frozen=True)
class NoiseScale:
    """Gradient noise scale over training; every array has shape (N,).

    ``grad_sq`` estimates |G|² (squared norm of the true gradient), ``trace_sigma`` tr Σ (the
    trace of the per-example gradient covariance), both EMA-averaged; ``b_simple`` =
    trace_sigma / grad_sq in examples, NaN where grad_sq ≤ 0 (noise still dominates).
    """

    grad_sq: np.ndarray
    trace_sigma: np.ndarray
    b_simple: np.ndarray


def gradient_noise_scale(sq_norm_small, sq_norm_big, b_small, b_big, *, beta=0.99):
    """The simple noise scale B_simple = tr Σ / |G|² from gradient norms at two batch sizes.

    McCandlish et al. 2018, appendix A (REFERENCES §7). Inputs: |G_small|², |G_big|² of shape
    (N,), squared norms of the mean-loss gradient over batches of b_small < b_big examples
    (scalars or (N,)). Per step, unbiased estimates
    |G|² ≈ (b_big|G_big|² − b_small|G_small|²)/(b_big − b_small) and
    tr Σ ≈ (|G_small|² − |G_big|²)/(1/b_small − 1/b_big)
    are each averaged with a bias-corrected EMA of factor ``beta`` (default 0.99, about the last
    100 steps) before dividing: each single-step estimate is far too noisy to divide directly.
    """
    small = np.asarray(sq_norm_small, dtype=np.float64)
    big = np.asarray(sq_norm_big, dtype=np.float64)
    if small.shape != big.shape or small.ndim != 1:
        raise ValueError(
            f"sq_norm_small and sq_norm_big must be 1-D of the same shape, got {small.shape} and {big.shape}"
        )
    b_small = np.asarray(b_small, dtype=np.float64)
    b_big = np.asarray(b_big, dtype=np.float64)
    if np.any(b_small <= 0) or np.any(b_big <= b_small):
        raise ValueError(f"need 0 < b_small < b_big, got b_small={b_small!r}, b_big={b_big!r}")
    grad_sq = ewma((b_big * big - b_small * small) / (b_big - b_small), beta)
    trace_sigma = ewma((small - big) / (1.0 / b_small - 1.0 / b_big), beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        b_simple = np.where(grad_sq > 0, trace_sigma / grad_sq, np.nan)
    return NoiseScale(grad_sq=grad_sq, trace_sigma=trace_sigma, b_simple=b_simple)


@dataclass(frozen=True)
class NoiseScaleEstimate:
    """One B_simple from N paired records, with its standard error.

    ``b_simple`` = mean(tr Σ estimates) / mean(|G|² estimates); ``stderr`` its delta-method
    standard error; ``grad_sq``, ``trace_sigma`` the two means; ``n`` the records used.
    """

    b_simple: float
    stderr: float
    grad_sq: float
    trace_sigma: float
    n: int


def noise_scale_estimate(sq_norm_small, sq_norm_big, b_small, b_big) -> NoiseScaleEstimate:
    """B_simple = tr Σ / |G|² over a window of records, with a standard error.

    The unbiased per-record estimates of :func:`gradient_noise_scale` (McCandlish et al. 2018,
    appendix A), S_i of tr Σ and G_i of |G|², are averaged plainly (no EMA) and divided:
    B = S̄ / Ḡ. Its standard error by the delta method, treating records as independent:
    SE² = (Var S − 2B Cov(S, G) + B² Var G) / (N Ḡ²). Records with a non-finite norm are skipped.
    """
    small = np.asarray(sq_norm_small, dtype=np.float64)
    big = np.asarray(sq_norm_big, dtype=np.float64)
    b_small = np.broadcast_to(np.asarray(b_small, dtype=np.float64), small.shape)
    b_big = np.broadcast_to(np.asarray(b_big, dtype=np.float64), small.shape)
    if small.shape != big.shape or small.ndim != 1:
        raise ValueError(
            f"sq_norm_small and sq_norm_big must be 1-D of the same shape, got {small.shape} and {big.shape}"
        )
    if np.any(b_small <= 0) or np.any(b_big <= b_small):
        raise ValueError("need 0 < b_small < b_big for every record")
    keep = np.isfinite(small) & np.isfinite(big)
    if keep.sum() < 2:
        raise ValueError(f"need at least 2 finite records, got {int(keep.sum())}")
    small, big, bs, bb = small[keep], big[keep], b_small[keep], b_big[keep]
    g = (bb * big - bs * small) / (bb - bs)
    s = (small - big) / (1.0 / bs - 1.0 / bb)
    n = g.size
    g_mean, s_mean = g.mean(), s.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        b = s_mean / g_mean
        cov = np.cov(np.stack([s, g]))  # [[Var S, Cov], [Cov, Var G]], ddof 1
        var = (cov[0, 0] - 2 * b * cov[0, 1] + b * b * cov[1, 1]) / (n * g_mean**2)
    return NoiseScaleEstimate(float(b), float(np.sqrt(max(var, 0.0))), float(g_mean), float(s_mean), int(n))
