"""Helpers behind the optimizer entries (optimizer_paths, lr_schedules, step_sizes,
adam_warmup_radam, lookahead), against hand computations and small recorded runs."""

import math

import numpy as np
import pytest
import torch

import dyntrace
from dyntrace.errors import MissingDataError
from dyntrace.io.reader import open_run
from dyntrace.paths import optimizer_path
from dyntrace.plots.lookahead import lookahead_path, plot_lookahead_path, sync_steps
from dyntrace.plots.lr_schedules import _hold, late_noise, lr_at_steps, plot_late_noise, plot_lr_schedules
from dyntrace.plots.optimizer_paths import path_function, path_xy, plot_optimizer_paths, plot_path_losses


def _scalar_run(path, series: dict, *, config=None):
    """A run file whose only content is the given per-step scalars (step = index)."""
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    n = len(next(iter(series.values())))
    with dyntrace.Recorder(model, optimizer, path, every=10**9, probes=[], config=config or {}) as rec:
        for i in range(n):
            if i:
                optimizer.step()
            rec.log(**{name: float(values[i]) for name, values in series.items()})
    return open_run(path)


class TestHold:
    def test_forward_fills_values_logged_when_they_change(self):
        held = _hold([1, 4, 6], [0.3, 0.15, 0.075], np.arange(1, 9))
        np.testing.assert_array_equal(held, [0.3, 0.3, 0.3, 0.15, 0.15, 0.075, 0.075, 0.075])

    def test_nan_before_the_first_value_and_for_an_empty_series(self):
        held = _hold([3], [1.0], [1, 2, 3, 4])
        assert np.isnan(held[:2]).all() and (held[2:] == 1.0).all()
        assert np.isnan(_hold([], [], [1, 2])).all()


class TestLrAtSteps:
    def test_step_decay_as_recorded_equals_the_formula(self, tmp_path):
        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.4)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
        path = tmp_path / "lr.h5"
        with dyntrace.Recorder(model, optimizer, path, every=5, probes=[]) as rec:
            for _ in range(10):
                optimizer.zero_grad()
                model(torch.ones(1, 2)).sum().backward()
                optimizer.step()
                scheduler.step()
                rec.log(loss=0.0)
        with open_run(path) as run:
            steps, lr = lr_at_steps(run)
        np.testing.assert_array_equal(steps, np.arange(1, 11))
        np.testing.assert_allclose(lr, 0.4 * 0.5 ** ((steps - 1) // 3))  # step s used the rate of index s − 1

    def test_missing_rate_names_the_series(self, tmp_path):
        run = _scalar_run(tmp_path / "none.h5", {"loss": [1.0, 2.0]})
        with pytest.raises(MissingDataError, match="lr/3"):
            lr_at_steps(run, group=3)
        run.close()


class TestLateNoise:
    def test_white_noise_around_a_line_gives_its_std(self, tmp_path):
        rng = np.random.default_rng(0)
        n = 2000
        loss = 1.0 - 2e-4 * np.arange(n) + 0.05 * rng.standard_normal(n)
        run = _scalar_run(tmp_path / "noise.h5", {"loss": loss})
        assert late_noise(run, "loss", last=0.25) == pytest.approx(0.05, rel=0.1)
        run.close()

    def test_short_series_and_bad_fraction(self, tmp_path):
        run = _scalar_run(tmp_path / "short.h5", {"loss": np.ones(5)})
        assert math.isnan(late_noise(run, "loss"))
        with pytest.raises(ValueError, match="last"):
            late_noise(run, "loss", last=0.0)
        with pytest.raises(MissingDataError, match="val_loss"):
            late_noise(run, "val_loss")
        run.close()


class TestScheduleFormulas:
    """The entry writes each schedule's formula out by itself; it must agree with the catalog."""

    @pytest.mark.parametrize("epochs", [6, 20])
    def test_formula_matches_the_catalog_multiplier(self, epochs):
        from dyntrace.catalog.lr_schedules import make_schedule
        from dyntrace.gallery import lr_schedules as entry

        t = np.arange(epochs * entry.STEPS_PER_EPOCH)
        for key, (name, options) in entry.schedules(epochs).items():
            catalog = np.array([make_schedule(name, **options)(int(i)) for i in t])
            np.testing.assert_allclose(entry.formula(key, options, t), catalog, rtol=1e-12, err_msg=key)

    def test_every_decaying_schedule_ends_near_a_tenth_or_below(self):
        from dyntrace.gallery import lr_schedules as entry

        for epochs in (6, 20):
            total = epochs * entry.STEPS_PER_EPOCH
            for key, (_, options) in entry.schedules(epochs).items():
                end = float(entry.formula(key, options, total - 1))
                assert end == 1.0 if key == "constant" else end <= 0.15, (key, epochs, end)


class TestOptimizerPaths:
    def test_path_read_back_is_the_path_returned(self, tmp_path):
        xy = optimizer_path("bowl", "sgd", lr=0.95, steps=12, path=str(tmp_path / "sgd.h5"))
        with open_run(tmp_path / "sgd.h5") as run:
            steps, x, y = path_xy(run)
            assert path_function(run).name == "bowl"
        np.testing.assert_array_equal(steps, np.arange(13))
        np.testing.assert_array_equal(np.column_stack([x, y]), xy)
        t = np.arange(13)
        np.testing.assert_allclose(x, -7 * 0.905**t, atol=1e-12)  # the book's zig-zag
        np.testing.assert_allclose(y, 2 * (-0.9) ** t, atol=1e-12)

    def test_missing_coordinates(self, tmp_path):
        run = _scalar_run(tmp_path / "x.h5", {"x": [1.0, 2.0]})
        with pytest.raises(MissingDataError, match="'y'"):
            path_xy(run)
        with pytest.raises(MissingDataError, match="function"):
            path_function(run)
        run.close()

    def test_figures_draw_the_recorded_points(self, tmp_path):
        for name, lr in (("sgd", 0.95), ("momentum", 0.1)):
            optimizer_path("bowl", name, lr=lr, steps=5, path=str(tmp_path / f"{name}.h5"))
        runs = [open_run(tmp_path / f"{n}.h5") for n in ("sgd", "momentum")]
        fig = plot_optimizer_paths(runs, labels=["SGD", "Momentum"])
        for ax, run in zip(fig.axes, runs):
            (line,) = [l for l in ax.get_lines() if l.get_gid() == "path"]
            np.testing.assert_array_equal(line.get_ydata(), path_xy(run)[2])
        fig = plot_path_losses(runs, labels=["SGD", "Momentum"])
        np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_ydata(), runs[0].scalar("loss")[1])
        for run in runs:
            run.close()


class TestLookahead:
    def test_bowl_run_slow_weights_follow_the_rule(self, tmp_path):
        from dyntrace.gallery import lookahead as entry

        entry._record_bowl(str(tmp_path / "bowl.h5"))
        with open_run(tmp_path / "bowl.h5") as run:
            path = lookahead_path(run)
            marked = sync_steps(run)
            fig = plot_lookahead_path(run)
            (slow,) = [l for l in fig.axes[0].get_lines() if l.get_gid() == "slow"]
        np.testing.assert_array_equal(marked, np.arange(5, 31, 5))
        np.testing.assert_array_equal(path.steps[path.synced], marked)
        np.testing.assert_array_equal(path.fast[path.synced], path.slow[path.synced])  # θ restarts at φ
        off = ~path.synced
        np.testing.assert_array_equal(path.fast[off], path.presync[off])
        # by hand: from (−7, 2), five SGD steps, then halfway back
        theta5 = np.array([-7 * 0.905**5, 2 * (-0.9) ** 5])
        np.testing.assert_allclose(path.presync[5], theta5, rtol=1e-12)
        np.testing.assert_allclose(path.slow[5], (np.array([-7.0, 2.0]) + theta5) / 2, rtol=1e-12)
        np.testing.assert_array_equal(slow.get_xdata(), np.r_[path.slow[0, 0], path.slow[path.synced, 0]])

    def test_sync_steps_from_the_config_without_the_steps_probe(self, tmp_path):
        run = _scalar_run(tmp_path / "k.h5", {"loss": np.ones(12)}, config={"optimizer_options": {"k": 4}})
        np.testing.assert_array_equal(sync_steps(run), [4, 8])
        run.close()
        run = _scalar_run(tmp_path / "nok.h5", {"loss": np.ones(3)})
        with pytest.raises(MissingDataError, match="synced"):
            sync_steps(run)
        run.close()


class TestGradientHistograms:
    def test_pooled_fractions_and_exact_zeros(self, tmp_path):
        from dyntrace.gallery.adam_warmup_radam import gradient_histograms

        model = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.Linear(3, 2, bias=False))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        path = tmp_path / "g.h5"
        with dyntrace.Recorder(model, optimizer, path, every=1, probes=["gradients"]) as rec:
            for step in range(2):
                optimizer.zero_grad()
                for p in model.parameters():
                    p.grad = torch.full_like(p, 1e-3)
                model[0].weight.grad[:, :2] = 0.0  # 6 of the 12 first-layer gradients are zero
                optimizer.step()
                rec.log(loss=0.0)
        with open_run(path) as run:
            steps, edges, frac, zero = gradient_histograms(run)
        np.testing.assert_array_equal(steps, [1, 2])
        np.testing.assert_allclose(zero, 6 / 18)
        np.testing.assert_allclose(frac.sum(axis=1) + zero, 1.0)
        b = np.searchsorted(edges, -3.0, side="right") - 1  # every non-zero |g| is 1e-3
        np.testing.assert_allclose(frac[:, b], 12 / 18)


def test_late_noise_figure_draws_one_bar_per_run_and_scalar(tmp_path):
    rng = np.random.default_rng(1)
    runs = [
        _scalar_run(
            tmp_path / f"r{i}.h5", {"loss": 1 + s * rng.standard_normal(200), "val_loss": np.full(200, 0.5)}
        )
        for i, s in enumerate((0.1, 0.01))
    ]
    fig = plot_late_noise(runs, labels=["a", "b"], names=("loss",))
    heights = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(heights, [late_noise(r, "loss") for r in runs])
    for run in runs:
        run.close()


def test_lr_schedule_figure_draws_the_recorded_rates(tmp_path):
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1 / (1 + t))
    with dyntrace.Recorder(model, optimizer, tmp_path / "s.h5", every=100, probes=[]) as rec:
        for _ in range(6):
            optimizer.step()
            scheduler.step()
            rec.log(loss=0.0)
    with open_run(tmp_path / "s.h5") as run:
        fig = plot_lr_schedules(
            [run], labels=["inverse"], marks={"inverse": ([1, 6], [1.0, 1 / 6])}, log=False
        )
        line = [l for l in fig.axes[0].get_lines() if l.get_gid() == "inverse"][0]
        np.testing.assert_allclose(line.get_ydata(), 1 / np.arange(1, 7))
