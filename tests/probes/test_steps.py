"""The 'steps' probe against by-hand computations from the same tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dyntrace.catalog.lookahead import Lookahead
from dyntrace.probes import PROBES
from dyntrace.probes.steps import StepsProbe

from ._recording import mlp, train


def _eta(cap, name):
    """η_eff over g ≠ 0 of one captured step, float64, from the stored tensors."""
    g = cap.grad[name].double().reshape(-1)
    delta = (cap.after[name] - cap.before[name]).double().reshape(-1)
    keep = g != 0
    return (delta[keep].abs() / g[keep].abs()).numpy(), int((~keep).sum())


def test_registered():
    assert PROBES["steps"] is StepsProbe


@pytest.mark.parametrize("bad", [dict(decades=(2.0, 1.0)), dict(per_decade=0), dict(hist_sample=0)])
def test_invalid_options(bad):
    with pytest.raises(ValueError, match="Invalid"):
        StepsProbe(**bad)


def test_sgd_records_lr_for_every_coordinate_with_a_gradient(tmp_path, open_runs):
    model = mlp(torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    caps = train(model, opt, tmp_path / "sgd.h5", steps=4, capture=(1, 4))
    run = open_runs(tmp_path / "sgd.h5")
    assert run.steps("steps").tolist() == [1, 2, 3, 4]
    for name, p in model.named_parameters():
        _, lo = run.stat("steps", name, "min")
        _, hi = run.stat("steps", name, "max")
        _, count = run.stat("steps", name, "count")
        _, gz = run.field("steps", "grad_zero", name)
        _, cos = run.field("steps", "cos", name)
        np.testing.assert_allclose(lo, 0.1, rtol=1e-12)
        np.testing.assert_allclose(hi, 0.1, rtol=1e-12)
        np.testing.assert_allclose(cos, 1.0, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(count + gz, p.numel())
        for step, cap in caps.items():
            assert gz[step - 1] == int((cap.grad[name] == 0).sum())
    # the dead unit: its weights and bias and the output weight reading it never get a gradient
    _, gz = run.field("steps", "grad_zero")
    assert gz[0].tolist() == [4, 1, 1, 0]
    hist = run.hist("steps", "0.weight")
    assert hist.scale == "log10_abs"
    # every binned coordinate is in the bin holding log10(0.1) (= -1, a bin edge: either side)
    width = hist.edges[1] - hist.edges[0]
    near = np.abs(0.5 * (hist.edges[:-1] + hist.edges[1:]) + 1.0) <= width
    assert (hist.counts[:, ~near] == 0).all()
    np.testing.assert_array_equal(hist.counts.sum(axis=1), hist.sampled)


def test_float32_sgd_shows_only_the_rounding_of_the_stored_weights(tmp_path, open_runs):
    model = mlp(torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    caps = train(model, opt, tmp_path / "sgd32.h5", steps=2, capture=(1, 2))
    run = open_runs(tmp_path / "sgd32.h5")
    for name in dict(model.named_parameters()):
        for step, cap in caps.items():
            eta, _ = _eta(cap, name)
            g = cap.grad[name].double().reshape(-1)
            keep = (g != 0).numpy()
            spacing = np.spacing(np.abs(cap.after[name].reshape(-1).numpy()[keep])).astype(np.float64)
            bound = float(np.max(spacing / np.abs(g.numpy()[keep])))
            lo = run.stat("steps", name, "min")[1][step - 1]
            hi = run.stat("steps", name, "max")[1][step - 1]
            assert lo == pytest.approx(eta.min(), rel=1e-6) and hi == pytest.approx(eta.max(), rel=1e-6)
            assert 0.1 - bound <= lo <= hi <= 0.1 + bound


def test_momentum_at_step_one_records_lr(tmp_path, open_runs):
    model = mlp(torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train(model, opt, tmp_path / "mom.h5", steps=3)
    run = open_runs(tmp_path / "mom.h5")
    for name in dict(model.named_parameters()):
        lo, hi = run.stat("steps", name, "min")[1], run.stat("steps", name, "max")[1]
        assert lo[0] == pytest.approx(0.05, rel=1e-12) and hi[0] == pytest.approx(0.05, rel=1e-12)
    # from step 2 the velocity makes η_eff differ across coordinates
    assert run.stat("steps", "0.weight", "max")[1][2] > 1.01 * run.stat("steps", "0.weight", "min")[1][2]


def test_adam_first_step_moves_every_coordinate_by_lr(tmp_path, open_runs):
    model = mlp(torch.float64, dead_unit=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    caps = train(model, opt, tmp_path / "adam.h5", steps=1, capture=(1,))
    run = open_runs(tmp_path / "adam.h5")
    for name, p in model.named_parameters():
        g = caps[1].grad[name].double().abs()
        # Adam's first step is Δθ = −lr·g/(|g| + ε): |Δθ| = lr up to ε/|g|, η_eff = lr/(|g| + ε)
        update_norm = run.field("steps", "update_norm", name)[1][0]
        assert update_norm == pytest.approx(1e-3 * math.sqrt(p.numel()), rel=1e-4)
        assert update_norm == pytest.approx((1e-3 * g / (g + 1e-8)).norm().item(), rel=1e-9)
        assert run.stat("steps", name, "min")[1][0] == pytest.approx(1e-3 / (g.max().item() + 1e-8), rel=1e-9)
        assert run.stat("steps", name, "max")[1][0] == pytest.approx(1e-3 / (g.min().item() + 1e-8), rel=1e-9)
        assert run.stat("steps", name, "mean")[1][0] == pytest.approx(
            (1e-3 / (g + 1e-8)).mean().item(), rel=1e-9
        )


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda ps: torch.optim.RMSprop(ps, lr=0.01),
    ],
    ids=["adamw", "nesterov", "rmsprop"],
)
def test_every_field_equals_the_naive_computation(tmp_path, open_runs, make):
    torch.manual_seed(1)
    model = mlp(torch.float32)
    opt = make(model.parameters())
    caps = train(model, opt, tmp_path / "run.h5", steps=5, every=2, capture=(1, 3, 5))
    run = open_runs(tmp_path / "run.h5")
    assert run.steps("steps").tolist() == [1, 3, 5]
    edges = run.field("steps", "edges", "0.weight")[1]
    for r, (step, cap) in enumerate(sorted(caps.items())):
        for name in cap.before:
            eta, n_zero = _eta(cap, name)
            before, after, g = (
                t.double().reshape(-1) for t in (cap.before[name], cap.after[name], cap.grad[name])
            )
            delta = after - before
            field = lambda f: run.field("steps", f, name)[1][r]  # noqa: E731
            assert field("update_norm") == pytest.approx(delta.norm().item(), rel=1e-5)
            assert field("param_norm") == pytest.approx(before.norm().item(), rel=1e-5)
            assert field("update_ratio") == pytest.approx((delta.norm() / before.norm()).item(), rel=1e-5)
            assert field("grad_norm") == pytest.approx(g.norm().item(), rel=1e-5)
            cos = (-(delta @ g) / (delta.norm() * g.norm())).item()
            assert field("cos") == pytest.approx(cos, rel=1e-4, abs=1e-6)
            assert field("grad_zero") == n_zero
            assert field("count") == eta.size
            assert field("zero") == int((eta == 0).sum())
            assert field("nonfinite") == 0
            assert field("sum") == pytest.approx(eta.sum(), rel=1e-5)
            assert field("sumsq") == pytest.approx((eta**2).sum(), rel=1e-5)
            assert field("min") == pytest.approx(eta.min(), rel=1e-5)
            assert field("max") == pytest.approx(eta.max(), rel=1e-5)
            logs = np.log10(eta[eta > 0])
            got = run.field("steps", "hist", name)[1][r]  # [underflow, bins, overflow]
            assert got.sum() == logs.size == field("hist_count") - int((eta == 0).sum())
            assert got[0] == (logs < edges[0]).sum() and got[-1] == (logs > edges[-1]).sum()
            expected = np.histogram(logs, bins=edges)[0]
            assert np.abs(got[1:-1] - expected).sum() <= 2  # a value on a bin edge may go either way


def test_lookahead_sync_steps_are_marked(tmp_path, open_runs):
    model = mlp(torch.float64)
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=3, alpha=0.5)
    train(model, opt, tmp_path / "la.h5", steps=7)
    run = open_runs(tmp_path / "la.h5")
    steps, synced = run.scalar("synced")
    assert steps.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert synced.tolist() == [0, 0, 1, 0, 0, 1, 0]
    lo, hi = run.stat("steps", "0.weight", "min")[1], run.stat("steps", "0.weight", "max")[1]
    inner = synced == 0
    np.testing.assert_allclose(lo[inner], 0.1, rtol=1e-12)
    np.testing.assert_allclose(hi[inner], 0.1, rtol=1e-12)
    assert not np.allclose(hi[~inner], 0.1)  # a sync pulls θ back towards the slow weights


OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.01),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.01, amsgrad=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01),
    "nadam": lambda ps: torch.optim.NAdam(ps, lr=0.01),
    "radam": lambda ps: torch.optim.RAdam(ps, lr=0.01),
    "adamax": lambda ps: torch.optim.Adamax(ps, lr=0.01),
    "adagrad": lambda ps: torch.optim.Adagrad(ps, lr=0.01, lr_decay=0.01),
    "adadelta": lambda ps: torch.optim.Adadelta(ps),
    "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5),
    "asgd": lambda ps: torch.optim.ASGD(ps, lr=0.01),
    "rprop": lambda ps: torch.optim.Rprop(ps, lr=0.01),
    "lookahead-adam": lambda ps: Lookahead(torch.optim.Adam(ps, lr=0.01), k=2),
    "adafactor": lambda ps: torch.optim.Adafactor(ps, lr=0.01),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_records(tmp_path, open_runs, name):
    model = mlp(torch.float32)
    opt = OPTIMIZERS[name](model.parameters())
    train(model, opt, tmp_path / "run.h5", steps=3, probes=("steps", "adaptive"))
    run = open_runs(tmp_path / "run.h5")
    assert run.steps("steps").tolist() == [1, 2, 3]
    for pname, p in model.named_parameters():
        count = run.stat("steps", pname, "count")[1]
        gz = run.field("steps", "grad_zero", pname)[1]
        np.testing.assert_array_equal(count + gz, p.numel())
        assert np.all(np.isfinite(run.field("steps", "update_ratio", pname)[1]))
    expected = {
        "adam",
        "adamw",
        "nadam",
        "radam",
        "adamax",
        "adafactor",
        "adagrad",
        "rmsprop",
        "lookahead-adam",
    }
    assert (len(run.steps("adaptive")) == 3) == (name in expected)


def test_lbfgs_with_a_closure(tmp_path, open_runs):
    model = mlp(torch.float64)
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=3)
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    import dyntrace

    with dyntrace.Recorder(model, opt, tmp_path / "lbfgs.h5", every=1, probes=["steps"]):
        for _ in range(2):
            opt.step(closure)
    run = open_runs(tmp_path / "lbfgs.h5")
    assert run.steps("steps").tolist() == [1, 2]
    assert np.all(run.field("steps", "update_norm")[1] > 0)


def test_a_parameter_without_gradient_is_counted_apart(tmp_path, open_runs):
    class WithUnused(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(torch.float64)
            self.unused = nn.Linear(3, 2).double()  # in the optimizer, never in the forward pass

        def forward(self, x):
            return self.net(x)

    model = WithUnused()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, opt, tmp_path / "unused.h5", steps=2)
    run = open_runs(tmp_path / "unused.h5")
    assert run.field("steps", "grad_zero", "unused.weight")[1].tolist() == [6, 6]
    assert run.stat("steps", "unused.weight", "count")[1].tolist() == [0, 0]
    assert np.isnan(run.stat("steps", "unused.weight", "min")[1]).all()
    assert np.isnan(run.field("steps", "cos", "unused.weight")[1]).all()
    assert run.field("steps", "update_norm", "unused.weight")[1].tolist() == [0, 0]


def test_non_finite_gradients_are_counted_exactly(tmp_path, open_runs):
    model = mlp(torch.float64, dead_unit=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def poison(grad):
        grad = grad.clone()
        grad[0, 0] = float("nan")
        return grad

    model[2].weight.register_hook(poison)
    train(model, opt, tmp_path / "nan.h5", steps=1)
    run = open_runs(tmp_path / "nan.h5")
    assert run.field("steps", "nonfinite", "2.weight")[1].tolist() == [1]
    assert run.stat("steps", "2.weight", "count")[1].tolist() == [5]
    assert run.stat("steps", "2.weight", "max")[1][0] == pytest.approx(0.1, rel=1e-12)
    assert run.field("steps", "nonfinite", "0.weight")[1].tolist() == [0]


@pytest.mark.parametrize("order", [("scalars", "steps"), ("steps", "scalars")])
def test_the_update_is_computed_once_and_shared_by_the_scalars_and_steps_probes(tmp_path, open_runs, order):
    """−Δθ is made in place in the snapshot's buffers and read by both probes, in either order:
    the scalars probe's update_norm and the steps probe's per-parameter norms, cos and η_eff
    still equal the naive computation from copies taken outside the recorder."""
    torch.manual_seed(2)
    model = mlp(torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    caps = train(model, opt, tmp_path / "run.h5", steps=4, every=2, probes=order, capture=(1, 3))
    run = open_runs(tmp_path / "run.h5")
    steps, scalar = run.scalar("update_norm")
    assert steps.tolist() == [1, 3]
    for r, (step, cap) in enumerate(sorted(caps.items())):
        deltas = {n: (cap.after[n] - cap.before[n]).double().reshape(-1) for n in cap.before}
        total = math.sqrt(sum(float(d @ d) for d in deltas.values()))
        assert scalar[r] == pytest.approx(total, rel=1e-6)
        per_param = [run.field("steps", "update_norm", n)[1][r] for n in deltas]
        assert math.sqrt(sum(u * u for u in per_param)) == pytest.approx(scalar[r], rel=1e-12)
        for name, delta in deltas.items():
            g = cap.grad[name].double().reshape(-1)
            cos = (-(delta @ g) / (delta.norm() * g.norm())).item()
            assert run.field("steps", "cos", name)[1][r] == pytest.approx(cos, rel=1e-4, abs=1e-6)
            eta, _ = _eta(cap, name)
            assert run.stat("steps", name, "mean")[1][r] == pytest.approx(eta.mean(), rel=1e-5)


@pytest.mark.parametrize(
    "order", [["gradients", "weights", "scalars", "steps"], ["steps", "scalars", "weights", "gradients"]]
)
def test_the_gradient_and_weight_norms_are_computed_once_and_shared(tmp_path, open_runs, order):
    """‖g‖ and ‖θ_before‖ of each parameter are one fused norm a record step, read by every
    probe that needs them, in any order: the gradients probe's Σg², the scalar grad_norm and the
    steps probe's grad_norm agree to the last bits, the weights probe's Σθ² and the steps probe's
    param_norm too, and all equal the naive float64 computation from copies."""
    torch.manual_seed(3)
    model = mlp(torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    caps = train(model, opt, tmp_path / "run.h5", steps=4, every=2, probes=order, capture=(1, 3))
    run = open_runs(tmp_path / "run.h5")
    steps, grad_norm = run.scalar("grad_norm")
    assert steps.tolist() == [1, 3]
    for r, (step, cap) in enumerate(sorted(caps.items())):
        total = 0.0
        for name in cap.before:
            g, w = cap.grad[name].double().reshape(-1), cap.before[name].double().reshape(-1)
            sumsq = run.field("gradients", "sumsq", name)[1][r]
            assert sumsq == pytest.approx(float(g @ g), rel=1e-6)
            assert run.field("steps", "grad_norm", name)[1][r] ** 2 == pytest.approx(sumsq, rel=1e-14)
            wsq = run.field("weights", "sumsq", name)[1][r]
            assert wsq == pytest.approx(float(w @ w), rel=1e-6)
            assert run.field("steps", "param_norm", name)[1][r] ** 2 == pytest.approx(wsq, rel=1e-14)
            total += sumsq
        assert grad_norm[r] == pytest.approx(math.sqrt(total), rel=1e-14)


def test_the_norms_before_the_step_cannot_be_asked_for_after_it():
    from dyntrace.probes.base import RecordContext

    model = nn.Linear(3, 2)
    ctx = RecordContext(model, torch.optim.SGD(model.parameters(), lr=0.1))
    model(torch.ones(1, 3)).sum().backward()
    model.bias.grad = None  # a parameter without a gradient counts 0
    assert ctx.grad_norms().tolist() == [pytest.approx(math.sqrt(6.0)), 0.0]  # dL/dW = 1 (2 x 3)
    ctx.stepped = True
    with pytest.raises(RuntimeError, match="before the step"):
        ctx.param_norms()
    ctx.release_snapshot()  # the end of the record step: asked for anew next time
    expected = [float(p.detach().norm()) for p in (model.weight, model.bias)]
    assert ctx.param_norms().tolist() == pytest.approx(expected)


def test_zero_counts_fused_and_one_by_one_agree_with_count_nonzero():
    from dyntrace.probes.steps import _zero_counts

    values = torch.tensor([0.0, 1.0, float("nan"), float("inf"), 0.0, -2.0])
    tensors = [values, torch.zeros(3), values.reshape(2, 3).double()]
    expected = [float(t.numel() - torch.count_nonzero(t)) for t in tensors]
    assert _zero_counts(tensors, torch.device("cpu")).tolist() == expected  # fused
    assert (
        _zero_counts([t.bfloat16() for t in tensors], torch.device("cpu")).tolist() == expected
    )  # one by one
