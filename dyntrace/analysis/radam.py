"""RAdam's variance rectification and the variance of Adam's adaptive learning rate.

Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020
(REFERENCES §2). ψ_t = √((1−β₂ᵗ)/v_t) is Adam's adaptive learning rate; with g ~ N(0, σ²),
ψ_t² is approximately scaled inverse-χ² with ρ_t degrees of freedom, so its variance is
unbounded in the first steps. RAdam multiplies ψ_t by r_t once ρ_t is large enough.
All functions broadcast over arrays of t or ρ.
"""

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter
from scipy.special import gammaln

__all__ = [
    "rho_inf",
    "rho_t",
    "rectification",
    "is_rectified",
    "psi_variance_exact",
    "psi_variance_approx",
    "PsiVariance",
    "simulate_psi_variance",
]


def _check_beta2(beta2):
    if not 0.0 < beta2 < 1.0:
        raise ValueError(f"beta2 must be in (0, 1), got {beta2!r}")


def rho_inf(beta2):
    """Maximum length of the approximated simple moving average: ρ∞ = 2/(1−β₂) − 1."""
    _check_beta2(beta2)
    return 2.0 / (1.0 - beta2) - 1.0


def rho_t(t, beta2):
    """Length of the approximated SMA at step t ≥ 1: ρ_t = ρ∞ − 2tβ₂ᵗ/(1−β₂ᵗ); ρ₁ = 1."""
    t = np.asarray(t, dtype=np.float64)
    if np.any(t < 1):
        raise ValueError("t counts optimizer steps from 1")
    log_b = np.log(beta2)
    # β₂ᵗ/(1−β₂ᵗ) with expm1 so that 1−β₂ᵗ keeps its digits when β₂ᵗ is close to 1
    return rho_inf(beta2) - 2.0 * t * np.exp(t * log_b) / -np.expm1(t * log_b)


def rectification(t, beta2):
    """RAdam's rectification term r_t = √[(ρ_t−4)(ρ_t−2)ρ∞ / ((ρ∞−4)(ρ∞−2)ρ_t)].

    NaN where ρ_t ≤ 4 (the variance of ψ_t is not finite there and the paper does not rectify).
    At β₂ = 0.999: r₆ ≈ 0.0258, r₁₀₀ ≈ 0.215, r₅₀₀₀ ≈ 0.983.
    """
    rho, ri = rho_t(t, beta2), rho_inf(beta2)
    defined = rho > 4.0
    safe = np.where(defined, rho, 5.0)
    r = np.sqrt((safe - 4.0) * (safe - 2.0) * ri / ((ri - 4.0) * (ri - 2.0) * safe))
    return np.where(defined, r, np.nan)


def is_rectified(t, beta2, *, threshold=5.0):
    """Whether step t uses the rectified adaptive step: ρ_t > threshold.

    ``threshold`` is 5 in ``torch.optim.RAdam`` and the authors' code (rectified from step 6
    at β₂ = 0.999), 4 in the paper; before it, RAdam steps with the momentum term alone.
    """
    return rho_t(t, beta2) > threshold


def psi_variance_exact(rho, sigma=1.0):
    """Var[ψ] when ψ² is scaled inverse-χ² with ρ degrees of freedom (Liu et al., eq. 4).

    Var[ψ] = σ⁻²[ρ/(ρ−2) − (ρ/2)(Γ((ρ−1)/2)/Γ(ρ/2))²]; ρ = 5, 10, 100 → 0.2520, 0.0756,
    0.00519 at σ = 1. +inf where ρ ≤ 2 (E[ψ²] diverges). The Gamma ratio is taken through
    log-gamma; for ρ ≥ 100 both terms are rewritten around 1 (Stirling's series for the
    log-gamma difference, expm1) because each term tends to 1 while the variance is ≈ 1/(2ρ):
    subtracting them directly would leave only round-off at large ρ.
    """
    rho = np.asarray(rho, dtype=np.float64)
    finite = rho > 2.0
    a = np.where(finite, rho, 3.0) / 2.0  # placeholder 3 where the variance is infinite
    # L = log[(ρ/2)(Γ(a − ½)/Γ(a))²] with a = ρ/2; Var = ρ/(ρ−2) − e^L = 2/(ρ−2) − expm1(L)
    direct = np.log(a) + 2.0 * (gammaln(a - 0.5) - gammaln(a))
    # lnΓ(x) = (x−½)ln x − x + ½ln 2π + μ(x) turns L into O(1) terms without cancellation
    stirling = 2.0 * (a - 1.0) * np.log1p(-0.5 / a) + 1.0 + 2.0 * (_binet(a - 0.5) - _binet(a))
    log_term = np.where(a >= 50.0, stirling, direct)
    var = (2.0 / (2.0 * a - 2.0) - np.expm1(log_term)) / np.asarray(sigma, dtype=np.float64) ** 2
    return np.where(finite, var, np.inf)


def _binet(x):
    """μ(x) = lnΓ(x) − [(x−½)ln x − x + ½ln 2π], Stirling's series; error < 1e-19 for x ≥ 49."""
    x2 = x * x
    return (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0 - 1.0 / (1680.0 * x2)) / x2) / x2) / x


def psi_variance_approx(rho, sigma=1.0):
    """First-order approximation Var[ψ] ≈ ρ/(2(ρ−2)(ρ−4)σ²), the one r_t is built on.

    NaN where ρ ≤ 4.
    """
    rho = np.asarray(rho, dtype=np.float64)
    defined = rho > 4.0
    safe = np.where(defined, rho, 5.0)
    var = safe / (2.0 * (safe - 2.0) * (safe - 4.0) * np.asarray(sigma, dtype=np.float64) ** 2)
    return np.where(defined, var, np.nan)


@dataclass(frozen=True)
class PsiVariance:
    """Monte-Carlo variance of Adam's adaptive learning rate; arrays of shape (T,).

    ``t`` = 1..T; ``var_adam`` = Var[ψ_t] across chains; ``var_rectified`` = Var[r_t ψ_t],
    NaN where r_t is undefined (ρ_t ≤ 4).
    """

    t: np.ndarray
    var_adam: np.ndarray
    var_rectified: np.ndarray


def simulate_psi_variance(steps, *, chains=20_000, mu=0.0, beta2=0.999, eps=1e-8, seed=0):
    """Simulate the paper's variance figure: Var[ψ_t] over independent chains, t = 1..steps.

    Each chain draws g_t ~ N(μ, 1), keeps v_t = β₂v_{t−1} + (1−β₂)g_t² from v_0 = 0 and forms
    ψ_t = 1/(√(v_t/(1−β₂ᵗ)) + ε) as torch's Adam does. Reproduces Var[ψ_t] ≈ 0.252 (t = 5),
    0.0756 (t = 10), 5e-3 (t = 100) and a nearly flat Var[r_t ψ_t] ≈ 2.3e-4 for t ≥ 50.
    Var[ψ_2] is infinite (ρ₂ < 2): its sample value grows with the number of chains.
    Works in blocks of steps, so memory stays at ≈ 2M floats whatever ``steps`` is.
    """
    _check_beta2(beta2)
    if steps < 1 or chains < 2:
        raise ValueError(f"need steps ≥ 1 and chains ≥ 2, got steps={steps!r}, chains={chains!r}")
    rng = np.random.default_rng(seed)
    t = np.arange(1, steps + 1)
    var_adam = np.empty(steps)
    block = max(1, 2_000_000 // chains)
    state = np.zeros((1, chains))  # lfilter's carried state: β₂·v_{t−1}
    for first in range(0, steps, block):
        tb = t[first : first + block]
        g = rng.normal(mu, 1.0, size=(tb.size, chains))
        v, state = lfilter([1.0 - beta2], [1.0, -beta2], g * g, axis=0, zi=state)
        v_hat = v / -np.expm1(tb * np.log(beta2))[:, None]
        var_adam[first : first + block] = np.var(1.0 / (np.sqrt(v_hat) + eps), axis=1, ddof=1)
    var_rectified = rectification(t, beta2) ** 2 * var_adam
    return PsiVariance(t=t, var_adam=var_adam, var_rectified=var_rectified)
