"""Each figure draws what the reader returns: the artists' data, not pixels."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle, StepPatch

from dyntrace.analysis import decimate, ewma, find_plateaus, gradient_flow, gradient_flow_ratio
from dyntrace.errors import MissingDataError
from dyntrace.plots import (
    layer_colors,
    plot_accuracy,
    plot_activation_heatmaps,
    plot_activation_histograms,
    plot_activation_std,
    plot_dashboard,
    plot_dead_units,
    plot_gradient_flow,
    plot_gradient_heatmaps,
    plot_loss,
    plot_norms,
    plot_saturation,
    plot_weight_heatmaps,
)
from dyntrace.plots.data import layer_stat
from dyntrace.plots.loss import auto_beta
from dyntrace.plots.norms import NORMS
from dyntrace.plots.units import BOUNDED_KINDS


def lines(fig, gid=None):
    found = [line for ax in fig.axes for line in ax.lines]
    return found if gid is None else [line for line in found if line.get_gid() == gid]


def line(fig, gid):
    (found,) = lines(fig, gid)
    return found


def test_loss_draws_the_logged_loss_its_ewma_val_loss_and_the_lr_steps(runs):
    run = runs["full"]
    steps, loss = run.scalar("loss")
    fig = plot_loss(run)
    np.testing.assert_array_equal(line(fig, "loss:raw").get_xydata(), np.column_stack([steps, loss]))
    smooth = ewma(loss, auto_beta(len(loss)), bias_correction=True)
    np.testing.assert_allclose(line(fig, "loss:ewma").get_ydata(), smooth)
    val_steps, val = run.scalar("val_loss")
    np.testing.assert_array_equal(
        line(fig, "val_loss:points").get_xydata(), np.column_stack([val_steps, val])
    )
    # the learning rate halves every 20 steps; drawn as a step function held to the last step
    lr = line(fig, "lr/0")
    lr_steps, lr_values = run.scalar("lr/0")
    assert len(lr_values) == 3 and lr.get_drawstyle() == "steps-post"
    np.testing.assert_array_equal(lr.get_xdata(), np.append(lr_steps, run.n_steps))
    np.testing.assert_array_equal(lr.get_ydata(), np.append(lr_values, lr_values[-1]))
    assert lr.axes is not line(fig, "loss:raw").axes  # on the twin axis
    assert "loss" in fig.axes[0].get_title().lower()


def test_loss_thins_a_long_series_keeping_spikes_and_shades_its_plateaus(runs):
    run = runs["plateau"]
    steps, loss = run.scalar("loss")
    fig = plot_loss(run, beta=0.98, max_points=1000)
    raw = line(fig, "loss:raw")
    want_s, want_v = decimate(steps, loss, 1000)
    assert len(raw.get_xdata()) <= 1000 < len(steps)
    np.testing.assert_array_equal(raw.get_xydata(), np.column_stack([want_s, want_v]))
    assert raw.get_ydata().max() == loss.max() and raw.get_ydata().min() == loss.min()
    np.testing.assert_allclose(line(fig, "loss:ewma").get_ydata(), decimate(steps, ewma(loss, 0.98), 1000)[1])
    plateaus = find_plateaus(steps, loss)
    spans = [p for p in fig.axes[0].patches if p.get_gid() == "plateau"]
    assert len(spans) == len(plateaus) >= 1
    for span, p in zip(spans, plateaus):
        assert isinstance(span, Rectangle)
        assert (span.get_x(), span.get_x() + span.get_width()) == pytest.approx((p.start, p.end))
    escapes = [ln.get_xdata()[0] for ln in lines(fig, "escape")]
    assert escapes == [p.escape for p in plateaus if p.escape is not None]
    assert plateaus[0].start == pytest.approx(1000, abs=60) and plateaus[0].escape == pytest.approx(
        3000, abs=100
    )


def test_accuracy_and_norms_draw_the_logged_scalars(runs):
    run = runs["full"]
    fig = plot_accuracy(run)
    steps, acc = run.scalar("accuracy")
    np.testing.assert_array_equal(line(fig, "accuracy:raw").get_xydata(), np.column_stack([steps, acc]))
    np.testing.assert_allclose(line(fig, "accuracy:ewma").get_ydata(), ewma(acc, auto_beta(len(acc))))
    np.testing.assert_array_equal(line(fig, "val_accuracy:points").get_ydata(), run.scalar("val_accuracy")[1])
    fig = plot_norms(run)
    present = [name for name in NORMS if name in run.scalar_names]
    assert present == ["grad_norm", "param_norm", "update_norm"]  # dist_init is opt-in
    for name in present:
        np.testing.assert_array_equal(line(fig, name).get_xydata(), np.column_stack(run.scalar(name)))
    assert fig.axes[0].get_yscale() == "log"  # ‖θ‖ ~ 10, ‖Δθ‖ ~ 1e-2: decades apart


@pytest.mark.parametrize(
    "probe, stats",
    [
        (
            "activations",
            ("mean", "std", "norm", "frac_zero", "frac_saturated", "frac_dead", "frac_dead_persistent"),
        ),
        ("gradients", ("mean", "std", "norm", "frac_zero")),
    ],
)
def test_layer_stat_of_all_layers_equals_the_readers_stat_of_each(runs, probe, stats):
    run = runs["full"]
    for stat in stats:
        steps, names, values = layer_stat(run, probe, stat)
        assert names == run.names(probe) and values.shape == (len(steps), len(names))
        for j, name in enumerate(names):
            want_steps, want = run.stat(probe, name, stat)
            np.testing.assert_array_equal(steps, want_steps)
            np.testing.assert_allclose(
                values[:, j], want, rtol=1e-12, equal_nan=True, err_msg=f"{stat} of {name}"
            )


def _meshes(fig):
    return {
        c.get_gid(): c for ax in fig.axes for c in ax.collections if isinstance(c, QuadMesh) and c.get_gid()
    }


@pytest.mark.parametrize(
    "probe, function",
    [
        ("activations", plot_activation_heatmaps),
        ("gradients", plot_gradient_heatmaps),
        ("weights", plot_weight_heatmaps),
    ],
)
def test_heatmaps_show_each_records_histogram_as_a_fraction_of_its_sample(runs, probe, function):
    run = runs["full"]
    fig = function(run, max_windows=400)
    meshes = _meshes(fig)
    assert sorted(meshes) == sorted(run.names(probe)[:8])
    for name, mesh in meshes.items():
        h = run.hist(probe, name)
        coords = mesh.get_coordinates()  # (rows + 1, columns + 1, 2)
        x, y = coords[0, :, 0], coords[:, 0, 1]
        np.testing.assert_array_equal(x[:-1], h.steps)
        log = h.scale.startswith("log10")
        assert mesh.axes.get_yscale() == ("log" if log else "linear")
        if h.edges.ndim == 2:  # a range per record (weights): each record re-binned onto the drawn grid
            from dyntrace.analysis import rebin

            moved = rebin(h.counts, h.edges, y)
            np.testing.assert_allclose(moved.sum(axis=1), h.counts.sum(axis=1))  # only empty bins trimmed
            with np.errstate(invalid="ignore", divide="ignore"):
                want = (moved / h.sampled[:, None]).T
            np.testing.assert_allclose(
                np.ma.filled(mesh.get_array(), 0.0), np.where(want > 1e-12, want, 0.0), atol=1e-12
            )
            continue
        edges = 10.0**h.edges if log else h.edges
        lo = int(np.argmin(np.abs(edges - y[0])))
        np.testing.assert_allclose(y, edges[lo : lo + len(y)])
        with np.errstate(invalid="ignore", divide="ignore"):
            want = (h.counts / h.sampled[:, None])[:, lo : lo + len(y) - 1].T
        got = mesh.get_array()
        assert got.shape == want.shape
        np.testing.assert_allclose(np.ma.filled(got, 0.0), np.where(np.isfinite(want), want, 0.0))
        assert np.all(got.mask == ~(want > 0))  # empty bins are left blank
        # the trimmed range drops only empty bins
        assert h.counts[:, :lo].sum() == 0 and h.counts[:, lo + len(y) - 1 :].sum() == 0
        assert mesh.norm.vmin > 0  # one log colour scale


def test_heatmaps_pool_consecutive_records_into_windows(runs):
    run = runs["full"]
    name = run.names("activations")[0]
    fig = plot_activation_heatmaps(run, layers=[name], max_windows=4)
    mesh = _meshes(fig)[name]
    h = run.hist("activations", name)
    size = 3  # 12 records in at most 4 windows
    x = mesh.get_coordinates()[0, :, 0]
    np.testing.assert_array_equal(x[:-1], h.steps[::size])
    pooled = h.counts.reshape(4, size, -1).sum(axis=1) / h.sampled.reshape(4, size).sum(axis=1)[:, None]
    y = mesh.get_coordinates()[:, 0, 1]
    lo = int(np.argmin(np.abs(h.edges - y[0])))
    np.testing.assert_allclose(np.ma.filled(mesh.get_array(), 0.0), pooled[:, lo : lo + len(y) - 1].T)


def test_activation_histograms_are_one_panel_per_layer_at_the_nearest_record(runs):
    run = runs["full"]
    steps = run.steps("activations")
    fig = plot_activation_histograms(run, step=steps[4] + 1)
    panels = [ax for ax in fig.axes if ax.patches]
    # module path and kind: the Sequential's activations are its modules 1, 3 and 5
    assert [ax.get_title() for ax in panels] == ["1 (tanh)", "3 (relu)", "5 (sigmoid)"]
    assert str(steps[4]) in fig.get_suptitle()
    for ax, name in zip(panels, run.names("activations")):
        (bars,) = [p for p in ax.patches if isinstance(p, StepPatch)]
        h = run.hist("activations", name)
        values, edges = bars.get_data()[:2]
        np.testing.assert_allclose(values, h.counts[4] / h.sampled[4])
        np.testing.assert_allclose(edges, h.edges)


def test_activation_std_saturation_and_dead_units_draw_the_readers_per_layer_series(runs):
    run = runs["full"]
    kinds = run.kinds("activations")
    for function, stat, shown in (
        (plot_activation_std, "std", run.names("activations")),
        (
            plot_saturation,
            "frac_saturated",
            [n for n in run.names("activations") if kinds[n] in BOUNDED_KINDS],
        ),
        (plot_dead_units, "frac_dead", run.names("activations")),
    ):
        fig = function(run)
        assert sorted(ln.get_gid() for ln in lines(fig)) == sorted(shown), function.__name__
        for name in shown:
            np.testing.assert_allclose(
                line(fig, name).get_xydata(), np.column_stack(run.stat("activations", name, stat))
            )
    assert len(shown) == 3 and len(lines(plot_saturation(run))) == 2  # tanh and sigmoid, not relu


def test_many_layers_get_a_depth_colourbar_instead_of_a_legend(tmp_path):
    import dyntrace

    from ._runs import record_run

    path = record_run(
        tmp_path / "deep.h5", acts=("tanh",) * 12, probes=["activations"], log=False, steps=4, every=2
    )
    with dyntrace.open_run(path) as run:
        fig = plot_activation_std(run)
        assert not fig.legends and len(lines(fig)) == 12
        (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert bar.get_ylim() == (0.5, 12.5) and "12 in all" in bar.get_ylabel()
        colors = [ln.get_color() for ln in lines(fig)]
        assert colors == layer_colors(12)


def test_a_probe_without_tensors_or_records_is_missing_data_not_an_empty_figure(tmp_path):
    import torch
    from torch import nn

    import dyntrace

    model = nn.Sequential(nn.Linear(3, 2))  # no activation module: the probe matches nothing
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match="no module matched"):
        rec = dyntrace.Recorder(
            model,
            opt,
            tmp_path / "none.h5",
            every=lambda step: step > 100,
            probes=["activations", "gradients"],
        )
    with rec:
        for _ in range(3):  # no record step yet
            opt.zero_grad()
            model(torch.randn(4, 3)).sum().backward()
            opt.step()
    with dyntrace.open_run(tmp_path / "none.h5") as run:
        for function in (plot_activation_heatmaps, plot_activation_std):
            with pytest.raises(MissingDataError, match=r"none\.h5: no 'activations' probe data"):
                function(run)
        for function in (plot_gradient_heatmaps, plot_gradient_flow):
            with pytest.raises(MissingDataError, match=r"none\.h5: no 'gradients' records yet"):
                function(run)


def test_saturation_needs_a_bounded_activation(runs):
    with pytest.raises(
        MissingDataError, match=r"relu\.h5: no saturated fraction.*\(relu\).*'activations' probe"
    ):
        plot_saturation(runs["relu"])


def test_gradient_flow_draws_norms_by_depth_per_record_and_the_first_last_ratio(runs):
    run = runs["full"]
    steps, names, norms = gradient_flow(run)
    fig = plot_gradient_flow(run)
    depth_lines = [ln for ln in lines(fig) if (ln.get_gid() or "").startswith("step ")]
    assert len(depth_lines) == len(steps)  # 12 records ≤ max_lines
    for r, ln in enumerate(depth_lines):
        assert ln.get_gid() == f"step {steps[r]}"
        np.testing.assert_array_equal(ln.get_xdata(), np.arange(1, len(names) + 1))
        np.testing.assert_allclose(ln.get_ydata(), norms[r])
    # one line per record, coloured by time: the first and the last differ
    assert depth_lines[0].get_color() != depth_lines[-1].get_color()
    ratio = line(fig, "ratio")
    np.testing.assert_array_equal(ratio.get_xdata(), steps)
    np.testing.assert_allclose(ratio.get_ydata(), gradient_flow_ratio(norms))
    fewer = plot_gradient_flow(run, max_lines=4)
    assert len([ln for ln in lines(fewer) if (ln.get_gid() or "").startswith("step ")]) == 4


def test_dashboard_composes_the_single_panels(runs):
    run = runs["full"]
    fig = plot_dashboard(run)
    titles = [ax.get_title() for ax in fig.axes]
    for title in ("Training loss and learning rate", "Gradient norm by depth", "Activation std per layer"):
        assert title in titles
    np.testing.assert_array_equal(line(fig, "loss:raw").get_ydata(), run.scalar("loss")[1])
    assert run.path.split("/")[-1] in fig.get_suptitle()


def test_multi_panel_figures_take_one_axes_per_panel_or_split_one(runs):
    run = runs["full"]
    fig = Figure()
    axes = fig.subplots(1, 3)
    assert plot_activation_histograms(run, ax=axes) is fig
    assert all(ax.patches for ax in axes)
    fig = Figure()
    host = fig.add_subplot()
    assert plot_gradient_flow(run, ax=host) is fig
    assert not host.axison and len([ax for ax in fig.axes if ax.lines]) == 2
    with pytest.raises(ValueError, match="at least 3 Axes"):
        plot_activation_histograms(run, ax=Figure().subplots(1, 2))
