"""The recorder never kills training; killed runs and live files stay readable."""

import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import dyntrace


class TupleOut(nn.Module):
    def forward(self, x):
        return x, x.sum()


class Awkward(nn.Module):
    """Tuple-output activation module, a frozen layer, an unused layer, a sparse embedding."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4, sparse=True)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.unused = nn.Linear(4, 4)
        self.act = nn.ReLU()
        self.pair = TupleOut()
        self.head = nn.Linear(4, 1)

    def forward(self, idx):
        h = self.act(self.frozen(self.emb(idx)))
        h, _ = self.pair(h)
        return self.head(h)


def test_awkward_modules_are_recorded_where_possible(tmp_path):
    model = Awkward()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with dyntrace.Recorder(
            model,
            opt,
            tmp_path / "a.h5",
            every=1,
            probes=["scalars", "activations", "gradients", "weights"],
            config={"note": "awkward"},
        ) as rec:
            for _ in range(3):
                opt.zero_grad()
                loss = model(torch.randint(0, 10, (8,))).pow(2).mean()
                loss.backward()
                opt.step()
                rec.log(loss=loss)
    messages = [str(w.message) for w in caught if "dyntrace" in str(w.message)]
    assert len([m for m in messages if "emb.weight is sparse" in m]) == 1  # warned once, not per step
    with dyntrace.open_run(tmp_path / "a.h5") as run:
        assert run.scalar("loss")[0].tolist() == [1, 2, 3]
        assert run.stat("gradients", "frozen.weight", "count")[1].tolist() == [0, 0, 0]
        assert run.stat("gradients", "unused.weight", "count")[1].tolist() == [0, 0, 0]
        assert run.stat("gradients", "head.weight", "count")[1].tolist() == [4, 4, 4]
        assert run.stat("weights", "frozen.weight", "count")[1].tolist() == [16, 16, 16]
        assert run.stat("activations", "act", "count")[1].tolist() == [32, 32, 32]
        assert run.config == {"note": "awkward"}


def test_a_failing_probe_is_switched_off_and_training_goes_on(tmp_path):
    class Broken(dyntrace.probes.Probe):
        name = "broken"

        def before_step(self, ctx):
            raise RuntimeError("boom")

    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match="probe 'broken' failed"):
        with dyntrace.Recorder(model, opt, tmp_path / "b.h5", every=1, probes=["gradients", Broken()]) as rec:
            for _ in range(3):
                opt.zero_grad()
                model(torch.randn(3, 2)).sum().backward()
                opt.step()
            assert rec.probes == ["gradients"]
    with dyntrace.open_run(tmp_path / "b.h5") as run:
        assert run.record_steps.tolist() == [1, 2, 3]


WRITER = textwrap.dedent(
    """
    import sys, time, torch, dyntrace
    from torch import nn
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rec = dyntrace.Recorder(model, opt, sys.argv[1], every=2, flush_every=0.2)
    for step in range(1, 100000):
        opt.zero_grad()
        loss = model(torch.randn(16, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        rec.log(loss=loss)
        if step == 50:
            print("ready", flush=True)
        time.sleep(0.002)
    """
)


def _start_writer(path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_sigkill_leaves_a_readable_file_with_every_flushed_record(tmp_path):
    path = tmp_path / "killed.h5"
    proc = _start_writer(path)
    time.sleep(1.0)  # several flush periods
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with dyntrace.open_run(path) as run:
        assert not run.closed_cleanly
        steps, loss = run.scalar("loss")
        assert len(steps) >= 50 and np.all(np.diff(steps) == 1) and np.all(np.isfinite(loss))
        records = run.steps("gradients")
        assert len(records) >= 25
        assert records.tolist() == list(range(1, 2 * len(records), 2))
        _, norms = run.stat("gradients", "0.weight", "norm")
        assert len(norms) == len(records) and np.all(norms > 0)


def test_reader_sees_a_consistent_growing_prefix_while_training_writes(tmp_path):
    path = tmp_path / "live.h5"
    proc = _start_writer(path)
    try:
        seen = []
        with dyntrace.open_run(path) as run:
            for _ in range(4):
                time.sleep(0.4)
                before = len(run.steps("activations"))
                time.sleep(0.3)
                assert len(run.steps("activations")) == before  # a snapshot until refresh()
                run.refresh()
                steps = run.steps("activations")
                _, mean = run.stat("activations", "1", "mean")
                hist = run.hist("activations", "1")
                assert len(mean) == len(steps) == len(hist.counts)  # complete records only
                assert np.all(np.isfinite(mean))
                seen.append(len(steps))
        assert seen == sorted(seen) and seen[-1] > seen[0]
    finally:
        proc.kill()
        proc.wait()


def test_a_model_without_activation_modules_records_its_parameters(tmp_path):
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match="no module matched"):
        with dyntrace.Recorder(model, opt, tmp_path / "p.h5", every=1):
            opt.zero_grad()
            model(torch.randn(4, 3)).sum().backward()
            opt.step()
    with dyntrace.open_run(tmp_path / "p.h5") as run:
        assert run.probes == ["gradients", "weights"] and run.layers == []
        assert run.steps("gradients").tolist() == [1] and run.closed_cleanly


def test_failures_around_the_step_and_in_log_never_stop_training(tmp_path, monkeypatch):
    """No memory for the snapshot, a failing host transfer: warnings, and training goes on."""
    from dyntrace import record_step as recorder_module  # where the record step calls to_host
    from dyntrace.probes.base import RecordContext

    def no_memory(self):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(RecordContext, "take_snapshot", no_memory)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with dyntrace.Recorder(model, opt, tmp_path / "f.h5", every=1, flush_every=0.0) as rec:
            monkeypatch.setattr(
                recorder_module, "to_host", lambda tensors: (_ for _ in ()).throw(RuntimeError("device lost"))
            )
            for _ in range(3):
                opt.zero_grad()
                loss = model(torch.randn(5, 3)).pow(2).mean()
                loss.backward()
                opt.step()
                rec.log(loss=loss)
            monkeypatch.undo()
    messages = " ".join(str(w.message) for w in caught)
    assert "out of memory" in messages and "device lost" in messages
    assert rec.step == 3
