"""dyntrace.analysis.stats (interval means, roughness) and first_escape, against hand computations."""

import numpy as np
import pytest

from dyntrace.analysis import first_escape, interval_means, roughness


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
        steps = np.arange(1, 10)  # epochs of 3 steps: val logged at steps 3, 6, 9
        values = np.array([1.0, 2, 3, 4, 5, 6, 7, 8, 9])
        np.testing.assert_allclose(interval_means(steps, values, [3, 6, 9]), [2.0, 5.0, 8.0])

    def test_skips_non_finite_and_leaves_empty_intervals_nan(self):
        steps = np.array([1, 2, 3, 7])
        values = np.array([1.0, np.nan, 3.0, 5.0])
        out = interval_means(steps, values, [3, 5, 7, 9])
        np.testing.assert_allclose(out[[0, 2]], [2.0, 5.0])
        assert np.isnan(out[1]) and np.isnan(out[3])

    def test_steps_after_the_last_end_are_left_out(self):
        np.testing.assert_allclose(
            interval_means(np.array([1, 2, 3]), np.array([1.0, 2.0, 100.0]), [2]), [1.5]
        )


class TestRoughness:
    def test_a_plane_is_zero(self):
        y, x = np.mgrid[-5:5:50j, -5:5:50j]
        assert roughness(3 * x - 2 * y + 1) == pytest.approx(0, abs=1e-13)

    def test_a_paraboloid_by_hand(self):
        # f = x² + y² on unit spacing: the 5-point Laplacian is 4 everywhere; range 2·20²
        y, x = np.mgrid[-20:21, -20:21].astype(float)
        assert roughness(x**2 + y**2) == pytest.approx(4 / 800)

    def test_more_creases_are_rougher(self):
        # a triangle wave with k periods across the grid: k times the creases, same range
        x = np.linspace(0, 1, 201)
        X, _ = np.meshgrid(x, x)

        def creases(k):
            return np.abs((k * X) % 1 - 0.5)

        assert roughness(creases(8)) > 3 * roughness(creases(2))

    def test_scale_and_offset_free(self):
        z = np.random.default_rng(0).normal(size=(30, 40))
        assert roughness(5 * z + 7) == pytest.approx(roughness(z))

    def test_constant_is_nan_and_bad_shapes_raise(self):
        assert np.isnan(roughness(np.ones((5, 5))))
        with pytest.raises(ValueError, match="2-D"):
            roughness(np.ones(10))
        with pytest.raises(ValueError, match="3 × 3"):
            roughness(np.ones((2, 5)))
