import subprocess
import sys

import numpy as np
import pytest

from dyntrace.landscape.results import LineResult, PlaneResult


def _plane(**extra):
    x, y = np.linspace(-1, 1, 4), np.linspace(-2, 2, 3)
    return PlaneResult(
        x=x, y=y, loss=np.add.outer(y**2, x), meta={"kind": "random_plane", "seed": 0}, **extra
    )


def test_plane_arrays_use_li_et_al_names_and_round_trip():
    result = _plane()
    arrays = result.to_arrays()
    assert set(arrays) == {"xcoordinates", "ycoordinates", "train_loss", "train_acc"}
    assert arrays["train_loss"].shape == (3, 4)  # [ny, nx]
    assert np.isnan(arrays["train_acc"]).all()  # not computed
    back = PlaneResult.from_arrays(arrays, result.meta)
    np.testing.assert_array_equal(back.loss, result.loss)
    assert back.acc is None and back.path is None and back.meta == result.meta


def test_a_trajectory_plane_round_trips_with_its_path():
    path = np.array([[1.0, 0.5], [0.4, 0.1], [0.0, 0.0]])
    result = _plane(acc=np.full((3, 4), 0.5), path=path, path_steps=[0, 5, 9], explained_variance=[0.9, 0.08])
    arrays = result.to_arrays()
    np.testing.assert_array_equal(arrays["proj_xcoord"], path[:, 0])
    back = PlaneResult.from_arrays(arrays, {})
    np.testing.assert_array_equal(back.path, path)
    np.testing.assert_array_equal(back.path_steps, [0, 5, 9])
    np.testing.assert_array_equal(back.explained_variance, [0.9, 0.08])
    np.testing.assert_array_equal(back.acc, result.acc)


def test_line_round_trips():
    result = LineResult(
        t=np.linspace(0, 1, 5), loss=np.arange(5.0), acc=np.linspace(0.2, 0.9, 5), meta={"kind": "line"}
    )
    back = LineResult.from_arrays(result.to_arrays(), result.meta)
    np.testing.assert_array_equal(back.t, result.t)
    np.testing.assert_array_equal(back.acc, result.acc)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"expected \(ny, nx\) = \(3, 4\)"):
        PlaneResult(x=np.zeros(4), y=np.zeros(3), loss=np.zeros((4, 3)))  # transposed
    with pytest.raises(ValueError, match="one value per t"):
        LineResult(t=np.zeros(3), loss=np.zeros(4))


@pytest.mark.parametrize("module", ["dyntrace.landscape.results", "dyntrace.plots.landscape"])
def test_reading_side_modules_do_not_import_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
