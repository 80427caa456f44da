"""Data sets (offline, seeded, split) and 2-D test functions (numpy and torch alike)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from dyntrace.catalog.datasets import DATASETS, make_dataset
from dyntrace.catalog.functions2d import FUNCTIONS


def test_digits_split_is_stratified_scaled_and_seeded():
    data = make_dataset("digits", seed=1)
    assert (len(data.X_train), len(data.X_val), len(data.X_test)) == (1257, 270, 270)
    assert data.X_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.X_train.shape[1] == data.n_features == 64 and data.n_outputs == 10
    assert data.image_shape == (1, 8, 8) and data.task == "classification"
    assert 0.0 <= data.X_train.min() and data.X_train.max() <= 1.0
    counts = torch.bincount(data.y_test, minlength=10)
    assert counts.min() >= 26 and counts.max() <= 28  # ≈ 27 per class
    again = make_dataset("digits", seed=1)
    assert torch.equal(data.X_train, again.X_train) and torch.equal(data.y_val, again.y_val)
    assert not torch.equal(data.X_train, make_dataset("digits", seed=2).X_train)


def test_digits_limit_keeps_a_stratified_subset_of_train():
    data = make_dataset("digits", limit=300)
    assert len(data.X_train) == 300 and len(data.X_test) == 270
    assert torch.bincount(data.y_train).min() >= 29


@pytest.mark.parametrize("name", sorted(set(DATASETS) - {"digits"}))
def test_generated_datasets(name):
    data = make_dataset(name, seed=0, n=200)
    assert len(data.X_train) + len(data.X_val) + len(data.X_test) == 200
    assert data.X_train.shape[1] == data.n_features and data.X_train.dtype == torch.float32
    if data.task == "classification":
        assert data.y_train.dtype == torch.int64 and int(data.y_train.max()) < data.n_outputs
    else:
        assert data.y_train.shape == (len(data.X_train), data.n_outputs)
    assert torch.equal(data.X_test, make_dataset(name, seed=0, n=200).X_test)


def test_deep_linear_targets_come_from_the_low_rank_teacher():
    data = make_dataset("deep_linear", n_features=6, n_outputs=5, singular_values=(3.0, 1.0, 0.2))
    X = torch.cat([data.X_train, data.X_val]).double()
    Y = torch.cat([data.y_train, data.y_val]).double()
    W = torch.linalg.lstsq(X, Y).solution.T  # exact: y = W x without noise
    torch.testing.assert_close(X @ W.T, Y, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        torch.linalg.svdvals(W)[:4],
        torch.tensor([3.0, 1.0, 0.2, 0.0], dtype=torch.float64),
        atol=1e-5,
        rtol=0,
    )


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_agree_on_numpy_and_torch(name):
    function = FUNCTIONS[name]
    xs, ys = np.meshgrid(np.linspace(*function.xlim, 7), np.linspace(*function.ylim, 5))
    on_numpy = function(xs, ys)
    on_torch = function(torch.from_numpy(xs), torch.from_numpy(ys))
    assert isinstance(on_numpy, np.ndarray) and on_numpy.shape == (5, 7)
    np.testing.assert_allclose(on_torch.numpy(), on_numpy, rtol=1e-12)
    if function.minimum is not None:
        assert function(*function.minimum) == pytest.approx(0.0) and function(*function.start) > 0
    point = torch.tensor(function.start, dtype=torch.float64, requires_grad=True)
    function(point[0], point[1]).backward()
    assert torch.isfinite(point.grad).all()


def test_bowl_gradient():
    point = torch.tensor([-7.0, 2.0], requires_grad=True)
    FUNCTIONS["bowl"](point[0], point[1]).backward()
    torch.testing.assert_close(point.grad, torch.tensor([-0.7, 4.0]))


def test_functions_and_schedules_import_without_torch():
    code = (
        "import sys; import dyntrace.catalog.functions2d as f, dyntrace.catalog.lr_schedules as s; "
        "f.FUNCTIONS['plateau'](1.0, 2.0); s.make_schedule('cosine', total_steps=10)(3); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
