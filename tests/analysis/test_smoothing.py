import numpy as np
import pytest

from dyntrace.analysis import decimate, decimate_bands, ewma, kaiser_smooth, moving_average


def ewma_loop(x, beta, bias_correction=True):
    v, out = 0.0, []
    for t, xt in enumerate(x, start=1):
        v = beta * v + (1 - beta) * xt
        out.append(v / (1 - beta**t) if bias_correction else v)
    return np.array(out)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.98])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_ewma_matches_the_recurrence(beta, bias_correction):
    x = np.random.default_rng(1).normal(10, 3, 300)
    np.testing.assert_allclose(
        ewma(x, beta, bias_correction=bias_correction), ewma_loop(x, beta, bias_correction), rtol=1e-12
    )


def test_bias_correction_removes_the_low_start():
    # a constant series: corrected EWMA is exact from t = 1; uncorrected starts at (1−β)·c
    x = np.full(50, 20.0)
    np.testing.assert_allclose(ewma(x, 0.98), 20.0, rtol=1e-12)
    raw = ewma(x, 0.98, bias_correction=False)
    assert raw[0] == pytest.approx(0.4)
    assert raw[9] == pytest.approx(20 * (1 - 0.98**10))


def test_ewma_beta_close_to_one_keeps_its_digits():
    x = np.array([3.0, 3.0, 3.0])
    np.testing.assert_allclose(ewma(x, 1 - 1e-12), 3.0, rtol=1e-9)


def test_ewma_skips_non_finite_values():
    x = np.array([np.nan, 1.0, 2.0, np.nan, np.inf, 4.0])
    out = ewma(x, 0.5)
    expected = ewma_loop([1.0, 2.0, 4.0], 0.5)
    assert np.isnan(out[0])
    np.testing.assert_allclose(out[[1, 2, 5]], expected)
    np.testing.assert_allclose(out[[3, 4]], expected[1])  # held while missing


def test_ewma_rejects_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        ewma([1.0, 2.0], 1.0)


def test_kaiser_smooth_matches_the_book_in_the_interior():
    x = np.random.default_rng(2).normal(size=200).cumsum()
    # Saito's smooth_curve: reflect-padded, valid convolution with a normalised kaiser(11, 2)
    s = np.r_[x[10:0:-1], x, x[-1:-11:-1]]
    w = np.kaiser(11, 2)
    book = np.convolve(w / w.sum(), s, mode="valid")[5:-5]
    ours = kaiser_smooth(x)
    assert ours.shape == x.shape
    np.testing.assert_allclose(ours[5:-5], book[5:-5], rtol=1e-12)


def test_kaiser_smooth_edges_use_only_real_values():
    w = np.kaiser(11, 2)
    x = np.arange(30, dtype=float)
    out = kaiser_smooth(x)
    # first point: the right half of the window over x[0..5], renormalised
    assert out[0] == pytest.approx(np.dot(w[5:], x[:6]) / w[5:].sum())
    np.testing.assert_allclose(out[5:-5], x[5:-5])  # a symmetric window keeps a line


def test_smoothing_skips_nan_and_keeps_constant_level():
    x = np.full(40, 2.0)
    x[[3, 17, 18, 19]] = np.nan
    np.testing.assert_allclose(kaiser_smooth(x), 2.0)
    np.testing.assert_allclose(moving_average(x, 5), 2.0)
    assert np.isnan(moving_average(np.full(5, np.nan), 3)).all()


def test_moving_average_values_and_edges():
    out = moving_average(np.array([1.0, 2.0, 3.0, 10.0]), 3)
    np.testing.assert_allclose(out, [1.5, 2.0, 5.0, 6.5])
    with pytest.raises(ValueError, match="odd"):
        moving_average([1.0, 2.0], 4)


def test_decimate_keeps_spikes_and_envelope():
    rng = np.random.default_rng(3)
    steps = np.arange(100_000)
    y = rng.normal(size=steps.size)
    y[12_345] = 50.0
    y[77_777] = -40.0
    s, v = decimate(steps, y, 1000)
    assert v.size <= 1000
    assert np.all(np.diff(s) > 0)
    assert 12_345 in s and 77_777 in s
    assert v.max() == 50.0 and v.min() == -40.0
    # every bucket of 200 points contributes its own max: the coarse envelope matches
    np.testing.assert_array_equal(np.sort(v)[-5:], np.sort(y)[-5:])


def test_decimate_short_series_and_nan_buckets():
    s, v = decimate([1, 2, 3], [1.0, 2.0, 3.0], 10)
    np.testing.assert_array_equal(v, [1.0, 2.0, 3.0])
    y = np.arange(100, dtype=float)
    y[40:60] = np.nan  # two whole buckets of 10
    s, v = decimate(np.arange(100), y, 20)
    assert np.isnan(v).sum() == 2  # one NaN per empty bucket keeps the gap visible
    assert s[np.isnan(v)].tolist() == [40, 50]
    assert np.nanmax(v) == 99.0


def test_decimate_bands():
    y = np.arange(10, dtype=float)
    y[7] = np.nan
    b = decimate_bands(np.arange(10) * 10, y, 4)  # buckets of 3: [0,1,2] [3,4,5] [6,7,8] [9]
    np.testing.assert_allclose(b.steps, [10, 40, 70, 90])
    np.testing.assert_allclose(b.mean, [1, 4, 7, 9])
    np.testing.assert_allclose(b.min, [0, 3, 6, 9])
    np.testing.assert_allclose(b.max, [2, 5, 8, 9])
    gap = decimate_bands([0, 1], [np.nan, np.nan], 1)
    assert np.isnan(gap.mean).all() and np.isnan(gap.max).all()
    assert decimate_bands([], [], 3).mean.shape == (0,)
