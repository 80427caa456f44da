"""The 'adaptive' probe against the optimizer state and RAdam's formulas (REFERENCES §2)."""

from __future__ import annotations

import math
import warnings

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from dyntrace.analysis import radam
from dyntrace.catalog.lookahead import Lookahead
from dyntrace.probes import PROBES
from dyntrace.probes.adaptive import AdaptiveProbe, optimizer_family, radam_rho

from ._recording import mlp, train


def _psi_by_hand(opt, param, kind):
    """ψ of one parameter from the optimizer state, in numpy float64."""
    state, group = opt.state[param], next(g for g in opt.param_groups if any(p is param for p in g["params"]))
    t = float(state["step"])
    if kind == "adam":
        v = (state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]).double().numpy()
        beta2 = group["betas"][1]
        return 1.0 / (np.sqrt(v) / math.sqrt(1 - beta2**t) + group["eps"])
    if kind == "adagrad":
        lr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
        return lr / (np.sqrt(state["sum"].double().numpy()) + group["eps"])
    v = state["square_avg"].double().numpy()
    if group["centered"]:
        v = v - state["grad_avg"].double().numpy() ** 2
    return group["lr"] / (np.sqrt(v) + group["eps"])


def test_registered_and_invalid_options():
    assert PROBES["adaptive"] is AdaptiveProbe
    with pytest.raises(ValueError, match="Invalid"):
        AdaptiveProbe(decades=(3.0, 3.0))


def test_rho_and_r_equal_the_formulas_and_radam_rectifies_from_step_6(tmp_path, open_runs):
    torch.manual_seed(0)
    model = nn.Linear(2, 1).double()
    opt = torch.optim.RAdam(model.parameters(), lr=1e-3)  # β₂ = 0.999
    record = set(range(1, 11)) | {100, 1000}
    train(
        model,
        opt,
        tmp_path / "radam.h5",
        steps=1000,
        every=lambda s: s in record,
        probes=("adaptive", "steps"),
    )
    run = open_runs(tmp_path / "radam.h5")
    steps = run.steps("adaptive")
    assert steps.tolist() == sorted(record)
    t, rho = run.field("adaptive", "state_step", "weight")[1], run.field("adaptive", "rho", "weight")[1]
    r = run.field("adaptive", "r", "weight")[1]
    np.testing.assert_array_equal(t, steps)
    at = dict(zip(steps.tolist(), zip(rho, r)))
    assert at[1][0] == pytest.approx(1.0, abs=1e-9)
    assert at[5][0] == pytest.approx(4.996, abs=5e-4) and at[6][0] == pytest.approx(5.994, abs=5e-4)
    assert at[4][0] == pytest.approx(3.9975, abs=5e-5)
    assert at[6][1] == pytest.approx(0.0258, abs=5e-5)
    assert at[100][1] == pytest.approx(0.215, abs=5e-4)
    assert at[1000][1] == pytest.approx(0.645, abs=5e-4)
    assert np.isnan(r[:4]).all()  # ρ_t ≤ 4: r_t undefined
    np.testing.assert_allclose(rho, radam.rho_t(steps, 0.999), rtol=1e-10)
    np.testing.assert_allclose(r, radam.rectification(steps, 0.999), rtol=1e-10)
    np.testing.assert_array_equal(run.field("adaptive", "beta2", "weight")[1], 0.999)
    rectified = run.field("adaptive", "rectified", "weight")[1]
    paper = run.field("adaptive", "rectified_paper", "weight")[1]
    assert rectified[:10].tolist() == [0] * 5 + [1] * 5  # torch: ρ_t > 5 from step 6
    assert paper[:10].tolist() == [0] * 4 + [1] * 6  # the paper: ρ_t > 4 from step 5
    # and torch really did: before step 6 RAdam steps with lr·m̂, so step 1 moves by lr·g
    lo, hi = run.stat("steps", "weight", "min")[1], run.stat("steps", "weight", "max")[1]
    assert lo[0] == pytest.approx(1e-3, rel=1e-9) and hi[0] == pytest.approx(1e-3, rel=1e-9)


def test_rho_matches_torch_radam_own_expression():
    beta2 = 0.999
    for t in (1, 2, 5, 6, 50, 5000):
        rho_inf = 2 / (1 - beta2) - 1
        torch_rho = rho_inf - 2 * t * (beta2**t) / (1 - beta2**t)  # torch/optim/radam.py
        assert radam_rho(t, beta2) == pytest.approx(torch_rho, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.Adam(ps, lr=0.01),
        lambda ps: torch.optim.Adam(ps, lr=0.01, amsgrad=True),
        lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.8, 0.95)),
        lambda ps: torch.optim.NAdam(ps, lr=0.01),
    ],
    ids=["adam", "amsgrad", "adamw", "nadam"],
)
def test_psi_moments_and_histogram_equal_the_state(tmp_path, open_runs, make):
    model = mlp(torch.float32)
    opt = make(model.parameters())
    train(model, opt, tmp_path / "run.h5", steps=7, every=3, probes=("adaptive",))  # records 1, 4, 7
    run = open_runs(tmp_path / "run.h5")
    assert run.steps("adaptive").tolist() == [1, 4, 7]
    assert set(run.kinds("adaptive").values()) == {"adam"}
    edges = run.field("adaptive", "edges", "0.weight")[1]
    for name, p in model.named_parameters():
        psi = _psi_by_hand(opt, p, "adam").reshape(-1)  # the state after step 7: the last record
        mean, std = run.stat("adaptive", name, "mean")[1][-1], run.stat("adaptive", name, "std")[1][-1]
        assert mean == pytest.approx(psi.mean(), rel=1e-5)
        assert std**2 == pytest.approx(psi.var(), rel=1e-4)
        assert std / mean == pytest.approx(psi.std() / psi.mean(), rel=1e-4)  # coefficient of variation
        assert run.stat("adaptive", name, "min")[1][-1] == pytest.approx(psi.min(), rel=1e-5)
        assert run.stat("adaptive", name, "max")[1][-1] == pytest.approx(psi.max(), rel=1e-5)
        v = opt.state[p]["exp_avg_sq"].double().numpy()
        assert run.field("adaptive", "acc_sum", name)[1][-1] == pytest.approx(v.sum(), rel=1e-5)
        assert run.field("adaptive", "acc_max", name)[1][-1] == pytest.approx(v.max(), rel=1e-6)
        assert run.field("adaptive", "acc_min", name)[1][-1] == pytest.approx(v.min(), rel=1e-6, abs=1e-30)
        hist = run.hist("adaptive", name)
        expected = np.histogram(np.log10(psi), bins=edges)[0]
        assert np.abs(hist.counts[-1] - expected).sum() <= 2  # a value on a bin edge may go either way
        assert run.field("adaptive", "state_step", name)[1].tolist() == [1, 4, 7]
        assert (run.field("adaptive", "rectified", name)[1] == -1).all()  # not RAdam


def test_adagrad_rate_falls_as_one_over_sqrt_t_on_a_constant_gradient(tmp_path, open_runs):
    model = nn.Linear(5, 1, bias=False).double()
    c = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    opt = torch.optim.Adagrad(model.parameters(), lr=0.1)
    train(
        model,
        opt,
        tmp_path / "adagrad.h5",
        steps=16,
        probes=("adaptive",),
        loss_fn=lambda m: (m.weight * c).sum(),
    )
    run = open_runs(tmp_path / "adagrad.h5")
    t = run.field("adaptive", "state_step", "weight")[1]
    np.testing.assert_array_equal(t, np.arange(1, 17))
    mean = run.stat("adaptive", "weight", "mean")[1]
    np.testing.assert_allclose(mean * np.sqrt(t), mean[0], rtol=1e-8)  # lr/(√(t c²) + ε) ∝ 1/√t
    assert mean[0] == pytest.approx((0.1 / (c + 1e-10)).mean().item(), rel=1e-9)
    np.testing.assert_allclose(
        run.field("adaptive", "acc_sum", "weight")[1], t * (c**2).sum().item(), rtol=1e-12
    )
    assert run.kinds("adaptive") == {"weight": "adagrad"}
    assert np.isnan(run.field("adaptive", "rho", "weight")[1]).all()


@pytest.mark.parametrize(
    "make, kind",
    [
        (lambda ps: torch.optim.Adagrad(ps, lr=0.1, lr_decay=0.05, eps=1e-6), "adagrad"),
        (lambda ps: torch.optim.RMSprop(ps, lr=0.01), "rmsprop"),
        (lambda ps: torch.optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.9), "rmsprop"),
    ],
    ids=["adagrad-decay", "rmsprop", "rmsprop-centered"],
)
def test_adagrad_and_rmsprop_rates_equal_the_state(tmp_path, open_runs, make, kind):
    model = mlp(torch.float64)
    opt = make(model.parameters())
    train(model, opt, tmp_path / "run.h5", steps=5, probes=("adaptive",))
    run = open_runs(tmp_path / "run.h5")
    for name, p in model.named_parameters():
        psi = _psi_by_hand(opt, p, kind).reshape(-1)
        assert run.kinds("adaptive")[name] == kind
        assert run.stat("adaptive", name, "mean")[1][-1] == pytest.approx(psi.mean(), rel=1e-10)
        assert run.stat("adaptive", name, "std")[1][-1] == pytest.approx(psi.std(), rel=1e-6)
        assert run.stat("adaptive", name, "max")[1][-1] == pytest.approx(psi.max(), rel=1e-12)


def _group_attrs(path, probe):
    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["probes"][probe].attrs.items()}


def test_sgd_is_skipped_with_a_note(tmp_path, open_runs):
    model = mlp(torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(model, opt, tmp_path / "sgd.h5", steps=3, probes=("adaptive", "steps"))
    run = open_runs(tmp_path / "sgd.h5")
    assert "adaptive" in run.probes and len(run.steps("adaptive")) == 0
    assert run.steps("steps").tolist() == [1, 2, 3]
    assert set(run.kinds("adaptive").values()) == {"none"}
    note = _group_attrs(tmp_path / "sgd.h5", "adaptive")["note"]
    assert "SGD keeps no adaptive state" in note and "every parameter" in note


def test_lookahead_is_looked_through_to_its_inner_optimizer(tmp_path, open_runs):
    model = mlp(torch.float32)
    inner = torch.optim.Adam(model.parameters(), lr=0.01)
    opt = Lookahead(inner, k=2)
    train(model, opt, tmp_path / "la.h5", steps=4, probes=("adaptive",))
    run = open_runs(tmp_path / "la.h5")
    attrs = _group_attrs(tmp_path / "la.h5", "adaptive")
    assert attrs["optimizer"] == "Adam" and "note" not in attrs
    for name, p in model.named_parameters():
        psi = _psi_by_hand(inner, p, "adam")
        assert run.stat("adaptive", name, "mean")[1][-1] == pytest.approx(psi.mean(), rel=1e-5)
    assert run.field("adaptive", "state_step", "0.weight")[1].tolist() == [1, 2, 3, 4]


def test_family_of_other_optimizers_is_read_from_their_hyperparameters():
    from dyntrace.catalog.book_adam import BookAdam

    p = [nn.Parameter(torch.zeros(2))]
    assert optimizer_family(BookAdam(p), BookAdam(p).param_groups[0]) == "adam"
    for cls in (torch.optim.SGD, torch.optim.Adadelta, torch.optim.Rprop):
        opt = cls(p, lr=0.1)
        assert optimizer_family(opt, opt.param_groups[0]) == "none"


def test_parameters_of_a_group_without_state_have_empty_columns(tmp_path, open_runs):
    model = mlp(torch.float32)
    frozen = model[2]
    for q in frozen.parameters():
        q.requires_grad_(False)
    opt = torch.optim.Adam(model[0].parameters(), lr=0.01)  # the last layer is not optimized
    train(model, opt, tmp_path / "part.h5", steps=2, probes=("adaptive",))
    run = open_runs(tmp_path / "part.h5")
    assert run.kinds("adaptive") == {
        "0.weight": "adam",
        "0.bias": "adam",
        "2.weight": "none",
        "2.bias": "none",
    }
    assert run.stat("adaptive", "2.weight", "count")[1].tolist() == [0, 0]
    assert np.isnan(run.stat("adaptive", "2.weight", "mean")[1]).all()
    assert "2 of 4 parameters" in _group_attrs(tmp_path / "part.h5", "adaptive")["note"]


class _NoStepAdam(torch.optim.Optimizer):
    """An optimizer that looks like Adam (betas, eps, exp_avg_sq) but keeps no step count."""

    def __init__(self, params, lr=0.01):
        super().__init__(params, dict(lr=lr, betas=(0.9, 0.999), eps=1e-8))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                v = self.state[p].setdefault("exp_avg_sq", torch.zeros_like(p))
                v.mul_(0.999).addcmul_(p.grad, p.grad, value=0.001)
                p.sub_(group["lr"] * p.grad)


def test_adam_like_state_without_a_step_count_is_left_empty(tmp_path, open_runs):
    model = mlp(torch.float32)
    train(model, _NoStepAdam(model.parameters()), tmp_path / "nostep.h5", steps=2, probes=("adaptive",))
    run = open_runs(tmp_path / "nostep.h5")
    assert set(run.kinds("adaptive").values()) == {"adam"}
    assert run.stat("adaptive", "0.weight", "count")[1].tolist() == [0, 0]
    assert np.isnan(run.field("adaptive", "rho", "0.weight")[1]).all()
