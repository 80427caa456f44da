"""Figure tests check the drawn data against the result, not pixels."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from dyntrace.landscape.results import LineResult, PlaneResult
from dyntrace.plots.landscape import plot_landscape_contour, plot_landscape_line, plot_landscape_surface

X, Y = np.linspace(-1, 1, 7), np.linspace(-0.5, 0.5, 4)  # nx ≠ ny
LOSS = 1 + np.add.outer(3 * Y**2, X**2)  # [ny, nx]


@pytest.fixture
def trajectory_plane():
    path = np.array([[0.9, 0.3], [0.5, 0.2], [0.2, -0.1], [0.0, 0.0]])
    return PlaneResult(
        x=X,
        y=Y,
        loss=LOSS.copy(),
        meta={"kind": "trajectory_plane"},
        path=path,
        path_steps=[0, 10, 20, 30],
        explained_variance=[0.931, 0.052],
    )


@pytest.fixture
def random_plane():
    return PlaneResult(x=X, y=Y, loss=LOSS.copy(), meta={"kind": "random_plane", "seed": 3})


@pytest.fixture
def line_result():
    return LineResult(
        t=np.linspace(0, 1, 6),
        loss=np.linspace(2, 0.5, 6),
        acc=np.linspace(0.3, 0.9, 6),
        meta={"kind": "line", "metric": "accuracy"},
    )


CASES = [
    (plot_landscape_line, "line_result", None),
    (plot_landscape_contour, "random_plane", None),
    (plot_landscape_surface, "random_plane", "3d"),
]


@pytest.mark.parametrize(("plot", "fixture", "projection"), CASES)
def test_contract_own_figure_or_given_axes(plot, fixture, projection, request):
    result = request.getfixturevalue(fixture)
    own = plot(result)
    assert isinstance(own, Figure) and own.axes[0].get_title()
    fig = Figure()
    ax = fig.add_subplot(projection=projection)
    assert plot(result, ax=ax) is fig and ax.has_data()


def test_line_draws_the_loss_and_the_metric(line_result):
    fig = plot_landscape_line(line_result)
    loss_ax, metric_ax = fig.axes
    np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), line_result.t)
    np.testing.assert_array_equal(loss_ax.lines[0].get_ydata(), line_result.loss)
    np.testing.assert_array_equal(metric_ax.lines[0].get_ydata(), line_result.acc)
    assert metric_ax.get_ylabel() == "accuracy" and "start to end" in loss_ax.get_title()


def test_contour_levels_span_the_loss_and_the_path_is_drawn(trajectory_plane):
    fig = plot_landscape_contour(trajectory_plane)
    ax = fig.axes[0]
    contours = ax.collections[0]
    assert contours.levels[0] == LOSS.min() and contours.levels[-1] == LOSS.max()
    path = ax.lines[0]
    np.testing.assert_array_equal(path.get_xdata(), trajectory_plane.path[:, 0])
    np.testing.assert_array_equal(path.get_ydata(), trajectory_plane.path[:, 1])
    assert ax.get_xlabel() == "PC1 (93.1 %)" and ax.get_ylabel() == "PC2 (5.2 %)"
    assert "PCA plane" in ax.get_title()
    assert ax.get_xlim() == (X[0], X[-1]) and ax.get_ylim() == (
        Y[0],
        Y[-1],
    )  # x along columns: not transposed


def test_contour_options(random_plane, trajectory_plane):
    ax = plot_landscape_contour(random_plane, filled=False, log_levels=True, levels=5).axes[0]
    np.testing.assert_allclose(ax.collections[0].levels, np.geomspace(LOSS.min(), LOSS.max(), 5))
    assert not ax.collections[0].filled and "seed 3" in ax.get_title()
    assert not plot_landscape_contour(trajectory_plane, show_path=False).axes[0].lines
    with pytest.raises(ValueError, match="log_levels=True needs a positive loss"):
        plot_landscape_contour(PlaneResult(x=X, y=Y, loss=LOSS - 2), log_levels=True)


def test_contour_leaves_uncomputed_cells_blank(random_plane):
    random_plane.loss[0, 0] = np.nan
    contours = plot_landscape_contour(random_plane).axes[0].collections[0]
    assert contours.levels[0] == np.nanmin(random_plane.loss)


def test_surface_faces_are_the_loss(random_plane):
    ax = plot_landscape_surface(random_plane).axes[0]
    surface = ax.collections[0]
    corners = (LOSS[:-1, :-1] + LOSS[1:, :-1] + LOSS[:-1, 1:] + LOSS[1:, 1:]) / 4  # colour of each face
    np.testing.assert_allclose(np.sort(surface.get_array()), np.sort(corners.ravel()))
    assert ax.get_zlabel() == "loss"
    with pytest.raises(ValueError, match="ax must be a 3-D axes"):
        plot_landscape_surface(random_plane, ax=Figure().add_subplot())


def test_plots_refuse_the_wrong_result(line_result, random_plane):
    with pytest.raises(TypeError, match="draws a PlaneResult, got LineResult"):
        plot_landscape_contour(line_result)
    with pytest.raises(TypeError, match="draws a LineResult"):
        plot_landscape_line(random_plane)
