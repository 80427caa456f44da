import numpy as np
import pytest

from dyntrace.analysis import gradient_noise_scale, minibatch_noise

# Linear regression, loss ½(xᵀw − y)², x ~ N(0, I_d), y = xᵀw* + n, n ~ N(0, s²).
# Per-example gradient at w = w* + δ: g = x(xᵀδ − n). Its mean is G = δ and, by Isserlis'
# theorem, E[g gᵀ] = |δ|²I + 2δδᵀ + s²I, so Σ = (|δ|² + s²)I + δδᵀ and
# B_simple = tr Σ / |G|² = d(1 + s²/|δ|²) + 1. With d = 10, |δ| = 1, s² = 4.172: 52.72,
# the calibration value of REFERENCES §7.
D, NOISE_VAR = 10, 4.172
DELTA = np.ones(D) / np.sqrt(D)
TRUE_G2 = DELTA @ DELTA
TRUE_TRACE = D * (DELTA @ DELTA + NOISE_VAR) + DELTA @ DELTA
TRUE_B = TRUE_TRACE / TRUE_G2
SIGMA = (DELTA @ DELTA + NOISE_VAR) * np.eye(D) + np.outer(DELTA, DELTA)


def per_example_gradients(rng, shape):
    x = rng.standard_normal((*shape, D))
    residual = x @ DELTA - np.sqrt(NOISE_VAR) * rng.standard_normal(shape)
    return x * residual[..., None]


def minibatch_sq_norms(rng, steps, batch):
    g = per_example_gradients(rng, (steps, batch)).mean(axis=1)
    return (g * g).sum(axis=1)


def test_the_analytic_covariance_is_right():
    g = per_example_gradients(np.random.default_rng(0), (400_000,))
    assert TRUE_B == pytest.approx(52.72)
    np.testing.assert_allclose(g.mean(axis=0), DELTA, atol=0.03)  # SE ≈ √(5.2/4e5) ≈ 0.004
    np.testing.assert_allclose(np.cov(g.T), SIGMA, atol=0.1)  # SE of an entry ≈ 0.01
    assert np.trace(np.cov(g.T)) == pytest.approx(TRUE_TRACE, rel=0.01)


def test_gradient_noise_scale_recovers_b_simple():
    # minibatch gradients drawn from N(G, Σ/B) with the analytic G and Σ
    rng = np.random.default_rng(0)
    chol = np.linalg.cholesky(SIGMA)
    steps, b_small, b_big = 20_000, 16, 256

    def sq_norms(batch):
        g = DELTA + rng.standard_normal((steps, D)) @ chol.T / np.sqrt(batch)
        return (g * g).sum(axis=1)

    ns = gradient_noise_scale(sq_norms(b_small), sq_norms(b_big), b_small, b_big, beta=0.9999)
    # Over 30 seeds: B_simple 52.78 ± 0.7 %, |G|² ± 0.4 %, tr Σ ± 0.4 % (relative spread);
    # the tolerances are about 3.5 of those standard deviations.
    assert ns.b_simple[-1] == pytest.approx(TRUE_B, rel=0.025)
    assert ns.grad_sq[-1] == pytest.approx(TRUE_G2, rel=0.015)
    assert ns.trace_sigma[-1] == pytest.approx(TRUE_TRACE, rel=0.015)


def test_gradient_noise_scale_on_real_minibatches():
    # the same regression, minibatches of actual examples: heavy-tailed per-example gradients
    rng = np.random.default_rng(0)
    steps, b_small, b_big = 2000, 16, 256
    small = minibatch_sq_norms(rng, steps, b_small)
    big = minibatch_sq_norms(rng, steps, b_big)
    ns = gradient_noise_scale(small, big, b_small, b_big, beta=0.999)
    # Over 30 seeds: B_simple ± 2.3 %, |G|² ± 0.8 %, tr Σ ± 1.9 %; tolerances ≈ 3 of those.
    assert ns.b_simple[-1] == pytest.approx(TRUE_B, rel=0.07)
    assert ns.grad_sq[-1] == pytest.approx(TRUE_G2, rel=0.025)
    assert ns.trace_sigma[-1] == pytest.approx(TRUE_TRACE, rel=0.06)


def test_gradient_noise_scale_formula_on_exact_norms():
    # exact expectations E|G_B|² = |G|² + trΣ/B give back |G|² and trΣ at every step
    b_small, b_big = np.array([8.0, 8.0]), np.array([64.0, 128.0])
    ns = gradient_noise_scale(2.0 + 30.0 / b_small, 2.0 + 30.0 / b_big, b_small, b_big)
    np.testing.assert_allclose(ns.grad_sq, 2.0)
    np.testing.assert_allclose(ns.trace_sigma, 30.0)
    np.testing.assert_allclose(ns.b_simple, 15.0)


def test_gradient_noise_scale_is_nan_while_the_gradient_estimate_is_negative():
    ns = gradient_noise_scale([1.0, 1.0], [0.5, 0.5], 1, 2, beta=0.5)  # |G|² estimate = 0
    assert np.isnan(ns.b_simple).all()
    with pytest.raises(ValueError, match="b_small < b_big"):
        gradient_noise_scale([1.0], [1.0], 8, 8)


def test_minibatch_noise_recovers_the_noise_variance():
    rng = np.random.default_rng(0)
    steps = np.arange(20_000)
    trend = 2.0 * np.exp(-steps / 5000) + 0.5
    sigma = 0.05
    loss = trend + sigma * rng.standard_normal(steps.size)
    loss[[100, 5000]] = np.nan
    mn = minibatch_noise(steps, loss)  # window 401
    interior = slice(1000, -1000)
    np.testing.assert_allclose(mn.trend[interior], trend[interior], atol=0.01)
    # each local estimate pools 401 points: relative SE √(2/400) ≈ 7 %
    np.testing.assert_allclose(mn.variance[interior], sigma**2, rtol=0.25)
    assert np.nanmean(mn.variance) == pytest.approx(sigma**2, rel=0.02)
    np.testing.assert_allclose(mn.rel_std[interior], sigma / trend[interior], rtol=0.15)
    assert np.isnan(mn.residual[100])


def test_minibatch_noise_small_window_is_unbiased():
    # with 5 points the residual shrinks by 1 − 1/5; the correction undoes it
    rng = np.random.default_rng(1)
    loss = 1.0 + 0.1 * np.arange(50_000) / 50_000 + 0.2 * rng.standard_normal(50_000)
    mn = minibatch_noise(np.arange(loss.size), loss, window=5)
    assert np.nanmean(mn.variance) == pytest.approx(0.04, rel=0.02)
    assert np.nanvar(mn.residual) == pytest.approx(0.04 * 0.8, rel=0.02)
