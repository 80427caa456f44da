import numpy as np
import pytest

from dyntrace.analysis import (
    is_rectified,
    psi_variance_approx,
    psi_variance_exact,
    rectification,
    rho_inf,
    rho_t,
    simulate_psi_variance,
)


def test_rho():
    assert rho_inf(0.999) == pytest.approx(1999)
    np.testing.assert_allclose(rho_t([1, 4, 5, 6], 0.999), [1.0, 3.9975, 4.9960, 5.9942], atol=5e-5)
    # early on ρ_t ≈ t; it tends to ρ∞
    assert rho_t(2, 0.999) == pytest.approx(2, abs=1e-3)
    assert rho_t(100_000, 0.999) == pytest.approx(1999)
    with pytest.raises(ValueError, match="t counts"):
        rho_t(0, 0.999)


def test_rectification_term():
    r = rectification([6, 10, 100, 1000, 5000], 0.999)
    np.testing.assert_allclose(r, [0.0258, 0.0490, 0.215, 0.645, 0.983], rtol=2e-3)
    assert np.isnan(rectification([1, 2, 3, 4], 0.999)).all()  # ρ_t ≤ 4
    assert rectification(5, 0.999) == pytest.approx(0.01731, rel=1e-3)  # ρ₅ = 4.996 > 4
    assert rectification(10**7, 0.999) == pytest.approx(1.0)


def test_is_rectified_thresholds():
    t = np.arange(1, 10)
    assert t[is_rectified(t, 0.999)].min() == 6  # torch: ρ_t > 5
    assert t[is_rectified(t, 0.999, threshold=4.0)].min() == 5  # the paper: ρ_t > 4


def test_psi_variance_exact_reference_values():
    # REFERENCES §2 (rounded there): 0.2520, 0.0756, 0.00519; the values below are from
    # mpmath at 50 digits
    np.testing.assert_allclose(
        psi_variance_exact([5, 10, 100]), [0.25195606140537, 0.07554595927506, 0.00519281574929], rtol=1e-11
    )
    assert psi_variance_exact(10, sigma=2.0) == pytest.approx(0.07554595927506 / 4)
    np.testing.assert_array_equal(psi_variance_exact([1.0, 2.0]), np.inf)


def test_psi_variance_exact_is_stable_for_large_rho():
    # mpmath at 50 digits: 5.000018750051876e-07 and 5.000000001875e-11; the formula taken
    # directly through log-gamma is off by 0.1 % at ρ = 1e6 and by a factor 7 at ρ = 1e8
    assert psi_variance_exact(1e6) == pytest.approx(5.000018750051876e-07, rel=1e-9)
    assert psi_variance_exact(1e10) == pytest.approx(5.000000001875e-11, rel=1e-5)
    # continuous across the switch between the two evaluations at ρ = 100
    below, above = psi_variance_exact([100 - 1e-9, 100 + 1e-9])
    assert below == pytest.approx(above, rel=1e-9)


def test_psi_variance_approx():
    np.testing.assert_allclose(psi_variance_approx([5, 10, 100]), [5 / 6, 10 / 96, 100 / (2 * 98 * 96)])
    assert np.isnan(psi_variance_approx(4.0))
    # r_t is the ratio of the approximate variances at ρ∞ and ρ_t
    t = np.array([10, 100, 1000])
    ratio = psi_variance_approx(rho_inf(0.999)) / psi_variance_approx(rho_t(t, 0.999))
    np.testing.assert_allclose(np.sqrt(ratio), rectification(t, 0.999), rtol=1e-12)
    # the approximation converges to the exact value: both ≈ 1/(2ρ)
    assert psi_variance_approx(1e4) == pytest.approx(psi_variance_exact(1e4), rel=1e-3)


# Monte-Carlo tolerances. The relative standard error of a sample variance is
# √((κ − 1)/N), κ the kurtosis of ψ_t, which is large for small ρ_t. Measured over 8 seeds
# at 50 000 chains it is 2.3 % at t = 5, 1.2 % at t = 10, 0.55 % at t = 100; the
# tolerances below are about 4 standard errors, added to the rounding of the paper's value.
# Reference values from 10⁶ chains: 0.2525 (t = 5), 0.0754 (t = 10), 0.00519 (t = 100).


@pytest.fixture(scope="module")
def early():
    return simulate_psi_variance(100, chains=50_000, seed=0)


@pytest.fixture(scope="module")
def long():
    return simulate_psi_variance(1000, chains=20_000, seed=1)


def test_simulated_adam_variance_matches_the_paper(early):
    np.testing.assert_array_equal(early.t, np.arange(1, 101))
    var = early.var_adam
    assert var[4] == pytest.approx(0.252, rel=0.10)
    assert var[9] == pytest.approx(0.0756, rel=0.05)
    assert var[99] == pytest.approx(5.19e-3, rel=0.025)  # the paper prints 5e-3
    # Var[ψ₂] is infinite (ρ₂ < 2): the paper's 6.8 is one finite sample of it, which grows
    # with the number of chains. All a finite sample can show is that it towers over t = 5.
    assert var[1] > 10 * var[4]
    assert np.all(np.diff(var[4:]) < 0)  # falls steadily once it is finite


def test_simulated_variance_follows_the_exact_formula(early):
    # the scaled-inverse-χ² model with ρ_t degrees of freedom, within MC error at t = 5…20
    t = np.arange(5, 21)
    np.testing.assert_allclose(early.var_adam[t - 1], psi_variance_exact(rho_t(t, 0.999)), rtol=0.1)


def test_rectified_variance_is_flat(long):
    assert np.isnan(long.var_rectified[:4]).all()
    rect = long.var_rectified[49:]  # t = 50 … 1000
    # 20 000 chains: relative SE ≈ √(2/N) = 1 % per step; 10⁶ chains give 2.26–2.41e-4 over
    # this range, the paper ≈ 2.3e-4
    assert rect.min() > 2.1e-4 and rect.max() < 2.5e-4
    assert rect.max() / rect.min() < 1.15
    # while Adam's own variance falls twentyfold over the same steps
    assert long.var_adam[49] / long.var_adam[999] > 15
    assert long.var_adam[999] == pytest.approx(5.4e-4, rel=0.06)


def naive_simulation(t_max, chains, mu, beta2, eps, seed):
    g = np.random.default_rng(seed).normal(mu, 1.0, size=(t_max, chains))
    v = np.zeros(chains)
    var = []
    for t in range(1, t_max + 1):
        v = beta2 * v + (1 - beta2) * g[t - 1] ** 2
        var.append(np.var(1 / (np.sqrt(v / (1 - beta2**t)) + eps), ddof=1))
    return np.array(var)


def test_simulation_matches_a_plain_loop_across_blocks():
    # 100 001 chains make blocks of 19 steps: the carried state must join them seamlessly
    sim = simulate_psi_variance(30, chains=100_001, mu=0.5, seed=5)
    np.testing.assert_allclose(sim.var_adam, naive_simulation(30, 100_001, 0.5, 0.999, 1e-8, 5), rtol=1e-9)


def test_simulation_options():
    shifted = simulate_psi_variance(10, chains=4000, mu=3.0, seed=0)
    # with E[g] = 3, v_t ≈ 10 and ψ barely moves: far below the μ = 0 variance of 0.0754
    assert shifted.var_adam[9] < 0.01
    with pytest.raises(ValueError, match="chains"):
        simulate_psi_variance(10, chains=1)
