"""The curvature probe against closed forms, and what it must leave alone."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import dyntrace
from dyntrace.analysis import measurement_cost, sgd_threshold
from dyntrace.probes import PROBES, CurvatureProbe, make_probes
from dyntrace.probes.curvature import power_iteration

HUTCHINSON_VECTORS = 300


def record(model, optimizer, path, probe, *, steps=1, every=1, loss_fn, others=("scalars",), seed=0):
    """Train ``steps`` steps on ``loss_fn(model)`` with the probe; warnings from dyntrace fail."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dyntrace")
        with dyntrace.Recorder(model, optimizer, path, every=every, probes=[*others, probe]) as rec:
            for _ in range(steps):
                optimizer.zero_grad()
                loss = loss_fn(model)
                loss.backward()
                optimizer.step()
                rec.log(loss=loss)


def scalar(run, name):
    return run.scalar(f"curvature/{name}")[1]


@pytest.fixture
def least_squares():
    """L(w) = mean((Xw − y)²) over n = 256 correlated examples: Hessian 2XᵀX/n, d = 12."""
    gen = torch.Generator().manual_seed(0)
    n, d = 256, 12
    X = torch.randn(n, d, generator=gen, dtype=torch.float64) @ torch.randn(
        d, d, generator=gen, dtype=torch.float64
    )
    y = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    hessian = 2 * X.T @ X / n
    return X, y, hessian


def test_least_squares_top_eigenvalue_within_1_percent_and_trace_within_5_percent(
    least_squares, tmp_path, open_runs
):
    X, y, hessian = least_squares
    model = nn.Linear(X.shape[1], 1, bias=False).double()
    loss_fn = lambda m: ((m(X) - y) ** 2).mean()  # noqa: E731
    probe = CurvatureProbe(loss_fn=loss_fn, trace_samples=HUTCHINSON_VECTORS, iters=200, tol=1e-8)
    record(
        model,
        torch.optim.SGD(model.parameters(), lr=1e-4),
        tmp_path / "ls.h5",
        probe,
        steps=3,
        loss_fn=loss_fn,
    )
    run = open_runs(tmp_path / "ls.h5")
    eigenvalues = torch.linalg.eigvalsh(hessian)
    top, trace = float(eigenvalues[-1]), float(eigenvalues.sum())
    sharpness = scalar(run, "sharpness")
    assert sharpness[0] == pytest.approx(top, rel=0.01)
    assert sharpness[0] == pytest.approx(top, rel=1e-6)  # in fact: the power iteration converged
    # Hutchinson with 300 Rademacher vectors: Var zᵀAz = 2(‖A‖²_F − Σ A_ii²), SE ≈ 2 % here
    estimate, se = scalar(run, "trace"), scalar(run, "trace_se")
    np.testing.assert_allclose(estimate, trace, rtol=0.05)  # each of the three measurements
    h = hessian.numpy()
    analytic_se = math.sqrt(2 * ((h**2).sum() - (np.diag(h) ** 2).sum()) / HUTCHINSON_VECTORS)
    assert np.all(np.abs(estimate - trace) < 4 * analytic_se)
    assert se == pytest.approx(np.full(3, analytic_se), rel=0.3)
    # warm start: the next measurements begin at the last eigenvector (the weights barely move)
    iters = scalar(run, "iters")
    assert iters[0] > 5 and np.all(iters[1:] <= 3)
    # gradient descent's threshold 2/η, and the loss of the measurement batch
    assert scalar(run, "threshold") == pytest.approx(np.full(3, 2 / 1e-4))
    assert scalar(run, "batch_size")[0] == X.shape[0]


def test_power_iteration_without_host_syncs_agrees(least_squares):
    _, _, hessian = least_squares

    def operator(v):
        return [hessian @ v[0]]

    v0 = [torch.ones(hessian.shape[0], dtype=torch.float64)]
    lam, v, used = power_iteration(operator, v0, iters=300, tol=1e-10)
    lam_masked, v_masked, used_masked = power_iteration(operator, v0, iters=300, tol=1e-10, sync_free=True)
    assert float(lam_masked) == pytest.approx(float(lam), rel=1e-12)
    assert float(used_masked) == float(used) < 300
    torch.testing.assert_close(v_masked[0], v[0])
    assert float(lam) == pytest.approx(float(torch.linalg.eigvalsh(hessian)[-1]), rel=1e-8)


class Quadratic(nn.Module):
    """f(θ) = ½ Σ h_i θ_i²: the Hessian is diag(h)."""

    def __init__(self, h):
        super().__init__()
        self.h = h
        self.theta = nn.Parameter(torch.ones_like(h))

    def forward(self):
        return 0.5 * (self.h * self.theta**2).sum()


def test_preconditioned_sharpness_of_adam_on_a_diagonal_quadratic(tmp_path, open_runs):
    h = torch.tensor([0.5, 3.0, 20.0, 1.0, 7.0], dtype=torch.float64)
    model = Quadratic(h)
    lr, beta1, beta2, eps, t = 0.01, 0.9, 0.999, 1e-8, 7
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(beta1, beta2), eps=eps)
    v = torch.tensor([0.04, 0.5, 9.0, 1e-6, 4.0], dtype=torch.float64)
    opt.state[model.theta] = {
        "step": torch.tensor(float(t)),
        "exp_avg": torch.zeros_like(h),
        "exp_avg_sq": v.clone(),
    }
    probe = CurvatureProbe(loss_fn=lambda m: m(), iters=500, tol=1e-12, trace_samples=0)
    record(model, opt, tmp_path / "adam.h5", probe, loss_fn=lambda m: m())
    run = open_runs(tmp_path / "adam.h5")
    # P = (1 − β₁ᵗ)·diag(√(v/(1 − β₂ᵗ)) + ε): λ_max(P⁻¹H) = max h_i / P_ii
    p = (1 - beta1**t) * (torch.sqrt(v / (1 - beta2**t)) + eps)
    assert scalar(run, "precond_sharpness")[0] == pytest.approx(float((h / p).max()), rel=1e-6)
    assert scalar(run, "precond_threshold")[0] == pytest.approx((2 + 2 * beta1) / ((1 - beta1) * lr))
    assert scalar(run, "precond_threshold")[0] == pytest.approx(38 / lr)
    assert scalar(run, "sharpness")[0] == pytest.approx(20.0, rel=1e-6)
    assert "curvature/threshold" not in run.scalar_names  # no threshold for λ_max(H) under Adam


def test_preconditioned_sharpness_of_rmsprop_and_sgd_thresholds(tmp_path, open_runs):
    h = torch.tensor([2.0, 5.0, 0.3], dtype=torch.float64)
    model = Quadratic(h)
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, momentum=0.5)
    v = torch.tensor([1.0, 0.01, 4.0], dtype=torch.float64)
    opt.state[model.theta] = {
        "step": torch.tensor(3.0),
        "square_avg": v.clone(),
        "momentum_buffer": torch.zeros_like(h),
    }
    probe = CurvatureProbe(loss_fn=lambda m: m(), iters=500, tol=1e-12, trace_samples=0)
    record(model, opt, tmp_path / "rms.h5", probe, loss_fn=lambda m: m())
    run = open_runs(tmp_path / "rms.h5")
    assert scalar(run, "precond_sharpness")[0] == pytest.approx(
        float((h / (v.sqrt() + 1e-8)).max()), rel=1e-6
    )
    assert scalar(run, "precond_threshold")[0] == pytest.approx((2 + 2 * 0.5) / 0.01)
    for i, options in enumerate(
        [dict(momentum=0.9), dict(momentum=0.9, nesterov=True), dict(momentum=0.8, dampening=0.5)]
    ):
        model = Quadratic(h)
        probe = CurvatureProbe(loss_fn=lambda m: m(), trace_samples=0)
        record(
            model,
            torch.optim.SGD(model.parameters(), lr=0.05, **options),
            tmp_path / f"sgd{i}.h5",
            probe,
            loss_fn=lambda m: m(),
        )
        assert scalar(open_runs(tmp_path / f"sgd{i}.h5"), "threshold")[0] == pytest.approx(
            float(sgd_threshold(0.05, **options))
        )


def _bn_dropout_net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def _train_with(probes, path, x, y):
    model = _bn_dropout_net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(5)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dyntrace")
        with dyntrace.Recorder(model, opt, path, every=2, probes=probes) as rec:
            for _ in range(7):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                rec.log(loss=loss)
    return model, torch.get_rng_state()


def test_grads_batchnorm_buffers_rng_and_other_probes_bit_identical(tmp_path, open_runs):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 10, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    others = ["scalars", "activations", "gradients"]
    plain, plain_rng = _train_with(others, tmp_path / "plain.h5", x, y)
    probe = CurvatureProbe(loss_fn=lambda m: nn.functional.cross_entropy(m(x), y), trace_samples=3)
    measured, measured_rng = _train_with([*others, probe], tmp_path / "measured.h5", x, y)
    assert torch.equal(plain_rng, measured_rng)
    for (name, a), b in zip(plain.state_dict().items(), measured.state_dict().values()):
        assert torch.equal(a, b), name  # weights and BatchNorm running_mean, running_var, num_batches_tracked
    for a, b in zip(plain.parameters(), measured.parameters()):
        assert torch.equal(a.grad, b.grad)
    a, b = open_runs(tmp_path / "plain.h5"), open_runs(tmp_path / "measured.h5")
    for field in ("count", "sum", "sumsq", "hist"):  # the activations probe did not see the measurement
        np.testing.assert_array_equal(a.field("activations", field)[1], b.field("activations", field)[1])
    np.testing.assert_array_equal(a.scalar("grad_norm")[1], b.scalar("grad_norm")[1])
    assert len(b.scalar("curvature/sharpness")[0]) == 4


def test_measurement_inside_a_step_leaves_grad_buffers_and_rng_alone():
    """The same, checked right around one measurement (no training run to compare with)."""
    from dyntrace.probes.base import RecordContext

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 10, generator=gen), torch.randint(0, 3, (32,), generator=gen)
    model = _bn_dropout_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    nn.functional.cross_entropy(model(x), y).backward()
    probe = CurvatureProbe(loss_fn=lambda m: nn.functional.cross_entropy(m(x), y), trace_samples=2)
    ctx = RecordContext(model, opt)
    ctx.step = 1
    probe.setup(ctx)
    handles = probe.attach(ctx)
    grads = [p.grad.clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    rng = torch.get_rng_state()
    probe.before_step(ctx)
    for h in handles:
        h.remove()
    assert "curvature/sharpness" in ctx.scalars and math.isfinite(float(ctx.scalars["curvature/sharpness"]))
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))
    assert torch.equal(rng, torch.get_rng_state())


def test_record_mode_measures_the_record_steps_batch(tmp_path, open_runs):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=gen, dtype=torch.float64)
    models = {}
    for mode in ("fixed", "record"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 6)).double()
        if mode == "fixed":
            probe = CurvatureProbe(loss_fn=lambda m: nn.functional.mse_loss(m(x), x), tol=1e-10, iters=200)
        else:  # an autoencoder: the loss needs only the model's output and its input
            probe = CurvatureProbe(
                loss_fn=lambda out, inputs: nn.functional.mse_loss(out, inputs),
                batch="record",
                tol=1e-10,
                iters=200,
            )
        record(
            model,
            torch.optim.SGD(model.parameters(), lr=0.01),
            tmp_path / f"{mode}.h5",
            probe,
            steps=2,
            loss_fn=lambda m: nn.functional.mse_loss(m(x), x),
        )
        models[mode] = open_runs(tmp_path / f"{mode}.h5")
    for name in ("sharpness", "loss", "grad_sq"):
        np.testing.assert_allclose(scalar(models["record"], name), scalar(models["fixed"], name), rtol=1e-8)


def test_cost_in_plain_steps_is_recorded(tmp_path, open_runs):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=gen), torch.randint(0, 2, (64,), generator=gen)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    loss_fn = lambda m: nn.functional.cross_entropy(m(x), y)  # noqa: E731
    record(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        tmp_path / "cost.h5",
        CurvatureProbe(loss_fn=loss_fn, every=2),
        steps=20,
        every=3,
        loss_fn=loss_fn,
    )
    run = open_runs(tmp_path / "cost.h5")
    measured = run.scalar("curvature/sharpness")[0]
    np.testing.assert_array_equal(measured, [1, 7, 13, 19])  # every 2nd record step of steps 1, 4, 7, …
    seconds, plain = scalar(run, "seconds"), scalar(run, "plain_step_seconds")
    assert np.all(seconds > 0) and np.all(plain > 0)
    cost = measurement_cost(run)
    assert math.isfinite(cost) and cost > 0


def test_needs_a_loss_and_is_left_out_of_all():
    assert PROBES["curvature"] is CurvatureProbe
    assert "curvature" not in [p.name for p in make_probes("all")]
    assert "noise_scale" in [p.name for p in make_probes("all")]
    with pytest.raises(ValueError, match="Invalid loss_fn: None .*needs a loss"):
        make_probes(["curvature"])
    for bad in (
        dict(every=0),
        dict(batch="random"),
        dict(iters=0),
        dict(tol=-1),
        dict(trace_samples=-1),
        dict(batch_size=0),
    ):
        with pytest.raises(ValueError, match="Invalid"):
            CurvatureProbe(loss_fn=lambda m: m, **bad)


def test_the_step_timer_leaves_no_hook_behind(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 4, generator=gen), torch.randn(16, 1, generator=gen)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = lambda m: nn.functional.mse_loss(m(x), y)  # noqa: E731
    record(model, opt, tmp_path / "t.h5", CurvatureProbe(loss_fn=loss_fn), steps=5, every=2, loss_fn=loss_fn)
    # the last step (5) recorded: the timer waits for the next forward pass, then one step
    for _ in range(2):
        opt.zero_grad()
        loss_fn(model).backward()
        opt.step()
    loss_fn(model)
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_gpu_path_makes_no_sync_and_no_stray_tensor(tmp_path, optimizer, open_runs):
    """On a CPU machine: meta as the default device (a factory call without ``device=`` breaks)
    and the NoSync guard (no .item(), bool(t), float(t), … in dyntrace's code), with the
    power iteration's early stop off as on a GPU; the noise_scale probe under accumulation too."""
    from dyntrace.probes import NoiseScaleProbe
    from tests.sync_guard import NoSync

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 5, generator=gen), torch.randn(32, 1, generator=gen)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1))
    opt = (
        torch.optim.Adam(model.parameters(), lr=0.01)
        if optimizer == "adam"
        else torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    )

    def step():
        opt.zero_grad()
        for half in (slice(0, 16), slice(16, 32)):  # two micro-batches
            (nn.functional.mse_loss(model(x[half]), y[half]) / 2).backward()
        opt.step()

    step()  # optimizer state before the guards go up
    probe = CurvatureProbe(
        loss_fn=lambda m: nn.functional.mse_loss(m(x), y), early_stop=False, iters=5, trace_samples=3
    )
    transfers = []
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dyntrace")
        torch.set_default_device("meta")
        try:
            with dyntrace.Recorder(
                model,
                opt,
                tmp_path / "g.h5",
                every=2,
                probes=["gradients", NoiseScaleProbe(), probe],
                flush_every=3600,
            ):
                for _ in range(4):
                    with NoSync() as guard:
                        step()
                    transfers.append(guard.transfers)
        finally:
            torch.set_default_device(None)
    assert transfers == [1, 0, 1, 0]  # the record steps' one transfer each, the cost scalars with it
    run = open_runs(tmp_path / "g.h5")
    assert np.all(run.scalar("curvature/iters")[1] <= 5)  # products before convergence (the rest masked)
    assert (
        np.isfinite(run.scalar("curvature/sharpness")[1]).all()
        and np.isfinite(run.scalar("curvature/trace")[1]).all()
    )
    assert ("curvature/precond_sharpness" in run.scalar_names) == (optimizer == "adam")
    assert run.steps("noise_scale").tolist() == [1, 3]


def test_only_the_parameters_the_optimizer_steps_are_measured(tmp_path, open_runs):
    # f(a, b) = 3a² + 50b² with b frozen: the Hessian over the trained parameter is 6, not 100
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.ones(1, dtype=torch.float64))
            self.b = nn.Parameter(torch.ones(1, dtype=torch.float64))

        def forward(self):
            return 3 * self.a.pow(2).sum() + 50 * self.b.pow(2).sum()

    model = Two()
    opt = torch.optim.SGD([model.a], lr=0.01)  # b is stepped by nothing
    record(
        model,
        opt,
        tmp_path / "two.h5",
        CurvatureProbe(loss_fn=lambda m: m(), tol=1e-10),
        loss_fn=lambda m: m(),
    )
    assert scalar(open_runs(tmp_path / "two.h5"), "sharpness")[0] == pytest.approx(6.0)
