"""Recorded statistics equal the numbers computed by hand from the same tensors.

Sums accumulate in float32 like the tensors (see dyntrace.summaries.moments): 1e-6 relative.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

import dyntrace


def _capture_step(model, opt, x, y, path, **kwargs):
    """One recorded training step; returns the gradients, weights before the step, and outputs."""
    outputs = {}
    handles = [
        m.register_forward_hook(lambda m, i, o, n=n: outputs.__setitem__(n, o.detach().clone()))
        for n, m in model.named_modules()
        if n
    ]
    with dyntrace.Recorder(model, opt, path, every=1, **kwargs) as rec:
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        opt.step()
        rec.log(loss=loss)
    for h in handles:
        h.remove()
    return grads, before, outputs, loss.item()


@pytest.fixture
def mlp_run(tmp_path):
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 6), torch.randn(32, 2)
    path = tmp_path / "run.h5"
    grads, before, outputs, loss = _capture_step(model, opt, x, y, path)
    with dyntrace.open_run(path) as run:
        yield run, model, grads, before, outputs, loss


def test_gradient_norm_and_mean_per_parameter(mlp_run):
    run, _, grads, _, _, _ = mlp_run
    for name, g in grads.items():
        steps, norm = run.stat("gradients", name, "norm")
        assert steps.tolist() == [1]
        assert norm[0] == pytest.approx(g.double().norm().item(), rel=1e-6)
        assert run.stat("gradients", name, "mean")[1][0] == pytest.approx(
            g.double().mean().item(), rel=1e-6, abs=1e-9
        )
        assert run.stat("gradients", name, "max")[1][0] == pytest.approx(g.max().item())
    global_norm = math.sqrt(sum(g.double().norm().item() ** 2 for g in grads.values()))
    assert run.scalar("grad_norm")[1][0] == pytest.approx(global_norm, rel=1e-6)


def test_weights_are_those_the_forward_pass_saw(mlp_run):
    run, model, _, before, _, _ = mlp_run
    for name, w in before.items():
        assert run.stat("weights", name, "std")[1][0] == pytest.approx(
            w.double().std(unbiased=False).item(), rel=1e-6
        )
    after = dict(model.named_parameters())
    update = math.sqrt(sum((after[n].detach() - before[n]).double().norm().item() ** 2 for n in before))
    assert run.scalar("update_norm")[1][0] == pytest.approx(update, rel=1e-6)


def test_activation_mean_std_min_max_per_layer(mlp_run):
    run, _, _, _, outputs, loss = mlp_run
    assert run.layers == ["1", "3"]
    assert run.kinds("activations") == {"1": "tanh", "3": "relu"}
    for layer in run.layers:
        out = outputs[layer].double()
        assert run.stat("activations", layer, "mean")[1][0] == pytest.approx(out.mean().item(), rel=1e-6)
        assert run.stat("activations", layer, "std")[1][0] == pytest.approx(
            out.std(unbiased=False).item(), rel=1e-6
        )
        assert run.stat("activations", layer, "min")[1][0] == pytest.approx(out.min().item())
        assert run.stat("activations", layer, "max")[1][0] == pytest.approx(out.max().item())
    relu = outputs["3"]
    assert run.stat("activations", "3", "frac_zero")[1][0] == pytest.approx(
        (relu == 0).double().mean().item()
    )
    assert run.scalar("loss")[1].tolist() == [pytest.approx(loss)]


def test_histogram_counts_sum_to_element_count(mlp_run):
    run, _, grads, _, outputs, _ = mlp_run
    for name, g in grads.items():
        hist = run.hist("gradients", name)
        total = hist.counts.sum() + hist.underflow.sum() + hist.overflow.sum() + hist.zeros.sum()
        assert total == g.numel()
        # the bins hold exactly the elements whose log10 |g| falls in them
        lo, hi = hist.edges[0], hist.edges[-1]
        logs = np.log10(np.abs(g.numpy().ravel())[g.numpy().ravel() != 0])
        assert hist.counts.sum() == np.count_nonzero((logs >= lo) & (logs <= hi))
    for layer in run.layers:
        hist = run.hist("activations", layer)
        assert hist.counts.sum() + hist.underflow.sum() + hist.overflow.sum() == outputs[layer].numel()
        expected, _ = np.histogram(outputs[layer].numpy().ravel(), bins=hist.edges)
        assert np.abs(hist.counts[0] - expected).sum() <= 2  # float32 edge rounding at most


def test_dead_fraction_of_a_layer_built_with_k_dead_units(tmp_path):
    k, width = 5, 20
    lin = nn.Linear(4, width)
    with torch.no_grad():
        lin.weight.fill_(0.5)
        lin.bias.fill_(0.1)  # inputs in [0, 1): every other unit fires for every sample
        lin.bias[:k] = -100.0  # ... and these never do
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(width, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with dyntrace.Recorder(model, opt, tmp_path / "dead.h5", every=1):
        for _ in range(4):
            opt.zero_grad()
            model(torch.rand(64, 4)).pow(2).mean().backward()
            opt.step()
    with dyntrace.open_run(tmp_path / "dead.h5") as run:
        steps, frac = run.stat("activations", "1", "frac_dead")
        assert steps.tolist() == [1, 2, 3, 4]
        np.testing.assert_allclose(frac, k / width)
        # dead for 3 consecutive records (the default patience) from the third record on
        np.testing.assert_allclose(
            run.stat("activations", "1", "frac_dead_persistent")[1], [0, 0, k / width, k / width]
        )
        assert run.stat("activations", "1", "units")[1][0] == width


def test_saturated_fraction_of_a_sigmoid_fed_large_inputs(tmp_path):
    lin = nn.Linear(1, 10, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    model = nn.Sequential(lin, nn.Sigmoid())
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.cat([torch.full((30, 1), 8.0), torch.full((30, 1), -8.0), torch.zeros(40, 1)])
    with dyntrace.Recorder(model, opt, tmp_path / "sat.h5", every=1):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    with dyntrace.open_run(tmp_path / "sat.h5") as run:
        assert run.stat("activations", "1", "frac_saturated")[1][0] == pytest.approx(0.6)


def test_nonfinite_gradients_are_counted_not_binned(tmp_path):
    w = nn.Parameter(torch.ones(10))
    model = nn.Module()
    model.w = w
    opt = torch.optim.SGD([w], lr=0.1)
    with dyntrace.Recorder(model, opt, tmp_path / "nan.h5", every=1, probes=["gradients"]):
        w.grad = torch.tensor([1.0, 2.0, float("nan"), float("inf"), -3.0, 0.0, 0.5, 0.5, 0.5, 0.5])
        opt.step()
    with dyntrace.open_run(tmp_path / "nan.h5") as run:
        assert run.field("gradients", "nonfinite", "w")[1][0] == 2
        assert run.stat("gradients", "w", "frac_nonfinite")[1][0] == pytest.approx(0.2)
        assert run.stat("gradients", "w", "count")[1][0] == 8
        assert run.stat("gradients", "w", "sum")[1][0] == pytest.approx(2.0)
        assert run.stat("gradients", "w", "max")[1][0] == 2.0
        hist = run.hist("gradients", "w")
        assert hist.counts.sum() + hist.underflow.sum() + hist.overflow.sum() == 7  # 8 finite, one of them 0
        assert hist.zeros[0] == 1


def test_gradient_accumulation_and_param_groups(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[2].parameters(), "lr": 0.01}]
    )
    xs = [torch.randn(8, 3) for _ in range(3)]
    with dyntrace.Recorder(model, opt, tmp_path / "acc.h5", every=1) as rec:
        opt.zero_grad()
        acts = []
        h = model[1].register_forward_hook(lambda m, i, o: acts.append(o.detach().clone()))
        for x in xs:
            model(x).sum().backward()
        h.remove()
        grad = model[0].weight.grad.clone()
        opt.step()
        rec.log(loss=1.0)
    with dyntrace.open_run(tmp_path / "acc.h5") as run:
        assert run.stat("gradients", "0.weight", "norm")[1][0] == pytest.approx(
            grad.double().norm().item(), rel=1e-6
        )
        every = torch.cat(acts).double()
        assert run.stat("activations", "1", "count")[1][0] == every.numel()
        assert run.stat("activations", "1", "mean")[1][0] == pytest.approx(every.mean().item(), rel=1e-6)
        assert run.scalar("lr/0")[1].tolist() == [0.1]
        assert run.scalar("lr/1")[1].tolist() == [0.01]


def test_record_steps_follow_the_schedule(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = dyntrace.schedules.FirstThenEvery(3, 5)
    with dyntrace.Recorder(model, opt, tmp_path / "s.h5", every=schedule) as rec:
        for _ in range(20):
            opt.zero_grad()
            model(torch.randn(4, 2)).sum().backward()
            opt.step()
            rec.log(loss=torch.tensor(1.5))
    with dyntrace.open_run(tmp_path / "s.h5") as run:
        assert run.record_steps.tolist() == [1, 2, 3, 8, 13, 18]
        steps, values = run.scalar("loss")
        assert steps.tolist() == list(range(1, 21))
        assert set(values.tolist()) == {1.5}
        assert run.n_steps == 20


def test_validation_pass_without_grad_is_not_recorded(tmp_path):
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with dyntrace.Recorder(model, opt, tmp_path / "v.h5", every=1):
        with torch.no_grad():
            model(torch.randn(100, 2))  # armed, but no gradients: not measured
        opt.zero_grad()
        model(torch.randn(5, 2)).sum().backward()
        opt.step()
    with dyntrace.open_run(tmp_path / "v.h5") as run:
        assert run.stat("activations", "1", "count")[1][0] == 15


def test_std_of_tightly_clustered_values_survives_float32_accumulation():
    from dyntrace.summaries import summarise_tensor

    x = 0.5 + 1e-4 * torch.randn(300_000)  # a saturated-sigmoid-like spread: std/mean = 2e-4
    packed = summarise_tensor(x, (0.0, 1.0, 10), cap=1 << 14, magnitude=False).numpy()
    count, total, total_sq = packed[:3]
    std = np.sqrt(total_sq / count - (total / count) ** 2)
    assert std == pytest.approx(x.double().std(unbiased=False).item(), rel=1e-4)
    assert total / count == pytest.approx(x.double().mean().item(), rel=1e-7)


@pytest.mark.parametrize("magnitude", [True, False])
def test_batched_and_single_tensor_summaries_agree(magnitude):
    from dyntrace.summaries import summarise_tensor, summarise_tensors

    tensors = [
        torch.randn(100_000) * 1e-3,
        torch.randn(300),
        None,
        torch.tensor([0.0, 2.0, float("nan"), float("inf"), -1e-5]),
    ]
    edges = (-12.0, 4.0, 80) if magnitude else (-3.05, 3.05, 61)  # no sample on a bin edge
    batched = summarise_tensors(tensors, edges, cap=1 << 14, magnitude=magnitude, centred=not magnitude)
    for row, tensor in zip(batched, tensors):
        if tensor is None:
            assert row[0] == 0 and row[7] == 0 and row[8:].sum() == 0
            continue
        single = summarise_tensor(tensor, edges, cap=1 << 14, magnitude=magnitude, centred=not magnitude)
        assert torch.equal(single[5:], row[5:])  # zeros, non-finite, sample size, histogram
        np.testing.assert_allclose(single[:5].numpy(), row[:5].numpy(), rtol=1e-6)


def test_merging_two_halves_equals_summarising_the_whole():
    from dyntrace.summaries import merge_packed, summarise_tensor

    x = torch.randn(12_000)
    x[::7] = 0.0
    x[5] = float("nan")
    edges = (-4.0, 4.0, 40)
    whole = summarise_tensor(x, edges, cap=1 << 14, magnitude=False, centred=False)
    merged = merge_packed(
        *(
            summarise_tensor(h, edges, cap=1 << 14, magnitude=False, centred=False)
            for h in (x[:5000], x[5000:])
        )
    )
    assert merged[0] == whole[0] == 12_000
    assert torch.equal(merged[5:], whole[5:])  # zeros, non-finite, sample size, histogram
    assert (
        torch.isnan(merged[1:5]).all() and torch.isnan(whole[1:5]).all()
    )  # NaN poisons moments; a probe's check() recomputes
    clean = torch.where(torch.isfinite(x), x, torch.zeros(()))
    halves = merge_packed(
        *(summarise_tensor(h, edges, cap=1 << 14, magnitude=False) for h in (clean[:5000], clean[5000:]))
    )
    np.testing.assert_allclose(
        halves[1:3].numpy(), [clean.double().sum().item(), clean.double().square().sum().item()], rtol=1e-6
    )
    assert halves[3] == clean.min() and halves[4] == clean.max()


def test_histograms_counted_later_for_many_layers_match_each_layers_own_summary():
    """The activations probe takes moments and a sample in the hook and bins every layer's
    samples at once in collect(): each row must equal summarise_tensor's, counts by hand."""
    from dyntrace.summaries import histogram_rows, merge_packed, sample_moments, summarise_tensor

    on_edges = torch.tensor([-1.0, -0.5, 0.0, 0.0, 0.25, 0.5, 1.0, 2.0, float("nan"), float("inf")])
    relu = torch.relu(torch.randn(256, 300))
    second = torch.relu(torch.randn(64, 300))  # a second forward pass of the same layer
    ranges = [
        (-1.0, 1.0),
        (0.0, torch.tensor(5.0, dtype=torch.float64)),
        (0.0, torch.tensor(5.0, dtype=torch.float64)),
    ]
    xs = [on_edges, relu, second]
    parts = [sample_moments(x, cap=1 << 14, centred=False) for x in xs]
    lo = torch.tensor([float(r[0]) for r in ranges], dtype=torch.float64)
    hi = torch.tensor([float(r[1]) for r in ranges], dtype=torch.float64)
    rows = histogram_rows([p[2] for p in parts], lo, hi, 8, owners=(0, 1, 1), rows=2)
    # by hand, 8 bins of 0.25 on [-1, 1]: underflow none; -1 and -0.5 open bins 1 and 3; the
    # zeros bin 5 (counted as zeros too), 0.25 bin 6, 0.5 bin 7; 1 and 2 overflow; NaN and inf
    # non-finite, never binned
    expected = [0, 1, 0, 1, 0, 2, 1, 1, 0, 2]
    assert rows[0, 3:].tolist() == expected
    assert rows[0, :3].tolist() == [2, 2, 10]  # zeros, non-finite, sample size
    for k, (x, (a, b)) in enumerate(zip(xs[:2], ranges[:2])):
        whole = summarise_tensor(x, (a, b, 8), cap=1 << 14, magnitude=False, centred=False)
        if k == 1:  # the layer's two passes merge as two summaries would
            whole = merge_packed(
                whole, summarise_tensor(second, (a, b, 8), cap=1 << 14, magnitude=False, centred=False)
            )
        assert torch.equal(whole[5:], rows[k])
    # both passes sampled: 76800 elements with stride 5, 19200 with stride 3 (2 is even: it would skip odd columns)
    assert rows[1, 2] == 76800 // 5 + 19200 // 3
    assert rows[1, 0] == (relu.reshape(-1)[::5] == 0).sum() + (second.reshape(-1)[::3] == 0).sum()


class _TwoBranches(nn.Module):
    """Two ReLU layers with dead units set by their biases; branch b runs only when told."""

    def __init__(self):
        super().__init__()
        self.a_lin, self.a_act = nn.Linear(4, 6), nn.ReLU()
        self.b_lin, self.b_act = nn.Linear(4, 10), nn.ReLU()
        with torch.no_grad():
            for lin in (self.a_lin, self.b_lin):
                lin.weight.fill_(0.5)
                lin.bias.fill_(0.1)  # inputs in [0, 1): alive for every sample
            self.a_lin.bias[:2] = -100.0  # dead at every record
            self.b_lin.bias[:3] = -100.0
        self.use_b = True

    def forward(self, x):
        out = self.a_act(self.a_lin(x)).sum(1)
        if self.use_b:
            out = out + self.b_act(self.b_lin(x)).sum(1)
        return out


def test_dead_unit_runs_survive_a_record_without_the_layer_and_restart_when_a_unit_fires(tmp_path):
    model = _TwoBranches()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the biases stay as set
    # record 3 runs without branch b; b's unit 3 is dead at records 1, 2, 5, 6 and alive at 4
    b_used = [True, True, False, True, True, True]
    unit3 = [-100.0, -100.0, -100.0, 0.1, -100.0, -100.0]
    with (
        pytest.warns(UserWarning, match="b_act ran no forward pass"),  # record 3, as intended
        dyntrace.Recorder(model, opt, tmp_path / "runs.h5", every=1),
    ):
        for use_b, bias in zip(b_used, unit3):
            model.use_b = use_b
            with torch.no_grad():
                model.b_lin.bias[3] = bias
            opt.zero_grad()
            model(torch.rand(32, 4)).pow(2).mean().backward()
            opt.step()
    with dyntrace.open_run(tmp_path / "runs.h5") as run:
        steps, dead_a = run.field("activations", "dead", "a_act")
        assert steps.tolist() == [1, 2, 3, 4, 5, 6]
        assert dead_a.tolist() == [2] * 6
        # patience 3: a's two units are persistently dead from the third record on
        assert run.field("activations", "dead_persistent", "a_act")[1].tolist() == [0, 0, 2, 2, 2, 2]
        seen = [0, 1, 3, 4, 5]  # b's records
        assert run.field("activations", "dead", "b_act")[1][seen].tolist() == [4, 4, 3, 4, 4]
        # b's always-dead units: runs 1, 2, (kept through record 3), 3, 4, 5; unit 3's run
        # restarts at record 4 (it fired) and reaches only 2 by record 6
        assert run.field("activations", "dead_persistent", "b_act")[1][seen].tolist() == [0, 0, 3, 3, 3]


def test_micro_batches_merge_into_the_moments_of_the_whole_step_centred_or_not(tmp_path):
    """Three forward passes a step: each hook leaves its reductions, collect() assembles and
    merges them. A saturated sigmoid is summed around its mean from the second record on (the
    first record shows it clustered); a tanh layer stays uncentred. Every moment and the
    saturation count equal those of the three outputs concatenated, in float64."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 6), nn.Sigmoid(), nn.Linear(6, 5), nn.Tanh())
    with torch.no_grad():
        model[0].bias.fill_(6.0)  # outputs near 1: clustered far from 0
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    outputs = {"1": [], "3": []}
    hooks = [
        model[i].register_forward_hook(lambda m, i, o, k=str(i): outputs[k].append(o.detach()))
        for i in (1, 3)
    ]
    with dyntrace.Recorder(model, opt, tmp_path / "micro.h5", every=1):
        for _ in range(2):
            opt.zero_grad()
            for n in (7, 5, 9):
                model(torch.randn(n, 3)).sum().backward()
            opt.step()
    for h in hooks:
        h.remove()
    with dyntrace.open_run(tmp_path / "micro.h5") as run:
        for layer, outs in outputs.items():
            for r in range(2):
                every = torch.cat(outs[3 * r : 3 * r + 3]).double().reshape(-1)
                assert run.stat("activations", layer, "count")[1][r] == every.numel()
                assert run.stat("activations", layer, "min")[1][r] == every.min().item()
                assert run.stat("activations", layer, "max")[1][r] == every.max().item()
                assert run.stat("activations", layer, "mean")[1][r] == pytest.approx(
                    every.mean().item(), rel=1e-6
                )
                assert run.stat("activations", layer, "std")[1][r] == pytest.approx(
                    every.std(unbiased=False).item(), rel=1e-4
                )
                near = (
                    ((every <= 0.05) | (every >= 0.95))
                    if layer == "1"
                    else ((every <= -0.95) | (every >= 0.95))
                )
                assert run.field("activations", "saturated", layer)[1][r] == int(near.sum())


def test_summaries_of_parameters_build_no_graph():
    """The summaries read parameters as they are (no detach of each): they must run without
    autograd, or every record step would hang a graph on the model's weights."""
    from dyntrace.probes.base import tensor_norms
    from dyntrace.summaries import summarise_tensors

    params = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(4))]
    rows = summarise_tensors(params, (None, None, 8), cap=1 << 14, magnitude=False)
    norms = tensor_norms(params, torch.device("cpu"))
    assert not rows.requires_grad and not norms.requires_grad
    assert rows[0, 1].item() == pytest.approx(params[0].sum().item(), rel=1e-6)
    assert norms.tolist() == pytest.approx([p.norm().item() for p in params], rel=1e-6)
