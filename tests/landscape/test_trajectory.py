import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dyntrace.landscape import flatten_params, parameter_names, trajectory_plane, unflatten
from tests.landscape.conftest import assert_same, loss_at, snapshot


def _trajectory(model, offsets):
    """Records θ_final + offset for each offset row: (steps, names, flat [T, D])."""
    names = parameter_names(model)
    final = flatten_params(model, names).numpy().astype(np.float64)
    return np.arange(len(offsets)) * 10, names, final + offsets


def test_flatten_follows_named_parameters_and_unflatten_inverts_it(mlp):
    flat = flatten_params(mlp)
    expected = torch.cat([p.detach().reshape(-1) for p in mlp.parameters()])
    assert torch.equal(flat, expected)
    back = unflatten(mlp, flat.numpy())
    assert list(back) == parameter_names(mlp)
    for name, p in mlp.named_parameters():
        assert torch.equal(back[name], p.detach())
    names = ["4.weight", "0.bias"]  # a subset, in the caller's order
    subset = flatten_params(mlp, names)
    assert torch.equal(subset[:36], mlp[4].weight.detach().reshape(-1))
    with pytest.raises(ValueError, match="expected"):
        unflatten(mlp, subset[:-1], names)
    with pytest.raises(KeyError, match="nope"):
        flatten_params(mlp, ["nope"])


def test_a_straight_trajectory_is_all_first_component(mlp, batch):
    direction = np.random.default_rng(0).standard_normal(flatten_params(mlp).numel())
    offsets = np.linspace(1.0, 0.0, 8)[:, None] * direction  # θ_i on a line ending at θ_final
    result = trajectory_plane(_trajectory(mlp, offsets), mlp, F.cross_entropy, batch, resolution=(5, 4))
    assert result.explained_variance[0] == pytest.approx(1.0, abs=1e-9)
    assert result.explained_variance[1] == pytest.approx(0.0, abs=1e-9)
    distances = np.linspace(1.0, 0.0, 8) * np.linalg.norm(direction)
    np.testing.assert_allclose(
        result.path[:, 0], distances, rtol=1e-9, atol=1e-9
    )  # start on the positive side
    np.testing.assert_allclose(result.path[:, 1], 0, atol=1e-9)
    np.testing.assert_array_equal(result.path_steps, np.arange(8) * 10)


def test_plane_spans_the_path_and_grid_points_match_a_hand_computation(mlp, batch):
    rng = np.random.default_rng(1)
    d = flatten_params(mlp).numel()
    u, w = np.linalg.qr(rng.standard_normal((d, 2)))[0].T  # orthonormal
    a, b = np.linspace(2.0, 0.0, 6), np.sin(np.linspace(0, np.pi, 6)) * 0.3  # ends at θ_final
    before = snapshot(mlp)
    result = trajectory_plane(
        _trajectory(mlp, np.outer(a, u) + np.outer(b, w)),
        mlp,
        F.cross_entropy,
        batch,
        resolution=(6, 5),
        margin=0.1,
    )
    assert_same(before, snapshot(mlp))
    assert result.explained_variance.sum() == pytest.approx(1.0)
    assert result.explained_variance[0] > result.explained_variance[1]
    # the path keeps its distances from θ_final and its shape (up to a rotation of the plane)
    np.testing.assert_allclose(np.linalg.norm(result.path, axis=1), np.hypot(a, b), rtol=1e-6, atol=1e-12)
    assert result.x[0] < result.path[:, 0].min() and result.x[-1] > result.path[:, 0].max()
    assert result.y[0] < result.path[:, 1].min() and result.y[-1] > result.path[:, 1].max()
    assert result.loss.shape == (5, 6)
    pc1, pc2 = result.directions
    theta = [p.detach() for p in mlp.parameters()]
    for i, j in [(0, 5), (4, 1), (2, 2)]:
        by_hand = [t + result.x[j] * e + result.y[i] * f for t, e, f in zip(theta, pc1, pc2)]
        assert result.loss[i, j] == pytest.approx(loss_at(mlp, by_hand, batch), rel=1e-5)
    assert result.meta["kind"] == "trajectory_plane" and result.meta["records"] == 6


def test_a_run_object_and_a_subset_of_parameters(mlp, batch):
    names = ["4.weight", "4.bias"]
    final = flatten_params(mlp, names).numpy()
    flat = final + np.random.default_rng(2).standard_normal((5, final.size)) * np.linspace(1, 0, 5)[:, None]

    class Run:
        def trajectory(self):
            return np.arange(5), names, flat

    from_run = trajectory_plane(Run(), mlp, F.cross_entropy, batch, resolution=(3, 3), method="sequential")
    from_tuple = trajectory_plane(
        (np.arange(5), names, flat), mlp, F.cross_entropy, batch, resolution=(3, 3), method="sequential"
    )
    np.testing.assert_array_equal(from_run.loss, from_tuple.loss)
    for (name, _), d in zip(mlp.named_parameters(), from_run.directions[0]):
        assert (torch.count_nonzero(d) > 0) == (name in names), name  # unrecorded parameters stay put


def test_bad_trajectories_are_refused(mlp, batch):
    names = parameter_names(mlp)
    flat = flatten_params(mlp).numpy()[None]
    with pytest.raises(ValueError, match="T ≥ 2 records"):
        trajectory_plane((np.arange(1), names, flat), mlp, F.cross_entropy, batch)
    with pytest.raises(ValueError, match="never moves"):
        trajectory_plane((np.arange(2), names, np.repeat(flat, 2, axis=0)), mlp, F.cross_entropy, batch)
    with pytest.raises(TypeError, match="run with .trajectory"):
        trajectory_plane(42, mlp, F.cross_entropy, batch)
