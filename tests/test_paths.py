"""Optimizer paths on the book's bowl reproduce REFERENCES §1."""

import numpy as np
import pytest

import dyntrace
from dyntrace.catalog.functions2d import FUNCTIONS
from dyntrace.paths import optimizer_path


def test_sgd_zigzag_is_exactly_geometric():
    path = optimizer_path("bowl", "sgd", lr=0.95)
    t = np.arange(31)
    assert path.shape == (31, 2)
    np.testing.assert_allclose(path[:, 0], -7 * 0.905**t, rtol=1e-12)
    np.testing.assert_allclose(path[:, 1], 2 * (-0.9) ** t, rtol=1e-12)


@pytest.mark.parametrize(
    "name, lr, expected",
    [
        ("sgd", 0.95, (-0.387, -0.094)),
        ("momentum", 0.1, (0.814, 0.273)),
        ("adagrad", 1.5, (-0.136, 0.000)),
        ("adam", 0.3, (0.020, 0.322)),
    ],
)
def test_book_positions_after_29_updates(name, lr, expected):
    path = optimizer_path(FUNCTIONS["bowl"], name, lr=lr, book=True)
    np.testing.assert_allclose(path[29], expected, atol=5e-4)


def test_book_adam_is_exact_and_torch_adam_differs_in_the_fifth_decimal():
    book = optimizer_path("bowl", "adam", lr=0.3, book=True)[29]
    torch_default = optimizer_path("bowl", "adam", lr=0.3)[29]
    assert book[0] == pytest.approx(0.020149, abs=1e-6)  # Saito's own numpy code gives 0.0201491
    assert torch_default[0] == pytest.approx(0.020157, abs=1e-6)


def test_start_override():
    path = optimizer_path("saddle", "sgd", lr=0.1, steps=3, start=(1.0, 0.0))
    np.testing.assert_allclose(path[:, 1], 0.0)
    np.testing.assert_allclose(path[:, 0], 0.8 ** np.arange(4))


def test_recorded_path(tmp_path):
    file = tmp_path / "momentum.h5"
    path = optimizer_path("bowl", "momentum", lr=0.1, steps=10, path=file, momentum=0.5)
    with dyntrace.open_run(file) as run:
        steps, xs = run.scalar("x")
        _, ys = run.scalar("y")
        _, losses = run.scalar("loss")
        np.testing.assert_array_equal(steps, np.arange(11))
        np.testing.assert_allclose(np.stack([xs, ys], axis=1), path, rtol=1e-12)
        np.testing.assert_allclose(losses, path[:, 0] ** 2 / 20 + path[:, 1] ** 2, rtol=1e-12)
        assert run.config == {
            "function": "bowl",
            "optimizer": "momentum",
            "lr": 0.1,
            "steps": 10,
            "start": [-7.0, 2.0],
            "momentum": 0.5,
        }
