"""``dyntrace.landscape.for_run`` on a run recorded in a plain loop: the slices stored in the file
sit at the weights the file recorded, whatever the model holds when it is called."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.nn import functional as F

import dyntrace
from dyntrace.cli import main
from dyntrace.errors import DyntraceError, MissingDataError


def _model():
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def _loss_at(flat, names, x, y):
    """The loss of a fresh model loaded with one trajectory row, by hand."""
    model = _model()
    state, offset = {}, 0
    for name, p in model.named_parameters():
        assert name == names[len(state)]
        state[name] = torch.from_numpy(flat[offset : offset + p.numel()].copy()).reshape(p.shape)
        offset += p.numel()
    model.load_state_dict(state)
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


@pytest.fixture
def recorded(tmp_path):
    """A run of 30 SGD steps in a plain loop with a trajectory every 5 steps; the model then
    wanders off, so that only the file knows the trained weights."""
    torch.manual_seed(0)
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    x, y = _data()
    path = tmp_path / "own.h5"
    with dyntrace.Recorder(model, optimizer, path, every=10, trajectory=5) as rec:
        for _ in range(30):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            rec.log(loss=loss)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    return path, model, (x, y)


def test_line_ends_are_the_losses_of_the_stored_first_and_last_weights(recorded):
    path, model, (x, y) = recorded
    results = dyntrace.landscape.for_run(
        path, model, F.cross_entropy, (x, y), kinds=("line", "plane", "trajectory"), resolution=5, steps=7
    )
    with dyntrace.open_run(path) as run:
        steps, names, flat = run.trajectory()
        assert steps.tolist() == [0, 5, 10, 15, 20, 25, 30]
        assert run.landscape_names == ["line", "plane", "trajectory"]
        stored_line, stored_plane, stored_path = (
            run.landscape("line"),
            run.landscape("plane"),
            run.landscape("trajectory"),
        )
    first, last = _loss_at(flat[0], names, x, y), _loss_at(flat[-1], names, x, y)
    assert first > last + 0.1  # training lowered the loss: the two ends differ
    np.testing.assert_allclose(stored_line.loss[[0, -1]], [first, last], rtol=1e-6)
    np.testing.assert_allclose(stored_line.loss, results["line"].loss)
    assert stored_line.meta["step"] == 30 and stored_line.meta["start_step"] == 0
    # both planes are centred on the stored final weights, not on the model's current ones
    np.testing.assert_allclose(stored_plane.loss[2, 2], last, rtol=1e-6)
    assert stored_path.path_steps.tolist() == steps.tolist()
    np.testing.assert_allclose(stored_path.path[-1], [0.0, 0.0], atol=1e-6)
    assert stored_path.meta["source"] == "dyntrace.landscape.for_run"


def test_a_run_object_is_reopened_and_sees_the_slices(recorded):
    path, model, batch = recorded
    with dyntrace.open_run(path) as run:
        dyntrace.landscape.for_run(run, model, F.cross_entropy, batch, kinds="line", steps=3)
        assert run.landscape_names == ["line"] and run.landscape("line").loss.shape == (3,)


def test_a_run_without_trajectory_or_with_another_model_is_one_clear_error(recorded, tmp_path):
    path, model, batch = recorded
    bare = tmp_path / "bare.h5"
    with dyntrace.Recorder(model, torch.optim.SGD(model.parameters(), lr=0.1), bare, probes=["scalars"]):
        pass
    with pytest.raises(MissingDataError, match=r"trajectory=N"):
        dyntrace.landscape.for_run(bare, model, F.cross_entropy, batch)
    with pytest.raises(DyntraceError, match="pass the model the run trained"):
        dyntrace.landscape.for_run(path, nn.Sequential(nn.Linear(4, 3)), F.cross_entropy, batch)
    with pytest.raises(ValueError, match="Invalid kinds"):
        dyntrace.landscape.for_run(path, model, F.cross_entropy, batch, kinds=("surface",))


def test_the_landscape_command_names_for_run_for_a_run_of_ones_own_loop(recorded):
    path, _, _ = recorded
    result = CliRunner().invoke(main, ["landscape", str(path)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "dyntrace.landscape.for_run(RUN, model, loss_fn, batch)" in result.output
