"""The noise_scale probe: two batch sizes from gradient accumulation, against a known covariance."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import dyntrace
from dyntrace.analysis import noise_scale_estimate, noise_scale_records
from dyntrace.probes import NoiseScaleProbe

D, K, B = 10, 4, 8  # parameters, micro-batches per step, examples per micro-batch
MU = torch.full((D,), 0.3, dtype=torch.float64)  # the true gradient is −μ
STD = torch.linspace(0.5, 1.5, D, dtype=torch.float64)  # per-example gradient covariance diag(STD²)
B_SIMPLE = float((STD**2).sum() / (MU**2).sum())  # tr Σ / |G|² = 11.02 / 0.9 = 12.24


class LinearLoss(nn.Module):
    """ℓ(θ; a) = −θ·a: the per-example gradient is −a whatever θ, so G = −μ and Σ = Cov(a)."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(D, dtype=torch.float64))

    def forward(self, a):
        return -(a @ self.theta)


def train(path, *, steps, micro=K, scale=True, seed=0, capture=None):
    gen = torch.Generator().manual_seed(seed)
    model = LinearLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dyntrace")
        with dyntrace.Recorder(model, opt, path, every=1, probes=[NoiseScaleProbe()]) as rec:
            for step in range(1, steps + 1):
                opt.zero_grad()
                for i in range(micro):
                    a = MU + STD * torch.randn(B, D, generator=gen, dtype=torch.float64)
                    loss = model(a).mean()
                    (loss / micro if scale else loss).backward()
                    if capture is not None and step == capture["step"] and i == 0:
                        capture["first"] = model.theta.grad.clone()
                if capture is not None and step == capture["step"]:
                    capture["final"] = model.theta.grad.clone()
                opt.step()
                rec.log(loss=loss)


def test_recorded_norms_are_the_micro_batch_and_the_accumulated_gradient(tmp_path):
    capture = {"step": 5}
    train(tmp_path / "n.h5", steps=6, capture=capture)
    with dyntrace.open_run(tmp_path / "n.h5") as run:
        rec = noise_scale_records(run)
    np.testing.assert_array_equal(rec.steps, np.arange(1, 7))
    i = 4
    # the first micro-batch's own mean-loss gradient is K × its (1/K-scaled) contribution
    assert rec.sq_small[i] == pytest.approx(float((K * capture["first"]).pow(2).sum()), rel=1e-12)
    assert rec.sq_big[i] == pytest.approx(float(capture["final"].pow(2).sum()), rel=1e-12)
    assert rec.b_small[i] == B and rec.b_big[i] == K * B and rec.batch[i] == K * B


def test_b_simple_equals_the_formula_within_its_standard_error(tmp_path):
    train(tmp_path / "n.h5", steps=400)
    with dyntrace.open_run(tmp_path / "n.h5") as run:
        rec = noise_scale_records(run)
    est = noise_scale_estimate(rec.sq_small, rec.sq_big, rec.b_small, rec.b_big)
    assert est.n == 400
    assert abs(est.b_simple - B_SIMPLE) < 3 * est.stderr
    assert est.stderr < 0.15 * B_SIMPLE  # and the test has teeth: a 2× error would fail
    assert est.grad_sq == pytest.approx(float((MU**2).sum()), rel=0.2)
    assert est.trace_sigma == pytest.approx(float((STD**2).sum()), rel=0.2)


def test_a_loop_that_sums_micro_batch_losses_gives_the_same_noise_scale(tmp_path):
    train(tmp_path / "mean.h5", steps=30, scale=True)
    train(tmp_path / "sum.h5", steps=30, scale=False)
    with dyntrace.open_run(tmp_path / "mean.h5") as a, dyntrace.open_run(tmp_path / "sum.h5") as b:
        ra, rb = noise_scale_records(a), noise_scale_records(b)
    np.testing.assert_allclose(rb.sq_small, K**2 * ra.sq_small, rtol=1e-10)  # both scaled by K²
    np.testing.assert_allclose(rb.sq_big, K**2 * ra.sq_big, rtol=1e-10)
    ea = noise_scale_estimate(ra.sq_small, ra.sq_big, ra.b_small, ra.b_big)
    eb = noise_scale_estimate(rb.sq_small, rb.sq_big, rb.b_small, rb.b_big)
    assert eb.b_simple == pytest.approx(ea.b_simple, rel=1e-10)


def test_one_micro_batch_in_one_process_writes_no_row(tmp_path):
    train(tmp_path / "one.h5", steps=3, micro=1)
    with dyntrace.open_run(tmp_path / "one.h5") as run:
        assert run.steps("noise_scale").size == 0


def test_invalid_batch_size():
    with pytest.raises(ValueError, match="Invalid batch_size"):
        NoiseScaleProbe(batch_size=0)
