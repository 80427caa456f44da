"""Stability thresholds against simulated iterations, the edge-of-stability summary, the noise
scale's standard error, and the two curvature diagnoses."""

import numpy as np
import pytest

from dyntrace.analysis import (
    Thresholds,
    adam_threshold,
    diagnose,
    edge_of_stability,
    noise_scale_estimate,
    sgd_threshold,
)

from .test_diagnoses import FakeRun


def torch_sgd_growth(lam, lr, momentum=0.0, dampening=0.0, nesterov=False, steps=3000):
    """|x| after torch's SGD update on f(x) = λx²/2 from x = 1 (as torch/optim/sgd.py)."""
    x, buf = 1.0, None
    for _ in range(steps):
        g = lam * x
        if momentum:
            buf = g if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        x -= lr * g
        if abs(x) > 1e6:
            break
    return abs(x)


@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True}, {"momentum": 0.7, "dampening": 0.4}],
)
def test_sgd_threshold_separates_stable_from_unstable(options):
    lr = 0.1
    limit = float(sgd_threshold(lr, **options))
    assert torch_sgd_growth(0.99 * limit, lr, **options) < 1.0
    assert torch_sgd_growth(1.01 * limit, lr, **options) > 1e3


def test_gradient_descent_is_two_over_eta_and_adam_38_over_eta():
    assert sgd_threshold(0.2) == pytest.approx(10.0)
    assert adam_threshold(1e-3, 0.9) == pytest.approx(38_000.0)
    np.testing.assert_allclose(sgd_threshold(np.array([0.1, 0.2])), [20.0, 10.0])


def test_adam_threshold_is_that_of_frozen_preconditioned_ema_momentum():
    # Adam with its preconditioner frozen: m ← β₁m + (1 − β₁)g, x ← x − η P⁻¹m, so on f = λx²/2
    # the curvature that matters is λ/P (Cohen et al. 2022, "frozen Adam")
    lr, beta1, p = 1e-3, 0.9, 5.0
    limit = float(adam_threshold(lr, beta1))

    def growth(lam):
        x, m = 1.0, 0.0
        for _ in range(5000):
            m = beta1 * m + (1 - beta1) * lam * x
            x -= lr * m / p
            if abs(x) > 1e6:
                break
        return abs(x)

    assert growth(0.99 * limit * p) < 1.0
    assert growth(1.01 * limit * p) > 1e3


def test_edge_of_stability_reached_and_hover():
    steps = np.arange(0, 1000, 10)
    ratio = np.where(steps < 400, 0.3 + 0.7 * steps / 400, 1.05 + 0.03 * np.sin(steps))
    eos = edge_of_stability(steps, ratio * 20.0, 20.0)
    assert eos.reached == 350  # first ratio ≥ 0.9: 0.3 + 0.7·350/400 = 0.9125 (340: 0.895)
    assert eos.hover == pytest.approx(1.05, abs=0.02)
    assert eos.initial == pytest.approx(0.3)  # at the first measurement
    never = edge_of_stability(steps, 0.5 * np.ones(steps.size), np.full(steps.size, 1.0))
    assert never.reached is None and np.isnan(never.hover)
    with pytest.raises(ValueError, match="same shape"):
        edge_of_stability(steps, np.ones(3), 1.0)


def test_noise_scale_estimate_and_its_standard_error_are_calibrated():
    # |G_B|² of Gaussian mean gradients with G = (1, …) and Σ = diag(s²): E|G_B|² = |G|² + tr Σ / B
    rng = np.random.default_rng(0)
    d, b_small, b_big, n = 8, 4, 32, 300
    g_true = np.linspace(0.2, 0.6, d)
    s = np.linspace(0.5, 2.0, d)
    truth = (s**2).sum() / (g_true**2).sum()

    def draws():
        noise = rng.standard_normal((n, b_big, d)) * s
        small = g_true + noise[:, :b_small].mean(axis=1)  # the first micro-batch inside the big one
        big = g_true + noise.mean(axis=1)
        return (small**2).sum(axis=1), (big**2).sum(axis=1)

    estimates = [noise_scale_estimate(*draws(), b_small, b_big) for _ in range(200)]
    values = np.array([e.b_simple for e in estimates])
    errors = np.array([e.stderr for e in estimates])
    assert abs(values.mean() - truth) < 3 * values.std() / np.sqrt(values.size)  # (ratio bias is small)
    assert values.std() == pytest.approx(np.median(errors), rel=0.2)  # the delta-method SE is the spread
    assert np.mean(np.abs(values - truth) < 2 * errors) > 0.9
    with pytest.raises(ValueError, match="b_small < b_big"):
        noise_scale_estimate(np.ones(5), np.ones(5), 8, 8)


def _curvature_run(ratio, threshold=10.0, *, batch=None, b_simple=None):
    steps = np.arange(10, 10 * (len(ratio) + 1), 10)
    scalars = {
        "curvature/sharpness": (steps, np.asarray(ratio) * threshold),
        "curvature/threshold": (steps, np.full(len(ratio), threshold)),
    }
    if batch is not None:  # |G|² at the training batch and at a measurement batch of 1000, noise-free
        g2, tr = 1.0, float(b_simple)
        scalars.update(
            {
                "curvature/train_grad_sq": (steps, np.full(len(ratio), g2 + tr / batch)),
                "curvature/grad_sq": (steps, np.full(len(ratio), g2 + tr / 1000)),
                "curvature/train_batch_size": (steps, np.full(len(ratio), float(batch))),
                "curvature/batch_size": (steps, np.full(len(ratio), 1000.0)),
            }
        )
    return FakeRun(scalars, {}, {})


def test_diagnoses_edge_of_stability():
    # ratio 0.2 → 0.95 over 20 measurements (≥ 0.9 from the 19th, step 190), then 1.04
    found = diagnose(_curvature_run(np.r_[np.linspace(0.2, 0.95, 20), np.full(20, 1.04)]))
    eos = [d for d in found if d.kind == "edge_of_stability"]
    assert len(eos) == 1 and eos[0].start == 190 and eos[0].value == pytest.approx(1.04, abs=0.01)
    assert "edge of stability" in eos[0].message
    assert not [
        d for d in diagnose(_curvature_run(np.linspace(0.1, 0.5, 40))) if d.kind == "edge_of_stability"
    ]
    # reached once, then fell far below: not hovering
    fell = _curvature_run(np.r_[np.full(5, 0.95), np.full(30, 0.3)])
    assert not [d for d in diagnose(fell, thresholds=Thresholds()) if d.kind == "edge_of_stability"]


@pytest.mark.parametrize(
    "batch, b_simple, expected", [(8, 500.0, "below"), (512, 20.0, "above"), (64, 100.0, None)]
)
def test_diagnoses_batch_size_against_the_noise_scale(batch, b_simple, expected):
    run = _curvature_run(np.full(20, 0.5), batch=batch, b_simple=b_simple)
    found = [d for d in diagnose(run) if d.kind == "batch_size"]
    if expected is None:
        assert not found
    else:
        assert len(found) == 1 and f"far {expected}" in found[0].message
        assert found[0].value == pytest.approx(batch / b_simple, rel=1e-6)
