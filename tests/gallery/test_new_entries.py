"""The gallery entries for the course topics (issue 17, second half): every phenomenon claim is
rejected by a control run that lacks the phenomenon, and the numbers behind the claims are
checked against independent computations.

The entries themselves build in quick mode, with all their claims holding, in
``test_entries.py``; here each control is a short run recorded with the entry's own run
factory and fed to the entry's own claim function.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dyntrace
from dyntrace.trainer import TrainConfig


def _record(spec, path) -> dyntrace.Run:
    """Record a run spec (a TrainConfig or a callable ``path -> None``) with one thread, and open it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if isinstance(spec, TrainConfig):
            dyntrace.train(spec.replace(out=str(path)), progress=False)
        else:
            spec(str(path))
    finally:
        torch.set_num_threads(threads)
    return dyntrace.open_run(path)


@pytest.fixture
def record(tmp_path):
    opened = []

    def make(spec, name="run"):
        run = _record(spec, tmp_path / f"{name}.h5")
        opened.append(run)
        return run

    yield make
    for run in opened:
        run.close()


def _fails(claim):
    assert claim.kind == "phenomenon", claim
    assert not claim.passed, f"the control passed: {claim.text}: {claim.measured}"


# -- controls: each phenomenon claim rejects a run without the phenomenon -------------------------


def test_learning_rates_controls(record):
    from dyntrace.gallery import learning_rates as entry

    good = record(entry.NET.replace(lr=entry.NET_RATES["good"], steps=150))
    _fails(entry.claim_diverges(good))  # a good rate neither explodes nor ends at ln 10
    _fails(entry.claim_dead_after_divergence(good))
    _fails(entry.claim_too_small(good))


def test_saddle_points_controls(record):
    from dyntrace.gallery import saddle_points as entry

    # on the ridge without noise: gradient descent never leaves the saddle
    _fails(
        entry.claim_noise_escapes(record(entry.path_run("sgd", {}, entry.ON_RIDGE, 0.0, steps=120), "ridge"))
    )
    # the same noise started at the saddle itself does not stay where it started
    at_saddle = record(entry.path_run("sgd", {}, (0.0, 0.0), entry.NOISE), "saddle")
    _fails(entry.claim_minimum_holds(at_saddle, center=(0.0, 0.0)))
    # plain gradient descent in Adam's place takes far longer than 10 steps
    _fails(entry.claim_adam_escapes(record(entry.path_run("sgd", {}, entry.NEAR, 0.0, steps=30), "gd"), 67))


def test_optimizer_comparison_controls(record):
    from dyntrace.gallery import optimizer_comparison as entry

    def run(label, steps=150):
        name, lr, options = entry.OPTIMIZERS[label]
        return record(
            entry.BOOK.replace(optimizer=name, lr=lr, optimizer_options=options, steps=steps), label
        )

    sgd, momentum, faster_sgd = run("sgd"), run("momentum"), run("sgd_effective")
    _fails(entry.claim_effective_step(sgd, momentum))  # at Momentum's own lr, SGD is far behind it
    others = {"momentum": momentum, "adagrad": run("adagrad"), "adam": run("adam")}
    _fails(entry.claim_sgd_slowest(faster_sgd, others))  # SGD at lr / (1 − μ) is not the slowest
    assert entry.claim_sgd_slowest(sgd, others).passed


def test_init_training_controls(record):
    from dyntrace.gallery import init_training as entry

    he = record(entry.BOOK.replace(init="he_normal", steps=100, trajectory=50))
    _fails(entry.claim_identical_units(he))  # random rows are different units
    _fails(entry.claim_never_learns(he))


def test_l1_vs_l2_control(record):
    from dyntrace.gallery import l1_vs_l2 as entry

    _fails(entry.claim_l1_sparse(record(entry.penalty_run("none", 0.0, steps=200))))


def test_norms_batch_size_control(record):
    from dyntrace.gallery import norms_batch_size as entry

    small = record(entry.run_config("group", 2, epochs=1), "small")
    large = record(entry.run_config("group", 32, epochs=1), "large")
    _fails(entry.claim_small_batch_loses(small, large))  # GroupNorm does not care about the batch


def test_augmentation_controls(record):
    from dyntrace.gallery import augmentation as entry

    plain = record(entry.augmentation_run("none", {}, epochs=5))
    _fails(entry.claim_no_memorising(plain, plain, plain, plain))
    _fails(entry.claim_smaller_gap(plain, plain, plain, plain))
    _fails(entry.claim_less_confident(plain, plain, plain, plain))


def test_softmax_cross_entropy_controls(record):
    from dyntrace.gallery import softmax_cross_entropy as entry

    small = entry.STARTS["small"]
    ce, mse = (
        record(entry.loss_run("ce", small, steps=200), "ce"),
        record(entry.loss_run("mse", small, steps=200), "mse"),
    )
    _fails(entry.claim_gradient_ratio(ce, mse))  # without saturation the sigmoid's gradient is not tiny
    _fails(entry.claim_speed(ce, mse))


def test_dropout_controls(record):
    from dyntrace.gallery import dropout as entry

    plain = record(entry.dropout_run(0.0, epochs=10))
    _fails(
        entry.claim_robust(plain, plain)
    )  # without dropout, half the units gone costs most of the accuracy
    _fails(entry.claim_narrower_gap(plain, plain))


# -- the numbers behind the claims, computed independently ----------------------------------------


def test_unit_spread_by_hand():
    from dyntrace.plots.unit_weights import unit_spread

    assert unit_spread(np.tile([0.3, -0.1, 2.0], (5, 1))) == 0.0
    w = np.array([[1.0, 2.0], [3.0, 4.0]])  # std over units: 1 and 1; rms √(30/4)
    assert unit_spread(w) == pytest.approx(1.0 / math.sqrt(7.5))
    with pytest.raises(ValueError):
        unit_spread(np.ones(4))


def test_momentum_growth_rate_matches_the_recurrence():
    from dyntrace.gallery.saddle_points import momentum_rate

    lr, mu, h = 0.1, 0.9, -1.0
    rate, amplitude = momentum_rate(lr, mu, h)
    y, velocity, ys = 1e-6, 0.0, [1e-6]  # heavy ball on f = h y²/2, gradient h y, as torch's SGD
    for _ in range(80):
        velocity = mu * velocity + h * y
        y = y - lr * velocity
        ys.append(y)
    assert ys[-1] / ys[-2] == pytest.approx(rate, rel=1e-6)
    assert ys[-1] / (amplitude * 1e-6 * rate**80) == pytest.approx(1.0, rel=1e-6)


def test_gradient_descent_escape_and_noise_predictions_against_simulation():
    from dyntrace.gallery import saddle_points as entry

    # the exact 1-D map, by hand for the first steps
    assert entry.gd_escape(0.4) == 3  # 0.4 → 0.4336 → 0.4686 → 0.5048
    # noisy gradient descent on the ridge: 4000 chains of the exact map with Gaussian gradient noise
    rng = np.random.default_rng(0)
    lr, sigma = entry.LR, entry.NOISE
    y = np.zeros(4000)
    escaped = np.full(4000, -1)
    for t in range(1, 400):
        y = y - lr * (y**3 - y + sigma * rng.standard_normal(y.size))
        escaped[(escaped < 0) & (np.abs(y) >= entry.ESCAPE)] = t
    assert np.all(escaped > 0)
    median, low, high = entry.noise_escape_band()
    assert np.median(escaped) == pytest.approx(median, abs=3)
    assert np.quantile(escaped, 0.05) == pytest.approx(low, abs=4)
    assert np.quantile(escaped, 0.95) == pytest.approx(high, abs=8)
    # the same noise at a minimum of curvature 2: the stationary spread of an AR(1) process
    d = np.zeros(4000)
    for _ in range(200):
        d = d - lr * (2 * d + sigma * rng.standard_normal(d.size))
    assert d.std() == pytest.approx(entry.stationary_std(), rel=0.05)


def test_gaussian_share():
    from dyntrace.gallery.l1_vs_l2 import gaussian_share

    assert gaussian_share(1.0, 1.959964) == pytest.approx(0.95, abs=1e-6)
    samples = np.random.default_rng(0).normal(0, 0.2, 200_000)
    assert gaussian_share(0.2, 0.01) == pytest.approx(np.mean(np.abs(samples) < 0.01), abs=0.002)


def test_logit_gradient_formulas_against_autograd():
    from dyntrace.plots.logit_gradients import (
        ce_true_gradient,
        mse_sigmoid_true_gradient,
    )

    z = torch.tensor([[2.0, -1.0, 0.5, -3.0]], requires_grad=True)
    torch.nn.functional.cross_entropy(z, torch.tensor([3])).backward()
    p = torch.softmax(z.detach(), 1)[0, 3].item()
    assert abs(z.grad[0, 3].item()) == pytest.approx(ce_true_gradient(p), rel=1e-6)
    z = torch.tensor([-2.5], requires_grad=True)  # the true class's logit, target 1
    (0.5 * (torch.sigmoid(z) - 1) ** 2).sum().backward()
    s = torch.sigmoid(z.detach()).item()
    assert abs(z.grad.item()) == pytest.approx(mse_sigmoid_true_gradient(s), rel=1e-6)


def test_augmentation_target_text():
    from dyntrace.plots.augmentation import target_text

    assert target_text(3, 8, 1.0) == "3"
    assert target_text(3, 3, 0.4) == "3"
    assert target_text(3, 8, 0.7) == "0.70·3 + 0.30·8"


def test_plot_curves_draws_each_run_in_its_colour(record):
    from matplotlib.figure import Figure

    from dyntrace.gallery import saddle_points as entry
    from dyntrace.plots.curves import plot_curves

    run = record(entry.path_run("sgd", {}, entry.NEAR, 0.0, steps=20))
    fig = Figure()
    ax = fig.add_subplot()
    plot_curves(
        [run, run],
        labels=["a", "b"],
        colors=["#123456", "#abcdef"],
        ax=ax,
        smooth="none",
        raw=False,
        markers=False,
    )
    lines = {line.get_gid(): line for line in ax.get_lines()}
    assert lines["a"].get_color() == "#123456" and lines["b"].get_color() == "#abcdef"
    np.testing.assert_allclose(lines["a"].get_ydata(), run.scalar("loss")[1])


def test_merged_bins_sum_their_counts():
    from dyntrace.plots.weight_distribution import merged

    edges, counts = np.linspace(0, 1, 11), np.arange(1, 11)
    coarse_edges, coarse = merged(edges, counts, 0.25)  # 2 bins of 0.1 fit in 0.25; 3 does not divide 10
    np.testing.assert_allclose(coarse_edges, np.linspace(0, 1, 6))
    np.testing.assert_array_equal(coarse, [3, 7, 11, 15, 19])
    np.testing.assert_array_equal(merged(edges, counts, None)[1], counts)
