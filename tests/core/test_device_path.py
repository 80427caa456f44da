"""The record path on any device: every tensor made where the data lives, one transfer per
record step, no sync-forcing operation, and a failure that stays with the probe that made it.

A CPU machine cannot see a CUDA sync, so two guards stand in for a GPU:
``torch.set_default_device("meta")`` after the model exists (a factory call without
``device=`` then makes a meta tensor, which cannot be moved to the host), and
:class:`tests.sync_guard.NoSync`, a ``TorchFunctionMode`` that fails on every operation that
would force a CUDA sync.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import dyntrace
from dyntrace.summaries import FieldSpec, ProbeLayout
from tests.sync_guard import NoSync, SyncError

STEPS = 6


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, 16),
        nn.Tanh(),
        nn.Linear(16, 8),
        nn.Sigmoid(),
        nn.Linear(8, 1),
    )


def _batches(n):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(32, 5, generator=g), torch.randn(32, 1, generator=g)) for _ in range(n)]


def _step(model, opt, x, y):
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    return loss


@pytest.mark.parametrize("optimizer", ["adam", "radam", "sgd"])
def test_every_probe_records_every_step_with_meta_as_the_default_device(tmp_path, optimizer):
    model = _model()
    make = {
        "adam": torch.optim.Adam,
        "radam": torch.optim.RAdam,
        "sgd": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    }
    opt = make[optimizer](model.parameters())
    batches = _batches(STEPS + 1)
    _step(model, opt, *batches[0])  # the optimizer state exists before the guard goes up
    path = tmp_path / "meta.h5"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.set_default_device("meta")
        try:
            with dyntrace.Recorder(model, opt, path, every=1, probes="all", flush_every=3600) as rec:
                for x, y in batches[1:]:
                    rec.log(loss=_step(model, opt, x, y))
        finally:
            torch.set_default_device(None)
    assert [str(w.message) for w in caught if "dyntrace" in str(w.message)] == []
    with dyntrace.open_run(path) as run:
        expected = ["activations", "gradients", "weights", "steps"] + (
            [] if optimizer == "sgd" else ["adaptive"]
        )
        for probe in expected:
            assert run.steps(probe).tolist() == list(range(1, STEPS + 1)), probe
        assert run.scalar("loss")[0].tolist() == list(range(1, STEPS + 1))
        assert run.scalar("grad_norm")[0].tolist() == list(range(1, STEPS + 1))
        assert np.isfinite(run.stat("activations", None, "mean")[1]).all()


def test_record_steps_make_one_transfer_and_no_sync_forcing_operation(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    batches = _batches(STEPS + 1)
    _step(model, opt, *batches[0])
    transfers = []
    with dyntrace.Recorder(model, opt, tmp_path / "sync.h5", every=2, probes="all", flush_every=3600) as rec:
        for x, y in batches[1:]:
            with NoSync() as guard:
                loss = _step(model, opt, x, y)
                rec.log(loss=loss)
            transfers.append(guard.transfers)
    assert transfers == [1, 0] * (STEPS // 2)  # steps 1, 3, 5 record: one transfer each
    with dyntrace.open_run(tmp_path / "sync.h5") as run:
        assert run.steps("gradients").tolist() == [1, 3, 5]
        assert run.scalar("loss")[0].tolist() == list(range(1, STEPS + 1))


def test_the_guard_itself_catches_what_it_should(monkeypatch):
    import tests.sync_guard as guard_module

    monkeypatch.setattr(guard_module, "_called_by_dyntrace", lambda: True)  # judge this test's calls
    x = torch.randn(10)
    for bad in (
        lambda: torch.bincount(torch.tensor([1, 2])),
        lambda: x[x > 0],
        lambda: x.sum().item(),
        lambda: x.nonzero(),
        lambda: float(x.sum()),
    ):
        with NoSync(), pytest.raises(SyncError):
            bad()
    with NoSync() as guard:
        x.cpu().numpy()
    assert guard.transfers == 1


class _OtherDevice(dyntrace.probes.Probe):
    """A broken probe: its summaries live on a device nothing can be copied from."""

    name = "other_device"

    def setup(self, ctx):
        return ProbeLayout(names=["a", "b"], fields=[FieldSpec("x")])

    def collect(self, ctx):
        return {"x": torch.zeros(2, device="meta")}


def test_a_probe_whose_summaries_cannot_move_alone_is_switched_off(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = _batches(4)
    pending = []
    with pytest.warns(UserWarning, match="probe 'other_device' returned summaries that cannot be moved"):
        with dyntrace.Recorder(
            model,
            opt,
            tmp_path / "bad.h5",
            every=1,
            probes=["scalars", "activations", "gradients", _OtherDevice()],
            flush_every=3600,
        ) as rec:
            for i in range(300):
                rec.log(loss=_step(model, opt, *batches[i % 4]))
                pending.append(len(rec._scalars))
            assert rec.probes == ["scalars", "activations", "gradients"]
    assert max(pending) <= 2  # nothing piles up: every record step empties the scalar log
    with dyntrace.open_run(tmp_path / "bad.h5") as run:
        assert run.steps("gradients").tolist() == list(range(1, 301))
        assert run.steps("activations").tolist() == list(range(1, 301))
        assert run.scalar("loss")[0].tolist() == list(range(1, 301))


def test_a_failed_transfer_fails_alone_and_the_next_record_is_a_fresh_attempt(tmp_path, monkeypatch):
    import dyntrace.record_step as recorder_module  # where the record step calls to_host

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    real = recorder_module.to_host
    calls = {"n": 0}

    def flaky(parts):
        calls["n"] += 1
        if calls["n"] in (1, 2):  # the first two record steps fail whole (statics included)
            raise RuntimeError("device lost")
        return real(parts)

    monkeypatch.setattr(recorder_module, "to_host", flaky)
    with pytest.warns(UserWarning, match="recording step 1 failed"):
        with dyntrace.Recorder(model, opt, tmp_path / "flaky.h5", every=1, flush_every=3600) as rec:
            for x, y in _batches(5):
                rec.log(loss=_step(model, opt, x, y))
                assert len(rec._scalars) <= 1
    with dyntrace.open_run(tmp_path / "flaky.h5") as run:
        assert run.steps("gradients").tolist() == [3, 4, 5]
        assert run.steps("activations").tolist() == [3, 4, 5]
        assert np.isfinite(
            run.hist("activations", "2").edges
        ).all()  # statics written by the first good record


class _NoStatics(dyntrace.probes.Probe):
    """A probe with columns but no static field: its records must not wait for statics."""

    name = "no_statics"

    def setup(self, ctx):
        return ProbeLayout(names=["n"], fields=[FieldSpec("x")])

    def collect(self, ctx):
        return {"x": torch.full((1,), float(ctx.step), dtype=torch.float64, device=ctx.device)}


def test_a_probe_without_static_fields_records_every_step(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with dyntrace.Recorder(model, opt, tmp_path / "ns.h5", every=1, probes=[_NoStatics()]) as rec:
        for x, y in _batches(3):
            rec.log(loss=_step(model, opt, x, y))
    with dyntrace.open_run(tmp_path / "ns.h5") as run:
        assert run.steps("no_statics").tolist() == [1, 2, 3]
        assert run.field("no_statics", "x")[1][:, 0].tolist() == [1.0, 2.0, 3.0]
