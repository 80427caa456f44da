"""Faults on the writing side: a full disk, two writers on one path, a kill at any moment, a
Recorder used after it closed."""

import os
import random
import shutil
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
from dyntrace.errors import DyntraceError, RunFileBusyError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {
    **os.environ,
    "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    "OMP_NUM_THREADS": "1",
}

# The disk-full run: a 50k-parameter MLP recorded every step with its trajectory.
FILL = textwrap.dedent(
    """
    import resource, signal, sys, time
    import torch, dyntrace
    from torch import nn
    path, limit = sys.argv[1], int(sys.argv[2])
    if limit:  # a file-size limit: the writes past it fail as on a full disk (EFBIG for ENOSPC)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with dyntrace.Recorder(model, opt, path, every=1, trajectory=1, flush_every=0.05) as rec:
        for step in range(120):
            opt.zero_grad()
            loss = model(torch.randn(32, 64)).pow(2).mean()
            loss.backward()
            opt.step()
            rec.log(loss=loss)
            time.sleep(0.005)  # a step's worth of time, so that batches stay small on a loaded machine
    print("trained", rec.step)
    """
)


def _check_stopped_early(path, proc):
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "trained 120"  # training finished
    # nothing on stderr but the one warning (and the source line Python prints with it)
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 2 and "UserWarning: dyntrace: writing" in lines[0] and "recording stops" in lines[0]
    ), proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    with dyntrace.open_run(path) as run:
        run.verify()
        assert run.status == "stopped early" and not run.closed_cleanly
        assert any("stopped early" in note for note in run.notes)
        records = run.steps("gradients")
        assert len(records) >= 1 and records.tolist() == list(
            range(1, len(records) + 1)
        )  # real steps, no phantom 0s
        for probe in ("activations", "weights"):
            assert run.steps(probe).tolist() == records.tolist()
        _, norms = run.stat("gradients", None, "norm")
        assert norms.shape == (len(records), 6) and np.all(norms > 0)  # no rows of zeros
        steps, names, flat = run.trajectory()
        assert steps.tolist() == list(range(len(steps))) and len(names) == 6
        assert np.all(np.abs(flat).sum(axis=1) > 0)  # no snapshot of zeros
        loss_steps, loss = run.scalar("loss")
        assert loss_steps.tolist() == list(range(1, len(loss_steps) + 1)) and np.all(
            np.isfinite(loss) & (loss > 0)
        )
        return len(records)


@pytest.mark.skipif(
    not hasattr(os, "posix_fallocate") or sys.platform != "linux", reason="RLIMIT_FSIZE fill on Linux"
)
def test_a_full_disk_stops_recording_with_one_warning_and_keeps_a_valid_prefix(tmp_path):
    path = tmp_path / "full.h5"
    limit = 3_000_000  # room for a few records with their 200 kB snapshots
    proc = subprocess.run(
        [sys.executable, "-c", FILL, str(path), str(limit)],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    records = _check_stopped_early(path, proc)
    assert records < 120 and os.path.getsize(path) <= limit


def _mount_tmpfs(folder, size):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir()
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
    )


def test_a_full_tmpfs_stops_recording_with_one_warning_and_keeps_a_valid_prefix(tmp_path):
    """The same on a real 2 MB tmpfs, where mounting one is allowed (root, a privileged container)."""
    folder = tmp_path / "tmpfs"
    if not _mount_tmpfs(folder, "2m"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", FILL, str(folder / "full.h5"), "0"],
            capture_output=True,
            text=True,
            timeout=300,
            env=ENV,
        )
        assert _check_stopped_early(folder / "full.h5", proc) < 120
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


WRITER = textwrap.dedent(
    """
    import sys, time, torch, dyntrace
    from torch import nn
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with dyntrace.Recorder(model, opt, sys.argv[1], every=2, flush_every=0.1) as rec:
        for step in range(1, 151):
            opt.zero_grad()
            loss = model(torch.randn(16, 4)).pow(2).mean()
            loss.backward()
            opt.step()
            rec.log(loss=loss)
            if step == 20:  # holds the file until the test has tried to write it too
                print("ready", flush=True)
                sys.stdin.readline()
            time.sleep(0.01)
    print("closed", flush=True)
    """
)


def test_a_second_writer_is_refused_and_the_first_run_stays_whole(tmp_path):
    path = tmp_path / "shared.h5"
    first = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert first.stdout.readline().strip() == "ready"
        model = nn.Linear(2, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with pytest.raises(RunFileBusyError, match=rf"another process is writing it \(pid {first.pid} on "):
            dyntrace.Recorder(model, opt, path)
        # a second process too (the command line): one line naming the first
        second = subprocess.run(
            [sys.executable, "-m", "dyntrace.cli", "train", "--steps", "2", "--no-progress", "-o", str(path)],
            capture_output=True,
            text=True,
            timeout=300,
            env=ENV,
        )
        assert second.returncode == 1 and f"pid {first.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1 and "Traceback" not in second.stderr
        out, err = first.communicate("go\n", timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0 and "closed" in out and "Traceback" not in err, err
    with dyntrace.open_run(path) as run:  # the first run, whole
        run.verify()
        assert run.closed_cleanly and run.notes == []
        assert run.scalar("loss")[0].tolist() == list(range(1, 151))
        assert run.steps("gradients").tolist() == list(range(1, 151, 2))
    assert not os.path.exists(f"{path}.lock")  # released at close


def test_one_process_cannot_open_two_writers_on_one_path(tmp_path):
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with dyntrace.Recorder(model, opt, tmp_path / "a.h5"):
        with pytest.raises(RunFileBusyError, match="already writing it"):
            dyntrace.Recorder(model, opt, tmp_path / "a.h5")
    with dyntrace.Recorder(model, opt, tmp_path / "a.h5"):  # free again after close
        pass


# SIGKILL at a random moment of a run of a 10M-parameter model: everything logged more than
# flush_every plus the time of one write before the kill must be in the file.
KILLED = textwrap.dedent(
    """
    import sys, time, torch, dyntrace
    from torch import nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3136, 3136), nn.ReLU(), nn.Linear(3136, 64))  # 10.04M parameters
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(16, 3136)
    rec = dyntrace.Recorder(model, opt, sys.argv[1], every=5, flush_every=float(sys.argv[2]))
    for step in range(1, 100000):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        rec.log(loss=loss)
        # when this step was logged, and the longest write so far
        print(step, time.time(), getattr(getattr(rec, "_writer", None), "max_write_seconds", 0.0), flush=True)
    """
)


def kill_at_random(path, *, flush_every: float, after: float, env=ENV):
    """Run KILLED, SIGKILL it ``after`` seconds after its first step; returns (kill time, the
    child's (step, logged at, longest write) lines, the steps in the file, the run's notes)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(path), str(flush_every)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = [proc.stdout.readline()]
    deadline = time.time() + after
    while time.time() < deadline:
        time.sleep(min(0.01, max(0.0, deadline - time.time())))
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    rest, err = proc.communicate()
    lines += rest.splitlines()
    log = []
    for line in lines:  # the last line may have been cut by the kill
        try:
            step, logged_at, longest = line.split()
            log.append((int(step), float(logged_at), float(longest)))
        except ValueError:
            pass
    log = [entry for entry in log if entry[1] <= killed_at]  # printed before the kill
    with dyntrace.open_run(path) as run:
        run.verify()
        steps = set(run.scalar("loss")[0].tolist())
        assert run.steps("gradients").tolist() == list(range(1, 5 * len(run.steps("gradients")), 5))
    return killed_at, log, steps, err


def test_sigkill_of_a_10m_parameter_run_keeps_everything_logged_before_the_bound(tmp_path):
    flush_every = 0.5
    after = random.Random(14).uniform(1.0, 3.0)
    killed_at, log, kept, err = kill_at_random(tmp_path / "big.h5", flush_every=flush_every, after=after)
    assert log, err
    longest_write = max(w for _, _, w in log)
    bound = flush_every + longest_write
    due = [step for step, logged_at, _ in log if logged_at <= killed_at - bound]
    assert due, "the kill came before anything was due"
    missing = [step for step in due if step not in kept]
    assert not missing, f"logged more than {bound:.2f} s before the kill but lost: {missing[:5]}"


def test_log_after_close_warns_and_a_closed_recorder_cannot_be_entered(tmp_path):
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = dyntrace.Recorder(model, opt, tmp_path / "c.h5", every=1)
    with rec:
        opt.zero_grad()
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
        rec.log(loss=1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec.log(loss=2.0)
        rec.log(loss=3.0)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "log() after the Recorder" in messages[0] and "not recorded" in messages[0]
    with pytest.raises(DyntraceError, match="is closed; make a new one"):
        with rec:
            pass
    with dyntrace.open_run(tmp_path / "c.h5") as run:
        assert run.scalar("loss")[1].tolist() == [1.0] and run.closed_cleanly


def test_a_model_without_parameters_records_scalars_and_activations(tmp_path):
    model = nn.Sequential(nn.Tanh(), nn.ReLU())
    w = nn.Parameter(torch.ones(3))  # stepped by the optimizer, not part of the model
    opt = torch.optim.SGD([w], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no trajectory is kept"
        with dyntrace.Recorder(model, opt, tmp_path / "p.h5", every=1, trajectory=1) as rec:
            for _ in range(3):
                opt.zero_grad()
                loss = model(w * torch.arange(3.0)).sum()
                loss.backward()
                opt.step()
                rec.log(loss=loss)
    with dyntrace.open_run(tmp_path / "p.h5") as run:
        assert run.probes == ["activations"] and run.params == [] and run.closed_cleanly
        assert run.scalar("loss")[0].tolist() == [1, 2, 3]
        np.testing.assert_allclose(
            run.scalar("loss")[1][0], np.tanh([0.0, 1.0, 2.0]).clip(0).sum(), rtol=1e-6
        )
        assert run.steps("activations").tolist() == [1, 2, 3]
