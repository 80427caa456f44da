"""The training loops real projects use, each recorded and checked against numbers computed by
hand on the same batch: closures (SGD, LBFGS), gradient accumulation with clipping,
torch.compile, GradScaler's skipped steps, frozen and other-optimizer parameters, weights that
outgrow their first histogram range, and optimizers whose adaptive state is unusual."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import dyntrace
from dyntrace.analysis import diagnose


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 1))


def _data(n=4, batch=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 6, generator=g), torch.randn(batch, 1, generator=g)) for _ in range(n)]


def _norms(model):
    return {name: float(p.grad.norm()) for name, p in model.named_parameters() if p.grad is not None}


def _recorded_norms(run, step):
    at = list(run.steps("gradients")).index(step)
    return {name: float(run.stat("gradients", name, "norm")[1][at]) for name in run.names("gradients")}


@pytest.fixture
def quiet():
    """dyntrace warnings fail the test: these loops must record silently."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dyntrace")
        yield


def test_closure_gradients_are_this_steps_not_the_last_ones(tmp_path, quiet):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    truth = []
    with dyntrace.Recorder(model, opt, tmp_path / "closure.h5", every=1) as rec:
        for x, y in _data():

            def closure():
                opt.zero_grad()
                loss = nn.functional.mse_loss(model(x), y)
                loss.backward()
                truth.append(
                    (_norms(model), float(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm()))
                )
                return loss

            loss = opt.step(closure)
            rec.log(loss=loss)
    with dyntrace.open_run(tmp_path / "closure.h5") as run:
        assert run.steps("gradients").tolist() == [1, 2, 3, 4]
        _, global_norm = run.scalar("grad_norm")
        for step, (per_param, total) in enumerate(truth, start=1):
            got = _recorded_norms(run, step)
            for name, value in per_param.items():
                assert got[name] == pytest.approx(value, rel=1e-6), (step, name)
            assert global_norm[step - 1] == pytest.approx(total, rel=1e-6)
        # the activations are the closure's forward pass: 16 samples × 12 units per record
        assert run.stat("activations", "1", "count")[1].tolist() == [192] * 4


def test_lbfgs_records_the_gradient_and_weights_at_the_start_of_each_step(tmp_path, quiet):
    model = _mlp().double()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
    ((x, y),) = _data(1)
    x, y = x.double(), y.double()
    first = []  # per step: gradient norms and weights at the first closure evaluation

    with dyntrace.Recorder(model, opt, tmp_path / "lbfgs.h5", every=1) as rec:
        for _ in range(3):
            calls = []

            def closure():
                opt.zero_grad()
                loss = nn.functional.mse_loss(model(x), y)
                loss.backward()
                if not calls:
                    first.append(
                        (_norms(model), {n: p.detach().clone() for n, p in model.named_parameters()})
                    )
                calls.append(1)
                return loss

            rec.log(loss=opt.step(closure))
            assert len(calls) > 1  # LBFGS evaluated the closure again at moved weights
    with dyntrace.open_run(tmp_path / "lbfgs.h5") as run:
        for step, (norms, weights) in enumerate(first, start=1):
            got = _recorded_norms(run, step)
            for name, value in norms.items():
                assert got[name] == pytest.approx(value, rel=1e-9)
            at = step - 1
            for name, w in weights.items():
                assert run.stat("weights", name, "sum")[1][at] == pytest.approx(
                    float(w.sum()), rel=1e-9, abs=1e-12
                )


def test_gradient_accumulation_with_clipping_records_the_clipped_sum(tmp_path, quiet):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    micro = _data(8, batch=8)
    clipped = []
    with dyntrace.Recorder(model, opt, tmp_path / "accum.h5", every=1) as rec:
        for i in range(2):
            opt.zero_grad()
            for x, y in micro[4 * i : 4 * i + 4]:
                (nn.functional.mse_loss(model(x), y) / 4).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.05)
            clipped.append(_norms(model))
            opt.step()
            rec.log(loss=0.0)
    with dyntrace.open_run(tmp_path / "accum.h5") as run:
        for step, norms in enumerate(clipped, start=1):
            got = _recorded_norms(run, step)
            total = np.sqrt(sum(v**2 for v in got.values()))
            assert total == pytest.approx(0.05, rel=1e-5)  # the clipped gradients are the ones recorded
            for name, value in norms.items():
                assert got[name] == pytest.approx(value, rel=1e-6)
        # every micro-batch's forward pass is in the record: 4 × 8 samples × 12 units
        assert run.stat("activations", "1", "count")[1].tolist() == [384, 384]


def test_torch_compile_after_warm_up_records_what_the_eager_model_does(tmp_path, quiet):
    import torch._dynamo

    torch._dynamo.reset()
    eager, compiled_net = _mlp(), _mlp()
    compiled = torch.compile(compiled_net, backend="aot_eager")
    data = _data(6)
    opt_e = torch.optim.SGD(eager.parameters(), lr=0.05)
    opt_c = torch.optim.SGD(compiled_net.parameters(), lr=0.05)

    def step(model, opt, x, y):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for x, y in data[:3]:  # warm-up: the graph is traced before the Recorder exists
        step(eager, opt_e, x, y)
        step(compiled, opt_c, x, y)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    paths = {}
    for label, model, run_model, opt in (
        ("eager", eager, eager, opt_e),
        ("compiled", compiled, compiled, opt_c),
    ):
        paths[label] = tmp_path / f"{label}.h5"
        with dyntrace.Recorder(run_model, opt, paths[label], every=1) as rec:
            for x, y in data[3:]:
                rec.log(loss=step(model, opt, x, y))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # no recompilation
    with dyntrace.open_run(paths["eager"]) as e, dyntrace.open_run(paths["compiled"]) as c:
        assert c.layers == e.layers == ["1", "3"]  # no "_orig_mod." in the names
        assert c.params == e.params
        for stat in ("mean", "std", "min", "max", "frac_zero"):
            got, want = c.stat("activations", None, stat)[1], e.stat("activations", None, stat)[1]
            assert np.isfinite(got).all()
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(
            c.stat("gradients", None, "norm")[1], e.stat("gradients", None, "norm")[1], rtol=1e-5
        )


def test_gradscaler_skips_are_steps_of_their_own_with_their_nonfinite_gradients(tmp_path, quiet):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    poisoned = {3, 7}
    data = _data(10)
    with dyntrace.Recorder(model, opt, tmp_path / "amp.h5", every=1) as rec:
        for i, (x, y) in enumerate(data, start=1):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            scaler.scale(loss).backward()
            if i in poisoned:
                with torch.no_grad():
                    model[0].weight.grad[0, 0] = float("inf")
                    model[2].weight.grad[1, :3] = float("nan")
            scaler.step(opt)
            scaler.update()
            rec.log(loss=loss)
    with dyntrace.open_run(tmp_path / "amp.h5") as run:
        steps, _ = run.scalar("loss")
        assert steps.tolist() == list(range(1, 11))  # one step per iteration, none twice
        assert run.scalar("skipped")[0].tolist() == [3, 7]
        assert run.info()["skipped_steps"] == 2
        assert run.steps("gradients").tolist() == list(range(1, 11))
        nonfinite = run.field("gradients", "nonfinite")[1]
        names = run.names("gradients")
        first, second = names.index("0.weight"), names.index("2.weight")
        assert nonfinite[:, first].tolist() == [1 if s in poisoned else 0 for s in range(1, 11)]
        assert nonfinite[:, second].tolist() == [3 if s in poisoned else 0 for s in range(1, 11)]
        assert nonfinite[:, [j for j in range(len(names)) if j not in (first, second)]].sum() == 0


def test_logging_twice_an_iteration_or_validating_is_no_skipped_step(tmp_path, quiet):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with dyntrace.Recorder(model, opt, tmp_path / "twice.h5", every=2) as rec:
        for x, y in _data(4):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            rec.log(loss=loss)
            rec.log(accuracy=0.5)
            with torch.no_grad():
                rec.log(val_loss=nn.functional.mse_loss(model(x), y))
    with dyntrace.open_run(tmp_path / "twice.h5") as run:
        assert "skipped" not in run.scalar_names
        assert run.scalar("val_loss")[0].tolist() == [1, 2, 3, 4]


def test_frozen_backbone_and_a_gan_raise_no_false_diagnosis(tmp_path, quiet):
    # fine-tuning: a frozen backbone, the head trained
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    for p in list(model[0].parameters()) + list(model[2].parameters()):
        p.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    with dyntrace.Recorder(model, opt, tmp_path / "frozen.h5", every=1) as rec:
        for x, y in _data(6):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            rec.log(loss=loss)
    with dyntrace.open_run(tmp_path / "frozen.h5") as run:
        roles = run.roles()
        assert roles == {
            "0.weight": "frozen",
            "0.bias": "frozen",
            "2.weight": "frozen",
            "2.bias": "frozen",
            "4.weight": "trainable",
            "4.bias": "trainable",
        }
        assert run.stat("gradients", "0.weight", "count")[1].tolist() == [0] * 6  # recorded as "no gradient"
        kinds = {d.kind for d in diagnose(run)}
        assert not kinds & {"vanishing_gradients", "exploding_gradients"}

    # a GAN: one Recorder on both networks with the generator's optimizer
    torch.manual_seed(0)
    gan = nn.ModuleDict(
        {
            "generator": nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 6)),
            "discriminator": nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1)),
        }
    )
    g_opt = torch.optim.Adam(gan["generator"].parameters(), lr=1e-3)
    d_opt = torch.optim.Adam(gan["discriminator"].parameters(), lr=1e-3)
    bce = nn.functional.binary_cross_entropy_with_logits
    with dyntrace.Recorder(gan, g_opt, tmp_path / "gan.h5", every=1) as rec:
        for x, _ in _data(6):
            fake = gan["generator"](torch.randn(16, 4))
            d_opt.zero_grad()
            d_loss = bce(gan["discriminator"](x), torch.ones(16, 1)) + bce(
                gan["discriminator"](fake.detach()), torch.zeros(16, 1)
            )
            d_loss.backward()
            d_opt.step()
            g_opt.zero_grad()
            g_loss = bce(gan["discriminator"](fake), torch.ones(16, 1))
            g_loss.backward()
            g_opt.step()
            rec.log(loss=g_loss, d_loss=d_loss)
    with dyntrace.open_run(tmp_path / "gan.h5") as run:
        roles = run.roles()
        assert {n for n, r in roles.items() if r == "not_stepped"} == {
            n for n in run.params if n.startswith("discriminator.")
        }
        assert {n for n, r in roles.items() if r == "trainable"} == {
            n for n in run.params if n.startswith("generator.")
        }
        assert not {d.kind for d in diagnose(run)} & {"vanishing_gradients", "exploding_gradients"}


def test_weights_that_outgrow_their_first_range_stay_in_the_histogram(tmp_path, quiet):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    first_max = max(float(p.detach().abs().max()) for p in model.parameters())
    with dyntrace.Recorder(model, opt, tmp_path / "grow.h5", every=1) as rec:
        for x, y in _data(10):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1.2)  # 1.2⁹ ≈ 5.2 × by the last record
            rec.log(loss=0.0)
    assert max(float(p.detach().abs().max()) for p in model.parameters()) > 5 * first_max
    with dyntrace.open_run(tmp_path / "grow.h5") as run:
        for name, p in model.named_parameters():
            h = run.hist("weights", name)
            total = h.counts.sum(axis=1) + h.underflow + h.overflow
            np.testing.assert_array_equal(total, h.sampled)
            np.testing.assert_array_equal(h.sampled, p.numel())
            assert (h.counts.sum(axis=1) / h.sampled).min() >= 0.99
            assert h.edges.shape == (10, 65)
            assert (
                h.edges[-1, -1] >= float(p.detach().abs().max()) / 1.2
            )  # the last record's range holds its weights
            assert (
                h.edges[-1, -1] >= 4 * h.edges[0, -1]
            )  # the range followed the growth (nice numbers: 0.5 → 2)


def _adafactor_psi(opt, p):
    state, group = opt.state[p], opt.param_groups[0]
    eps1 = group["eps"][0] if group["eps"][0] is not None else torch.finfo(p.dtype).eps
    if "row_var" in state and state["row_var"] is not None:
        row, col = state["row_var"], state["col_var"]
        v = row @ col / row.mean(dim=-2, keepdim=True).clamp(min=eps1)
    else:
        v = state["variance"]
    return v.clamp(min=eps1 * eps1).rsqrt()


@pytest.mark.parametrize("name", ["adamax", "adafactor"])
def test_adamax_and_adafactor_adaptive_rates_equal_their_state(tmp_path, quiet, name):
    model = _mlp().double()
    opt = (
        torch.optim.Adamax(model.parameters(), lr=0.01)
        if name == "adamax"
        else torch.optim.Adafactor(model.parameters(), lr=0.01)
    )
    with dyntrace.Recorder(model, opt, tmp_path / f"{name}.h5", every=1, probes="all") as rec:
        for x, y in _data(3):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x.double()), y.double())
            loss.backward()
            opt.step()
            rec.log(loss=loss)
    with dyntrace.open_run(tmp_path / f"{name}.h5") as run:
        assert "note" not in run.probe_attrs("adaptive")
        for pname, p in model.named_parameters():
            assert run.kinds("adaptive")[pname] == name
            psi = 1.0 / opt.state[p]["exp_inf"] if name == "adamax" else _adafactor_psi(opt, p)
            assert run.stat("adaptive", pname, "mean")[1][-1] == pytest.approx(float(psi.mean()), rel=1e-9)
            assert run.stat("adaptive", pname, "std")[1][-1] == pytest.approx(
                float(psi.std(unbiased=False)), rel=1e-6, abs=1e-9
            )
