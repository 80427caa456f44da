"""The numpy helpers behind the activation entries: sweep curves, layer densities, and grouping
runs by init scale (roughness: tests/analysis/test_stats.py)."""

import numpy as np
import pytest

from dyntrace.plots.activation_functions import _curves
from dyntrace.plots.batchnorm_grid import _scale
from dyntrace.plots.init_histograms import layer_densities


class TestSweepCurves:
    def _step(self, lr=0.5):
        x = np.linspace(-3, 3, 61)
        f = 1 / (1 + np.exp(-x))
        df = f * (1 - f)
        names = ["sig.x", "sig.w", "step.x", "step.w", "other.alpha"]
        before = np.concatenate([x, np.ones_like(x), x, np.ones_like(x), [0.0]])
        # one SGD step on L = Σ w·f(x): x ← x − lr·f′(x), w ← w − lr·f(x); the step input gets no gradient
        after = np.concatenate([x - lr * df, 1 - lr * f, x, 1 - lr * (x >= 0), [0.3]])
        return names, [61, 61, 61, 61, 1], before, after, (x, f, df)

    def test_recovers_function_and_derivative(self):
        names, sizes, before, after, (x, f, df) = self._step()
        curves = _curves(names, sizes, before, after, 0.5)
        assert set(curves) == {"sig", "step"}
        cx, cf, cdf = curves["sig"]
        np.testing.assert_allclose(cx, x)
        np.testing.assert_allclose(cf, f, atol=1e-12)
        np.testing.assert_allclose(cdf, df, atol=1e-12)
        sx, sf, sdf = curves["step"]
        np.testing.assert_array_equal(sdf, 0)  # no gradient: unchanged input, derivative 0
        np.testing.assert_allclose(sf, (x >= 0).astype(float))

    def test_bad_input(self):
        names, sizes, before, after, _ = self._step()
        with pytest.raises(ValueError, match="sizes"):
            _curves(names, sizes[:-1], before, after, 1.0)
        with pytest.raises(ValueError, match="lr"):
            _curves(names, sizes, before, after, 0.0)
        with pytest.raises(ValueError, match="hold"):
            _curves(names, sizes, before[:-1], after[:-1], 1.0)


class TestLayerDensities:
    def test_density_integrates_to_the_fraction_shown(self):
        edges = np.array([np.linspace(0, 1, 11), np.linspace(0, 4, 11)])
        counts = np.array([[10.0] * 10, [0, 20, 20, 20, 20, 20, 0, 0, 0, 0]])
        density, zf = layer_densities(edges, counts, sampled=np.array([100.0, 100.0]))
        np.testing.assert_allclose((density * np.diff(edges, axis=1)).sum(axis=1), [1.0, 1.0])
        assert np.all(np.isnan(zf))

    def test_zeros_leave_the_bin_that_holds_zero(self):
        edges = np.array([np.linspace(0, 2, 5)])
        counts = np.array([[60.0, 20, 10, 10]])  # 50 of the 60 in [0, 0.5) are exact zeros
        density, zf = layer_densities(
            edges, counts, np.array([100.0]), zeros=np.array([50.0]), count=np.array([100.0])
        )
        assert zf[0] == pytest.approx(0.5)
        np.testing.assert_allclose(density[0] * 0.5, [0.10, 0.20, 0.10, 0.10])

    def test_zeros_scaled_to_a_sample(self):
        edges = np.array([np.linspace(-1, 1, 5)])  # 0 is the left edge of bin 2
        counts = np.array([[10.0, 10, 30, 10]])
        density, zf = layer_densities(
            edges, counts, np.array([60.0]), zeros=np.array([200.0]), count=np.array([1000.0])
        )
        assert zf[0] == pytest.approx(0.2)
        np.testing.assert_allclose(density[0] * 0.5 * 60, [10, 10, 30 - 0.2 * 60, 10])


def test_init_scale_from_config():
    assert _scale({"init_options": {"std": 0.01}}) == 0.01
    assert _scale({"init_options": {"a": 0.5}}) == 0.5
    with pytest.raises(ValueError, match="init scale"):
        _scale({"init_options": {}})
