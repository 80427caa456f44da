"""Numpy helpers behind the phenomena entries (dying ReLU … landscape), against hand computations."""

import numpy as np
import pytest

from dyntrace.plots.plateau_escape import first_escape


class TestFirstEscape:
    def test_first_step_ten_percent_below_the_start(self):
        steps = np.arange(1, 8)
        loss = np.array([2.0, 2.0, 1.95, 1.81, 1.79, 1.0, 0.5])
        assert first_escape(steps, loss) == 5  # 1.79 ≤ 2.0·0.9 = 1.8; 1.81 is not

    def test_never_escapes(self):
        assert first_escape(np.arange(4), np.ones(4)) is None

    def test_skips_non_finite_values_and_starts_at_the_first_finite_one(self):
        steps = np.array([10, 20, 30, 40])
        loss = np.array([np.nan, 1.0, np.inf, 0.85])
        assert first_escape(steps, loss, drop=0.1) == 40

    def test_bad_input(self):
        with pytest.raises(ValueError, match="drop"):
            first_escape(np.arange(3), np.ones(3), drop=1.5)
        with pytest.raises(ValueError, match="same shape"):
            first_escape(np.arange(3), np.ones(4))


class TestIntervalMeans:
    def test_means_over_half_open_intervals(self):
        from dyntrace.plots.overfitting import interval_means

        steps = np.arange(1, 10)  # epochs of 3 steps: val logged at steps 3, 6, 9
        values = np.array([1.0, 2, 3, 4, 5, 6, 7, 8, 9])
        np.testing.assert_allclose(interval_means(steps, values, [3, 6, 9]), [2.0, 5.0, 8.0])

    def test_skips_non_finite_and_leaves_empty_intervals_nan(self):
        from dyntrace.plots.overfitting import interval_means

        steps = np.array([1, 2, 3, 7])
        values = np.array([1.0, np.nan, 3.0, 5.0])
        out = interval_means(steps, values, [3, 5, 7, 9])
        np.testing.assert_allclose(out[[0, 2]], [2.0, 5.0])
        assert np.isnan(out[1]) and np.isnan(out[3])

    def test_steps_after_the_last_end_are_left_out(self):
        from dyntrace.plots.overfitting import interval_means

        np.testing.assert_allclose(interval_means(np.array([1, 2, 3]), np.array([1.0, 2.0, 100.0]), [2]), [1.5])


class TestRankCorrelation:
    def test_monotone_is_one_and_reversed_is_minus_one(self):
        from dyntrace.plots.hyperparameter_search import rank_correlation

        x = np.array([1.0, 5.0, 2.0, 8.0])
        assert rank_correlation(x, x**3) == pytest.approx(1.0)
        assert rank_correlation(x, -x) == pytest.approx(-1.0)

    def test_ties_get_average_ranks(self):
        from dyntrace.plots.hyperparameter_search import rank_correlation

        # ranks of y with ties: [0.5, 0.5, 2, 3]; Pearson of [0, 1, 2, 3] with them, by hand
        x, y = np.array([1.0, 2, 3, 4]), np.array([7.0, 7, 8, 9])
        rx, ry = np.array([0.0, 1, 2, 3]), np.array([0.5, 0.5, 2, 3])
        assert rank_correlation(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1])

    def test_constant_or_tiny_samples_give_nan_and_nan_pairs_are_dropped(self):
        from dyntrace.plots.hyperparameter_search import rank_correlation

        assert np.isnan(rank_correlation([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))
        assert np.isnan(rank_correlation([1.0], [2.0]))
        assert rank_correlation([1.0, np.nan, 2.0, 3.0], [1.0, 0.0, 2.0, 3.0]) == pytest.approx(1.0)
