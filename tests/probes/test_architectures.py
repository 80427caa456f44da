"""Real architectures: transformers' GPT-2 and BERT (built from configs, random init, nothing
downloaded), an LSTM language model, and activation functions called inside ``forward``.

Every recorded statistic is compared with the same statistic computed by hand on the same
batch, from tensors captured by the test's own hooks (or returned by the model) in a pass
with the same weights.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dyntrace
from dyntrace.analysis import Thresholds, diagnose
from dyntrace.probes.activations import ActivationsProbe
from dyntrace.probes.call_sites import CallSites, _FunctionalMode
from tests.sync_guard import NoSync

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SEQ, BATCH, VOCAB = 16, 4, 64


def gpt2(layers=2, hidden=32):
    config = transformers.GPT2Config(
        n_layer=layers,
        n_embd=hidden,
        n_head=2,
        vocab_size=VOCAB,
        n_positions=SEQ,
        bos_token_id=0,
        eos_token_id=0,
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


def bert(layers=2, hidden=32, intermediate=64):
    config = transformers.BertConfig(
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=2,
        intermediate_size=intermediate,
        vocab_size=VOCAB,
        max_position_embeddings=SEQ,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=3,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def tokens(seed=1):
    return torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(seed))


def capture(model, names, call):
    """Outputs of the named modules in one no-grad pass (ignored by the recorder's hooks)."""
    out = {}
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: out.__setitem__(n, o)) for n in names]
    with torch.no_grad():
        result = call()
    for h in handles:
        h.remove()
    return out, result


def record_one_step(model, path, loss_of, **rec_kwargs):
    """Record step 1; returns nothing (the weights the forward saw are those before the step)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dyntrace")
        with dyntrace.Recorder(
            model, opt, path, every=1, probes=rec_kwargs.pop("probes", ["activations"]), **rec_kwargs
        ) as rec:
            opt.zero_grad()
            loss = loss_of()
            loss.backward()
            opt.step()
            rec.log(loss=loss)


def assert_stats(run, name, x, *, bounds=None, eps=0.05, units=None, axis=None):
    """Recorded count, mean, std, min, max (and saturation, units) equal those of ``x``."""
    x = x.detach().double()
    assert run.stat("activations", name, "count")[1][0] == x.numel()
    assert run.stat("activations", name, "mean")[1][0] == pytest.approx(x.mean().item(), rel=1e-5, abs=1e-7)
    assert run.stat("activations", name, "std")[1][0] == pytest.approx(x.std(unbiased=False).item(), rel=1e-5)
    assert run.stat("activations", name, "min")[1][0] == pytest.approx(x.min().item(), rel=1e-6, abs=1e-9)
    assert run.stat("activations", name, "max")[1][0] == pytest.approx(x.max().item(), rel=1e-6)
    if bounds is not None:
        lo, hi = bounds
        saturated = ((x <= lo + eps) | (x >= hi - eps)).double().mean().item()
        assert run.stat("activations", name, "frac_saturated")[1][0] == pytest.approx(saturated)
    if units is not None:
        assert run.stat("activations", name, "units")[1][0] == units
        assert run.unit_axes("activations")[name] == axis


# -- transformers ---------------------------------------------------------------------------------


def test_gpt2_records_every_gelu_the_attention_softmax_and_layernorms(tmp_path):
    model = gpt2()
    x = tokens()
    ln = [f"transformer.h.{i}.ln_{k}" for i in range(2) for k in (1, 2)] + ["transformer.ln_f"]
    act = [f"transformer.h.{i}.mlp.act" for i in range(2)]
    seen, result = capture(model, ln + act, lambda: model(x, output_attentions=True))
    record_one_step(model, tmp_path / "gpt2.h5", lambda: model(x, labels=x).loss)
    with dyntrace.open_run(tmp_path / "gpt2.h5") as run:
        kinds = run.kinds("activations")
        softmax = [f"transformer.h.{i}.attn/softmax#0" for i in range(2)]
        assert set(run.names("activations")) == set(
            ln + act + softmax
        )  # the free reserved columns are hidden
        assert {kinds[n] for n in act} == {"gelu"} and {kinds[n] for n in ln} == {"layernorm"}
        for name in act:  # NewGELUActivation: 4 × 32 features of (N, T, C), not T
            assert_stats(run, name, seen[name], units=128, axis=-1)
        for name in ln:
            assert_stats(run, name, seen[name], units=32, axis=-1)
            assert abs(run.stat("activations", name, "mean")[1][0]) < 1e-6
            # ≈ 1 up to LayerNorm's ε = 1e-5 next to the variance of a 0.02-std embedding (4e-4)
            assert run.stat("activations", name, "std")[1][0] == pytest.approx(1.0, abs=1e-2)
        for name, probs in zip(softmax, result.attentions):
            assert kinds[name] == "softmax"
            assert_stats(run, name, probs, bounds=(0.0, 1.0), units=SEQ, axis=-1)
            assert (
                0.0 <= run.stat("activations", name, "min")[1][0]
                and run.stat("activations", name, "max")[1][0] <= 1.0
            )
            assert (
                0.0 < run.stat("activations", name, "frac_saturated")[1][0] < 1.0
            )  # causal zeros, lone ones
        # attention weights near 0 are no fault: no diagnosis, even with a low threshold
        found = diagnose(run, thresholds=Thresholds(saturated_fraction=0.1, dead_fraction=0.01))
        assert [d.subject for d in found if d.kind in ("saturation", "dead_units")] == []


def test_bert_records_every_gelu_the_attention_softmax_layernorms_and_the_pooler(tmp_path):
    model = bert()
    x, y = tokens(2), torch.tensor([0, 1, 2, 1])
    blocks = [f"bert.encoder.layer.{i}" for i in range(2)]
    act = [f"{b}.intermediate.intermediate_act_fn" for b in blocks]
    ln = ["bert.embeddings.LayerNorm"] + [
        f"{b}.{part}.LayerNorm" for b in blocks for part in ("attention.output", "output")
    ]
    seen, result = capture(
        model, ln + act + ["bert.pooler.activation"], lambda: model(x, output_attentions=True)
    )
    record_one_step(model, tmp_path / "bert.h5", lambda: model(x, labels=y).loss)
    with dyntrace.open_run(tmp_path / "bert.h5") as run:
        kinds = run.kinds("activations")
        softmax = [f"{b}.attention.self/softmax#0" for b in blocks]
        assert set(run.names("activations")) == set(ln + act + softmax + ["bert.pooler.activation"])
        for name in act:  # GELUActivation: its F.gelu is the module's, not a call site of its own
            assert kinds[name] == "gelu"
            assert_stats(run, name, seen[name], units=64, axis=-1)
        for name in ln:
            assert_stats(run, name, seen[name], units=32, axis=-1)
            assert abs(run.stat("activations", name, "mean")[1][0]) < 1e-6
            assert run.stat("activations", name, "std")[1][0] == pytest.approx(1.0, abs=1e-2)
        for name, probs in zip(softmax, result.attentions):
            assert_stats(run, name, probs, bounds=(0.0, 1.0), units=SEQ, axis=-1)
        assert_stats(
            run,
            "bert.pooler.activation",
            seen["bert.pooler.activation"],
            bounds=(-1.0, 1.0),
            units=32,
            axis=-1,
        )


def test_non_record_steps_of_gpt2_call_no_hook_and_no_function_mode(tmp_path, monkeypatch):
    model = gpt2()
    x = tokens()
    calls = {"mode": 0, "observe": 0, "module": 0}

    def counting(method, key):
        def wrapper(*args, **kwargs):
            calls[key] += 1
            return method(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        _FunctionalMode, "__torch_function__", counting(_FunctionalMode.__torch_function__, "mode")
    )
    monkeypatch.setattr(ActivationsProbe, "_observe", counting(ActivationsProbe._observe, "observe"))
    monkeypatch.setattr(CallSites, "_leave", counting(CallSites._leave, "module"))
    hooks_before = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    per_step = []
    with dyntrace.Recorder(model, opt, tmp_path / "count.h5", every=3) as rec:  # records steps 1, 4
        for step in range(1, 7):
            if step in (2, 3, 5, 6):  # armed only for steps 1 and 4: nothing attached now
                assert [
                    (len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()
                ] == hooks_before
            calls.update(mode=0, observe=0, module=0)
            opt.zero_grad()
            loss = model(x, labels=x).loss
            loss.backward()
            opt.step()
            rec.log(loss=loss)
            per_step.append(dict(calls))
    for step, counted in enumerate(per_step, start=1):
        if step in (1, 4):
            assert counted["mode"] > 100 and counted["observe"] == 9 and counted["module"] > 0, (
                step,
                counted,
            )
        else:
            assert counted == {"mode": 0, "observe": 0, "module": 0}, (step, counted)
    with dyntrace.open_run(tmp_path / "count.h5") as run:
        assert run.steps("activations").tolist() == [1, 4]


# -- recurrent layers -----------------------------------------------------------------------------


class LSTMLanguageModel(nn.Module):
    def __init__(self, rnn="lstm", hidden=24):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[rnn](
            16, hidden, num_layers=2, batch_first=True
        )
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, x):
        out, _ = self.rnn(self.embed(x))
        return self.head(out)


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_rnn_output_sequence_and_final_hidden_state_have_the_hidden_size_as_units(tmp_path, rnn):
    torch.manual_seed(0)
    model = LSTMLanguageModel(rnn)
    x, targets = tokens(3)[:, :-1], tokens(3)[:, 1:]
    seen, _ = capture(model, ["rnn"], lambda: model(x))
    out, hidden = seen["rnn"]
    record_one_step(
        model, tmp_path / "rnn.h5", lambda: F.cross_entropy(model(x).reshape(-1, VOCAB), targets.reshape(-1))
    )
    with dyntrace.open_run(tmp_path / "rnn.h5") as run:
        assert run.names("activations") == ["rnn", "rnn/h_n"]
        assert run.kinds("activations") == {"rnn": rnn, "rnn/h_n": rnn}
        h_n = hidden[0] if rnn == "lstm" else hidden  # (layers, N, hidden): units last too
        assert h_n.shape == (2, BATCH, 24)
        assert_stats(run, "rnn", out, bounds=(-1.0, 1.0), units=24, axis=-1)
        assert_stats(run, "rnn/h_n", h_n, bounds=(-1.0, 1.0), units=24, axis=-1)
        assert run.stat("activations", "rnn", "frac_dead")[1][0] == 0.0


# -- functional activations and the unit axis -----------------------------------------------------


class CallsRelu(nn.Module):
    """forward calls F.relu (and x.sigmoid()) on its input scaled by a parameter (= 1)."""

    def __init__(self, sigmoid=False):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.sigmoid = sigmoid

    def forward(self, x):
        h = F.relu(x * self.scale)
        return h.sigmoid() if self.sigmoid else h


def dead_features(shape, dead, axis, generator, channels_last=False):
    """A tensor whose units ``dead`` (along ``axis``) are < 0 everywhere, the others > 0 somewhere."""
    x = torch.randn(shape, generator=generator)
    index = [slice(None)] * len(shape)
    index[axis] = dead
    x[tuple(index)] = -x[tuple(index)].abs() - 0.1
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize(
    "shape, axis, stored_axis, channels_last",
    [((8, 10, 12), 2, -1, False), ((4, 12, 5, 5), 1, -3, True)],
    ids=["N,T,C", "N,C,H,W channels_last"],
)
def test_functional_relu_counts_dead_features_on_the_unit_axis(
    tmp_path, shape, axis, stored_axis, channels_last
):
    k, units = 5, shape[axis]
    x = dead_features(shape, [0, 3, 4, 7, 11], axis, torch.Generator().manual_seed(0), channels_last)
    assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
    model = CallsRelu(sigmoid=True)
    record_one_step(model, tmp_path / "dead.h5", lambda: model(x).sum())
    with dyntrace.open_run(tmp_path / "dead.h5") as run:
        assert run.names("activations") == ["relu#0", "sigmoid#0"]
        assert run.kinds("activations") == {"relu#0": "relu", "sigmoid#0": "sigmoid"}
        assert run.stat("activations", "relu#0", "frac_dead")[1][0] == pytest.approx(k / units)
        assert_stats(run, "relu#0", F.relu(x), units=units, axis=stored_axis)
        assert_stats(run, "sigmoid#0", F.relu(x).sigmoid(), bounds=(0.0, 1.0), units=units, axis=stored_axis)


def test_functional_sites_are_named_by_module_function_and_call_index(tmp_path):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.act = nn.GELU()  # a recorded module: the F.gelu inside it is not a call site

        def forward(self, x):
            h = torch.tanh(self.fc(x))
            h = self.act(F.relu(h) + torch.tanh(h))
            return torch.softmax(h, dim=-1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([Block(), Block()])

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return F.silu(x)

    torch.manual_seed(0)
    model, x = Net(), torch.randn(6, 8)
    record_one_step(model, tmp_path / "sites.h5", lambda: model(x).pow(2).sum())
    with dyntrace.open_run(tmp_path / "sites.h5") as run:
        names = run.names("activations")
        expected_sites = [
            f"blocks.{i}/{f}" for i in range(2) for f in ("tanh#0", "relu#0", "tanh#1", "softmax#0")
        ] + ["silu#0"]
        assert names == ["blocks.0.act", "blocks.1.act"] + expected_sites  # slots in the order first seen
        order = run.field("activations", "order")[1]
        # forward order: block 0's calls, its GELU, block 1's, the final silu
        by_order = [n for _, n in sorted(zip(order, names))]
        assert by_order == [
            "blocks.0/tanh#0",
            "blocks.0/relu#0",
            "blocks.0/tanh#1",
            "blocks.0.act",
            "blocks.0/softmax#0",
            "blocks.1/tanh#0",
            "blocks.1/relu#0",
            "blocks.1/tanh#1",
            "blocks.1.act",
            "blocks.1/softmax#0",
            "silu#0",
        ]


def test_selection_options_narrow_and_widen(tmp_path):
    def names(probe):
        torch.manual_seed(0)
        model = gpt2()
        x = tokens()
        record_one_step(model, tmp_path / "opt.h5", lambda: model(x, labels=x).loss, probes=[probe])
        with dyntrace.open_run(tmp_path / "opt.h5") as run:
            return run.names("activations")

    assert names(ActivationsProbe(functional=False)) == [n for n in names(ActivationsProbe()) if "/" not in n]
    assert names(ActivationsProbe(modules=["*.mlp.act", "*/softmax#*"])) == [
        "transformer.h.0.mlp.act",
        "transformer.h.1.mlp.act",
        "transformer.h.0.attn/softmax#0",
        "transformer.h.1.attn/softmax#0",
    ]
    assert names(ActivationsProbe(modules=[nn.LayerNorm])) == [
        "transformer.h.0.ln_1",
        "transformer.h.0.ln_2",
        "transformer.h.1.ln_1",
        "transformer.h.1.ln_2",
        "transformer.ln_f",
    ]
    assert names(ActivationsProbe(modules=["*/*"], functional={"softmax"})) == [
        "transformer.h.0.attn/softmax#0",
        "transformer.h.1.attn/softmax#0",
    ]
    with pytest.raises(ValueError, match="Invalid functional: 'swish'"):
        ActivationsProbe(functional={"swish"})
    with pytest.raises(ValueError, match="Invalid functional_slots"):
        ActivationsProbe(functional_slots=-1)


def test_too_few_slots_warn_once_and_keep_the_first_sites(tmp_path):
    torch.manual_seed(0)
    model = CallsRelu(sigmoid=True)
    x = torch.randn(4, 6)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.warns(
        UserWarning, match=r"more functional call sites than the 1 reserved columns; sigmoid#0"
    ):
        with dyntrace.Recorder(
            model, opt, tmp_path / "slots.h5", every=1, probes=[ActivationsProbe(functional_slots=1)]
        ) as rec:
            for _ in range(2):
                opt.zero_grad()
                model(x).sum().backward()
                opt.step()
                rec.log()
    with dyntrace.open_run(tmp_path / "slots.h5") as run:
        assert run.names("activations") == ["relu#0"]


def test_a_layer_without_a_forward_pass_on_a_record_step_is_named_in_a_warning(tmp_path):
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.a, self.b = nn.ReLU(), nn.Tanh()
            self.use_b = True

        def forward(self, x):
            h = self.a(self.fc(x))
            return self.b(h) if self.use_b else h

    model = Branchy()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(8, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with dyntrace.Recorder(model, opt, tmp_path / "branch.h5", every=1, probes=["activations"]) as rec:
            for step in range(3):
                model.use_b = step == 0
                opt.zero_grad()
                model(x).sum().backward()
                opt.step()
                rec.log()
    messages = [str(w.message) for w in caught if "dyntrace" in str(w.message)]
    assert messages == [
        (
            "dyntrace: activations: b ran no forward pass with gradients on record step 2 while other layers did; "
            "its statistics there are empty (NaN)"
        )
    ]
    with dyntrace.open_run(tmp_path / "branch.h5") as run:
        assert np.isnan(run.stat("activations", "b", "mean")[1]).tolist() == [False, True, True]


# -- the device discipline on the new paths --------------------------------------------------------


def _guarded_models():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    return [
        ("functional N,T,C", CallsRelu(sigmoid=True), dead_features((8, 10, 12), [1, 2], 2, g)),
        (
            "functional N,C,H,W channels_last",
            CallsRelu(),
            dead_features((4, 6, 5, 5), [0], 1, g, channels_last=True),
        ),
        ("lstm", LSTMLanguageModel("lstm"), tokens(5)),
    ]


@pytest.mark.parametrize("case", range(3), ids=["functional N,T,C", "functional N,C,H,W", "lstm"])
def test_new_paths_make_one_transfer_and_no_sync(tmp_path, case):
    _, model, x = _guarded_models()[case]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    transfers = []
    with dyntrace.Recorder(model, opt, tmp_path / "sync.h5", every=2, probes="all", flush_every=3600) as rec:
        for _ in range(4):
            with NoSync() as guard:
                opt.zero_grad()
                model(x).float().pow(2).mean().backward()
                opt.step()
                rec.log()
            transfers.append(guard.transfers)
    assert transfers == [1, 0, 1, 0]
    with dyntrace.open_run(tmp_path / "sync.h5") as run:
        assert run.steps("activations").tolist() == [1, 3]
        assert np.isfinite(run.stat("activations", None, "mean")[1]).all()


@pytest.mark.parametrize("case", range(3), ids=["functional N,T,C", "functional N,C,H,W", "lstm"])
def test_new_paths_record_with_meta_as_the_default_device(tmp_path, case):
    _, model, x = _guarded_models()[case]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.set_default_device("meta")
        try:
            with dyntrace.Recorder(
                model, opt, tmp_path / "meta.h5", every=1, probes="all", flush_every=3600
            ) as rec:
                for _ in range(3):
                    opt.zero_grad()
                    model(x).float().pow(2).mean().backward()
                    opt.step()
                    rec.log()
        finally:
            torch.set_default_device(None)
    assert [str(w.message) for w in caught if "dyntrace" in str(w.message)] == []
    with dyntrace.open_run(tmp_path / "meta.h5") as run:
        assert run.steps("activations").tolist() == [1, 2, 3]
        assert np.isfinite(run.stat("activations", None, "mean")[1]).all()
        assert (run.stat("activations", None, "units")[1] > 0).all()


def test_an_output_rewritten_in_place_later_is_recorded_as_its_layer_returned_it(tmp_path):
    """The samples kept until collect() are copies. ReLU(inplace=True) rewrites the BatchNorm's
    output tensor; with 64 × 32 = 2048 values (fewer than the histogram sample) the sample is the
    whole tensor, so a kept view would show the ReLU's zeros in the BatchNorm's column."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.BatchNorm1d(32), nn.ReLU(inplace=True), nn.Linear(32, 2))
    seen = {}
    model[1].register_forward_hook(lambda m, i, o: seen.__setitem__("bn", o.detach().clone()))
    x = torch.randn(64, 6)
    record_one_step(model, tmp_path / "inplace.h5", lambda: model(x).square().mean())
    bn = seen["bn"].double().numpy().ravel()
    with dyntrace.open_run(tmp_path / "inplace.h5") as run:
        hist = run.hist("activations", "1")
        assert run.stat("activations", "1", "frac_zero")[1][0] == 0.0
    edges = np.atleast_2d(hist.edges)[0]
    inside = bn[(bn >= edges[0]) & (bn < edges[-1])]
    expected = np.bincount(np.searchsorted(edges, inside, side="right") - 1, minlength=len(edges) - 1)
    assert hist.zeros[0] == 0 and (bn == 0).sum() == 0
    np.testing.assert_array_equal(hist.counts[0], expected)
    assert hist.underflow[0] == (bn < edges[0]).sum() and hist.sampled[0] == bn.size
