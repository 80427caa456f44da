import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dyntrace.landscape import line, random_directions, slice_1d
from tests.landscape.conftest import accuracy, assert_same, loss_at, make_mlp, snapshot


@pytest.mark.parametrize("method", ["sequential", "vmap"])
def test_line_includes_both_ends_exactly(mlp, batch, method):
    start = make_mlp(seed=7).state_dict()  # another initialisation
    before = snapshot(mlp)
    result = line(
        mlp, F.cross_entropy, batch, start, mlp.state_dict(), steps=5, method=method, metric=accuracy
    )
    assert_same(before, snapshot(mlp))
    np.testing.assert_array_equal(result.t, [0, 0.25, 0.5, 0.75, 1])
    s = [start[name] for name, _ in mlp.named_parameters()]
    e = [p.detach() for p in mlp.parameters()]
    assert result.loss[0] == loss_at(mlp, s, batch)
    assert result.loss[-1] == loss_at(mlp, e, batch)
    middle = [0.25 * a + 0.75 * b for a, b in zip(s, e)]
    assert result.loss[3] == pytest.approx(loss_at(mlp, middle, batch), rel=1e-5)
    assert result.acc[-1] == pytest.approx(loss_at(mlp, e, batch, fn=accuracy))
    assert result.meta["kind"] == "line" and result.meta["method"] == method


def test_line_accepts_parameter_lists_and_checks_them(mlp, batch):
    params = [p.detach() for p in mlp.parameters()]
    result = line(mlp, F.cross_entropy, batch, [torch.zeros_like(p) for p in params], params, steps=2)
    assert result.loss[0] == pytest.approx(np.log(3))  # all-zero weights: uniform over 3 classes
    with pytest.raises(ValueError, match="start has 1 tensors, the model has"):
        line(mlp, F.cross_entropy, batch, params[:1], params)
    with pytest.raises(ValueError, match="steps must be an int ≥ 2"):
        line(mlp, F.cross_entropy, batch, params, params, steps=1)


def test_slice_1d_walks_along_the_first_random_direction(mlp, batch):
    result = slice_1d(mlp, F.cross_entropy, batch, span=2.0, steps=5, seed=4)
    np.testing.assert_array_equal(result.t, [-2, -1, 0, 1, 2])
    params = [p.detach() for p in mlp.parameters()]
    assert result.loss[2] == pytest.approx(loss_at(mlp, params, batch), rel=1e-6)
    (d,) = random_directions(mlp, seed=4, count=1)
    assert result.loss[0] == pytest.approx(
        loss_at(mlp, [p - 2 * u for p, u in zip(params, d)], batch), rel=1e-5
    )
    assert result.meta["kind"] == "slice_1d" and result.meta["seed"] == 4
