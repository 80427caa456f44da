"""Readers behind the mission figures and the gallery's colours, against hand computations."""

import numpy as np
import pytest
import torch

import dyntrace
from dyntrace.io.reader import open_run
from dyntrace.plots.layout import plain_name
from dyntrace.plots.theme import METHOD_COLORS, WIDE_PALETTE, method_colors


def _scalar_run(path, series: dict, *, config=None, skip_nan=True):
    """A run file whose only content is the given per-step scalars (step = index; NaN: not logged,
    unless ``skip_nan`` is False)."""
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    n = max(len(v) for v in series.values())
    with dyntrace.Recorder(model, optimizer, path, every=10**9, probes=[], config=config or {}) as rec:
        for i in range(n):
            if i:
                optimizer.step()
            rec.log(
                **{
                    k: float(v[i])
                    for k, v in series.items()
                    if i < len(v) and (np.isfinite(v[i]) or not skip_nan)
                }
            )
    return open_run(path)


class TestColours:
    def test_fixed_colours_by_name_whatever_the_spelling(self):
        assert method_colors(["SGD", "Adam", "Leaky ReLU"]) == [
            METHOD_COLORS["sgd"],
            METHOD_COLORS["adam"],
            METHOD_COLORS["leakyrelu"],
        ]

    def test_a_repeated_or_unknown_name_gets_an_unused_colour(self):
        colors = method_colors(["ReLU", "relu", "something new"])
        assert colors[0] == METHOD_COLORS["relu"]
        assert len(set(colors)) == 3 and set(colors[1:]) <= set(WIDE_PALETTE)

    def test_relu_and_leaky_relu_and_adam_with_warmup_stand_apart(self):
        assert METHOD_COLORS["relu"] != METHOD_COLORS["leakyrelu"]
        assert METHOD_COLORS["adam"] != METHOD_COLORS["adam+warmup"]

    def test_plain_names(self):
        assert plain_name("val_loss") == "validation loss"
        assert plain_name("custom_metric") == "custom_metric"


class TestDyingReluReaders:
    def test_pooled_gradient_ratio_by_hand(self, tmp_path):
        from dyntrace.plots.dying_relu import final_dead, gradient_ratio

        run = _scalar_run(
            tmp_path / "r.h5",
            {
                "negative_units/layer2": [0.25],
                "negative_units/layer3": [0.5],
                "grad_negative/layer2": [1.0],
                "grad_negative/layer3": [2.0],
                "grad_positive/layer2": [4.0],
                "grad_positive/layer3": [8.0],
            },
        )
        _, ratio = gradient_ratio(run)
        # negative: (1·0.25 + 2·0.5) / 0.75; live: (4·0.75 + 8·0.5) / 1.25
        assert ratio[0] == pytest.approx((1.25 / 0.75) / (7.0 / 1.25))
        np.testing.assert_array_equal(final_dead(run), [0.25, 0.5])
        run.close()

    def test_no_negative_unit_gives_nan(self, tmp_path):
        from dyntrace.plots.dying_relu import gradient_ratio

        run = _scalar_run(
            tmp_path / "r.h5",
            {
                "negative_units/layer2": [0.0],
                "negative_units/layer3": [0.0],
                "grad_negative/layer2": [np.nan],
                "grad_negative/layer3": [np.nan],
                "grad_positive/layer2": [4.0],
                "grad_positive/layer3": [8.0],
            },
            skip_nan=False,
        )
        assert np.isnan(gradient_ratio(run)[1][0])
        run.close()


class TestSamplingNoise:
    def test_white_noise_matches_sigma_over_root_b(self, tmp_path):
        from dyntrace.plots.minibatch_noise import relative_noise, sampling_noise

        rng = np.random.default_rng(0)
        n = 2000
        loss = 1.0 + 0.1 * rng.standard_normal(n)  # a batch of 4 whose per-example std is 0.2
        sigma = np.full(n, np.nan)
        sigma[::50] = 0.2
        run = _scalar_run(
            tmp_path / "n.h5", {"loss": loss, "loss_std_all": sigma}, config={"batch_size": 4, "n_train": 100}
        )
        steps, measured, predicted = sampling_noise(run)
        np.testing.assert_allclose(predicted, 0.1)  # 0.2 / √4
        assert np.nanmedian(measured / predicted) == pytest.approx(1.0, rel=0.1)
        assert relative_noise(run) == pytest.approx(0.1, rel=0.1)
        run.close()

    def test_a_full_batch_has_no_sampling_noise(self, tmp_path):
        from dyntrace.plots.minibatch_noise import sampling_noise

        run = _scalar_run(
            tmp_path / "f.h5",
            {"loss": np.linspace(2, 1, 50), "loss_std_all": [0.5] + [np.nan] * 49},
            config={"batch_size": 100, "n_train": 100},
        )
        assert np.all(sampling_noise(run)[2] == 0)
        run.close()


class TestPlateauGrid:
    def test_updates_until_below_for_good(self, tmp_path):
        from dyntrace.gallery.plateaus import updates_to_converge

        run = _scalar_run(tmp_path / "p.h5", {"loss": [1.0, 0.5, 1e-4, 2e-3, 1e-4, 1e-5]})
        assert updates_to_converge(run) == 4  # below 1e-3 from step 4 on; step 2 was not for good
        run.close()
        run = _scalar_run(tmp_path / "q.h5", {"loss": [1.0, 1e-4, 0.9]})
        assert updates_to_converge(run) is None
        run.close()
