"""Runs compared on one figure, and figures of a run still being written."""

from __future__ import annotations

import time

import numpy as np
import pytest

import dyntrace
from dyntrace.analysis import ewma, gradient_flow
from dyntrace.errors import MissingDataError
from dyntrace.plots import (
    plot_activation_heatmaps,
    plot_compare_activation_std,
    plot_compare_gradient_norms,
    plot_compare_loss,
    plot_loss,
)
from dyntrace.plots.compare import run_labels


def _line(fig, gid):
    (found,) = [ln for ax in fig.axes for ln in ax.lines if ln.get_gid() == gid]
    return found


def _late_median(values, fraction=0.1):
    k = max(1, int(round(len(values) * fraction)))
    return np.nanmedian(values[-k:], axis=0)


def test_compare_loss_overlays_each_runs_ewma_in_its_own_colour(runs):
    pair = [runs["full"], runs["sgd"]]
    fig = plot_compare_loss(pair, labels=["adam", "sgd"], beta=0.9)
    for label, run in zip(["adam", "sgd"], pair):
        steps, loss = run.scalar("loss")
        np.testing.assert_array_equal(_line(fig, f"{label}:raw").get_ydata(), loss)
        np.testing.assert_allclose(_line(fig, f"{label}:ewma").get_ydata(), ewma(loss, 0.9))
        np.testing.assert_array_equal(
            _line(fig, f"{label}:val").get_xydata(), np.column_stack(run.scalar("val_loss"))
        )
    assert _line(fig, "adam:ewma").get_color() != _line(fig, "sgd:ewma").get_color()
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == ["adam", "adam (validation loss)"]


def test_compare_by_layer_draws_the_median_of_the_last_records(runs):
    pair = [runs["full"], runs["sgd"]]
    fig = plot_compare_activation_std(pair, labels=["a", "b"])
    for label, run in zip("ab", pair):
        want = _late_median(
            np.stack([run.stat("activations", n, "std")[1] for n in run.names("activations")], axis=1)
        )
        np.testing.assert_allclose(_line(fig, label).get_ydata(), want)
        np.testing.assert_array_equal(_line(fig, label).get_xdata(), [1, 2, 3])
    fig = plot_compare_gradient_norms(pair, labels=["a", "b"])
    for label, run in zip("ab", pair):
        np.testing.assert_allclose(_line(fig, label).get_ydata(), _late_median(gradient_flow(run)[2]))


def test_runs_without_the_data_are_named_and_none_at_all_is_missing_data(runs):
    fig = plot_compare_loss([runs["full"], runs["relu"]], labels=["full", "relu"])
    assert "no data in: relu" in fig.axes[0].get_title()
    with pytest.raises(MissingDataError, match="relu.h5: no scalar 'loss'"):
        plot_compare_loss([runs["relu"], runs["empty"]])
    with pytest.raises(ValueError, match="labels: 1 given for 2 runs"):
        plot_compare_loss([runs["full"], runs["sgd"]], labels=["x"])


def test_run_labels_are_file_stems_with_the_folder_when_two_clash(runs, tmp_path):
    assert run_labels([runs["full"], runs["sgd"]]) == ["full", "sgd"]

    class Fake:
        def __init__(self, path):
            self.path = path

    assert run_labels([Fake("/a/x/run.h5"), Fake("/a/y/run.h5")]) == ["x/run", "y/run"]


def test_a_run_still_being_written_can_be_plotted(tmp_path):
    """The writer flushes as it goes; a reader sees a consistent prefix and draws it."""
    path = tmp_path / "live.h5"
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    with dyntrace.Recorder(model, opt, path, every=2, flush_every=0.05) as rec:
        for _ in range(10):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            rec.log(loss=loss)
        deadline = time.monotonic() + 20
        while True:  # wait for the writer thread's flush, boundedly
            with dyntrace.open_run(path) as run:
                if len(run.steps("activations")) >= 5 and "loss" in run.scalar_names:
                    break
            assert time.monotonic() < deadline, "the writer never flushed"
            time.sleep(0.05)
        with dyntrace.open_run(path) as run:
            assert not run.closed_cleanly
            fig = plot_loss(run)
            np.testing.assert_array_equal(_line(fig, "loss:raw").get_ydata(), run.scalar("loss")[1])
            fig = plot_activation_heatmaps(run)
            mesh = [c for ax in fig.axes for c in ax.collections if c.get_gid() == "1"][0]
            assert mesh.get_coordinates().shape[1] == len(run.steps("activations")) + 1
        for _ in range(4):  # training goes on after the reader closed
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            rec.log(loss=loss)
    with dyntrace.open_run(path) as run:
        assert run.closed_cleanly and len(run.steps("activations")) == 7
