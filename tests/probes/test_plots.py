"""Figures of the 'steps' and 'adaptive' probes draw what the reader returns."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import dyntrace  # noqa: E402
from dyntrace.analysis import hist_quantiles, psi_variance_approx, psi_variance_exact, rectification, rho_t  # noqa: E402
from dyntrace.errors import MissingDataError  # noqa: E402
from dyntrace.plots.adaptive import plot_adaptive_lr, plot_psi_variance, plot_rectification  # noqa: E402
from dyntrace.plots.steps import plot_step_sizes, plot_step_sizes_compare, plot_update_ratios  # noqa: E402

from ._recording import mlp, train  # noqa: E402

STEPS = 12
OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.01),
    "radam": lambda ps: torch.optim.RAdam(ps, lr=0.01),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plots")
    opened = {}
    for name, make in OPTIMIZERS.items():
        torch.manual_seed(0)
        model = mlp(torch.float64)
        train(
            model,
            make(model.parameters()),
            folder / f"{name}.h5",
            steps=STEPS,
            every=1,
            probes=("steps", "adaptive"),
        )
        opened[name] = dyntrace.open_run(folder / f"{name}.h5")
    yield opened
    for run in opened.values():
        run.close()


@pytest.fixture(autouse=True)
def _no_pyplot_figures():
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before, "a plot function registered a figure with pyplot"
    plt.close("all")


def _by_gid(ax, gid, kind="lines"):
    found = [a for a in getattr(ax, kind) if a.get_gid() == gid]
    assert found, f"nothing drawn with gid {gid!r}"
    return found[0]


def test_step_size_heatmap_draws_the_histogram_density(runs):
    run = runs["adam"]
    fig = plot_step_sizes(run, params=["0.weight"])
    assert isinstance(fig, Figure)
    mesh = next(c for ax in fig.axes for c in ax.collections if c.get_gid() == "0.weight")
    hist = run.hist("steps", "0.weight")
    density = hist.counts / hist.sampled[:, None]
    used = np.flatnonzero(hist.counts.sum(axis=0) > 0)
    keep = slice(max(0, used[0] - 1), min(density.shape[1], used[-1] + 2))
    drawn = np.ma.filled(mesh.get_array(), np.nan).reshape(keep.stop - keep.start, len(hist.steps))
    expected = np.where(density[:, keep] > 0, density[:, keep], np.nan).T
    np.testing.assert_allclose(drawn, expected, rtol=1e-12)
    assert fig.get_suptitle().startswith("Effective step size η_eff")


def _pooled_quantiles(run, q):
    names = run.names("steps")
    hists = [run.hist("steps", n) for n in names]
    counts = sum(h.counts for h in hists)
    return hists[0].steps, 10.0 ** hist_quantiles(hists[0].edges, counts, q)


def test_compare_draws_median_and_iqr_of_each_run(runs):
    fig = plot_step_sizes_compare([runs["sgd"], runs["adam"]], labels=["SGD", "Adam"])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    for label, run in (("SGD", runs["sgd"]), ("Adam", runs["adam"])):
        steps, q = _pooled_quantiles(run, [0.25, 0.5, 0.75])
        line = _by_gid(ax, f"{label}:median")
        np.testing.assert_array_equal(line.get_xdata(), steps)
        np.testing.assert_allclose(line.get_ydata(), q[:, 1], rtol=1e-12)
        band = _by_gid(ax, f"{label}:iqr", "collections")
        vertices = band.get_paths()[0].vertices
        assert np.isclose(vertices[:, 1].min(), np.nanmin(q[:, 0])) and np.isclose(
            vertices[:, 1].max(), np.nanmax(q[:, 2])
        )
    # SGD: every coordinate at lr, so the median lies in lr's histogram bin (5 bins a decade)
    sgd = _by_gid(ax, "SGD:median").get_ydata()
    assert np.all(np.abs(np.log10(sgd) + 1.0) <= 0.2)


def test_compare_default_labels_and_missing_runs(runs, tmp_path):
    torch.manual_seed(0)
    model = mlp(torch.float32)
    train(
        model,
        torch.optim.SGD(model.parameters(), lr=0.5),
        tmp_path / "nosteps.h5",
        steps=2,
        probes=("gradients",),
    )
    with dyntrace.open_run(tmp_path / "nosteps.h5") as bare:
        fig = plot_step_sizes_compare([runs["sgd"], bare])
        ax = fig.axes[0]
        assert _by_gid(ax, "SGD (lr 0.1):median")
        assert (
            "no 'steps' data in: SGD (lr 0.5)" in ax.get_title()
        )  # the second run, labelled by its optimizer too
        with pytest.raises(MissingDataError, match="steps"):
            plot_step_sizes_compare([bare])
        with pytest.raises(MissingDataError, match="steps"):
            plot_step_sizes(bare)


def test_update_ratios_draw_the_recorded_field(runs):
    run = runs["adam"]
    fig, ax = plt.subplots()
    try:
        out = plot_update_ratios(run, ax=ax)
        assert out is fig
        steps, ratio = run.field("steps", "update_ratio")
        for j, name in enumerate(run.names("steps")):
            line = _by_gid(ax, name)
            np.testing.assert_array_equal(line.get_xdata(), steps)
            np.testing.assert_allclose(line.get_ydata(), ratio[:, j])
        assert ax.get_yscale() == "log"
    finally:
        plt.close(fig)


def test_rectification_draws_recorded_rho_and_r_over_the_formulas(runs):
    run = runs["radam"]
    fig = plot_rectification(run)
    ax = fig.axes[0]
    twin = fig.axes[1]
    steps, rho = run.field("adaptive", "rho", "0.weight")
    _, r = run.field("adaptive", "r", "0.weight")
    np.testing.assert_array_equal(_by_gid(ax, "rho").get_xdata(), steps)
    np.testing.assert_allclose(_by_gid(ax, "rho").get_ydata(), rho)
    np.testing.assert_allclose(_by_gid(twin, "r").get_ydata(), r)
    formula = _by_gid(ax, "rho:formula")
    np.testing.assert_allclose(formula.get_ydata(), rho_t(formula.get_xdata(), 0.999))
    formula = _by_gid(twin, "r:formula")
    np.testing.assert_allclose(formula.get_ydata(), rectification(formula.get_xdata(), 0.999))
    assert _by_gid(ax, "threshold:paper").get_ydata()[0] == 4.0
    assert _by_gid(ax, "threshold:torch").get_ydata()[0] == 5.0
    assert _by_gid(ax, "first_rectified").get_xdata()[0] == 6
    assert "ρ_t" in ax.get_title() and "r_t" in ax.get_title()


def test_psi_variance_draws_measured_against_analytic(runs):
    run = runs["adam"]
    fig = plot_psi_variance(run, param="0.weight", sigma=1.0)
    ax = fig.axes[0]
    steps, std = run.stat("adaptive", "0.weight", "std")
    measured = _by_gid(ax, "measured")
    np.testing.assert_array_equal(measured.get_xdata(), run.field("adaptive", "state_step", "0.weight")[1])
    np.testing.assert_allclose(measured.get_ydata(), std**2, rtol=1e-9)
    exact = _by_gid(ax, "exact")
    t = exact.get_xdata()
    expected = psi_variance_exact(rho_t(t, 0.999), 1.0)
    np.testing.assert_allclose(exact.get_ydata(), np.where(np.isfinite(expected), expected, np.nan))
    np.testing.assert_allclose(_by_gid(ax, "approx").get_ydata(), psi_variance_approx(rho_t(t, 0.999), 1.0))
    assert ax.get_yscale() == "log"


def test_psi_variance_estimates_sigma_from_the_accumulator(runs):
    run = runs["adam"]
    fig = plot_psi_variance(run)
    _, acc = run.field("adaptive", "acc_sum", "0.weight")
    _, count = run.field("adaptive", "count", "0.weight")
    sigma = np.sqrt(acc[-1] / count[-1] / (1 - 0.999**STEPS))
    assert f"{sigma:.3g}" in fig.axes[0].get_title()


def test_adaptive_lr_heatmap_and_missing_adaptive_state(runs):
    fig = plot_adaptive_lr(runs["adam"], params=["2.weight"])
    mesh = next(c for ax in fig.axes for c in ax.collections if c.get_gid() == "2.weight")
    hist = runs["adam"].hist("adaptive", "2.weight")
    drawn = np.ma.filled(mesh.get_array(), np.nan)
    density = hist.counts / hist.sampled[:, None]
    assert np.nansum(drawn) == pytest.approx(density.sum())
    for plot in (plot_adaptive_lr, plot_rectification, plot_psi_variance):
        with pytest.raises(MissingDataError, match="SGD keeps no adaptive state"):
            plot(runs["sgd"])


def test_every_figure_draws_on_a_given_axes(runs):
    for plot, run in (
        (plot_update_ratios, runs["adam"]),
        (plot_rectification, runs["radam"]),
        (plot_psi_variance, runs["adam"]),
    ):
        fig = Figure()
        ax = fig.add_subplot()
        assert plot(run, ax=ax) is fig
        assert ax.lines
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_step_sizes_compare([runs["sgd"]], ax=ax) is fig and ax.lines
    fig = Figure()
    axes = fig.subplots(1, 2)
    assert plot_step_sizes(runs["adam"], params=["0.weight", "2.weight"], ax=list(axes)) is fig
    assert all(a.collections for a in axes)
