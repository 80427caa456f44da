import numpy as np
import pytest

from dyntrace.analysis import fraction, hist_mean, hist_quantiles, merge_windows, moments


def summarise(x):
    x = np.asarray(x, dtype=np.float64)
    return {"count": x.size, "sum": x.sum(), "sum_sq": (x * x).sum(), "min": x.min(), "max": x.max()}


def test_moments_match_numpy():
    x = np.random.default_rng(0).normal(3.0, 2.0, 10_000)
    s = summarise(x)
    mean, std = moments(s["count"], s["sum"], s["sum_sq"])
    assert mean == pytest.approx(x.mean(), rel=1e-13)
    assert std == pytest.approx(x.std(), rel=1e-12)


def test_moments_are_vectorised_and_nan_for_empty():
    mean, std = moments([0, 2, 4], [0.0, 2.0, 4.0], [0.0, 2.0, 4.0])
    assert np.isnan(mean[0]) and np.isnan(std[0])
    np.testing.assert_array_equal(mean[1:], [1.0, 1.0])
    np.testing.assert_array_equal(std[1:], [0.0, 0.0])


def test_moments_clip_round_off_below_zero():
    # seven copies of 0.7 give Σx²/n − mean² = −2.2e-16 in float64, not 0
    x = np.full(7, 0.7)
    assert np.sum(x * x) / 7 - (np.sum(x) / 7) ** 2 < 0
    _, std = moments(7, x.sum(), (x * x).sum())
    assert std == 0.0


def test_fraction():
    np.testing.assert_array_equal(fraction([1, 0, 3], [4, 0, 3]), [0.25, np.nan, 1.0])


def test_hist_quantiles_against_exact_quantiles():
    x = np.random.default_rng(1).normal(size=50_000)
    edges = np.linspace(-5, 5, 201)  # bins 0.05 wide
    counts = np.histogram(x, edges)[0]
    q = [0.01, 0.25, 0.5, 0.75, 0.99]
    np.testing.assert_allclose(hist_quantiles(edges, counts, q), np.quantile(x, q), atol=0.01)


def test_hist_quantiles_interpolate_within_a_bin():
    edges = [0.0, 1.0, 2.0, 3.0, 4.0]
    counts = np.array([[0, 4, 0, 4], [1, 1, 1, 1], [0, 0, 0, 0]])
    out = hist_quantiles(edges, counts, [0.0, 0.25, 0.5, 1.0])
    # row 0: first non-empty bin starts at 1; 25 % = half of bin [1, 2]; the median sits at the
    # top of that bin (C reaches 4 there); 100 % = top of the last bin
    np.testing.assert_allclose(out[0], [1.0, 1.5, 2.0, 4.0])
    np.testing.assert_allclose(out[1], [0.0, 1.0, 2.0, 4.0])
    assert np.isnan(out[2]).all()
    assert hist_quantiles(edges, counts[1], 0.5) == pytest.approx(2.0)  # scalar q, one histogram


def test_hist_open_bins_count_at_their_finite_edge():
    edges = [-np.inf, 0.0, 1.0, np.inf]
    assert hist_quantiles(edges, [2, 0, 2], 0.1) == 0.0
    assert hist_quantiles(edges, [0, 2, 2], 0.9) == 1.0
    assert hist_mean(edges, [2, 2, 0]) == pytest.approx(0.25)  # (2·0 + 2·0.5)/4
    with pytest.raises(ValueError, match="increasing"):
        hist_quantiles([0.0, np.inf, 1.0], [1, 1], 0.5)
    with pytest.raises(ValueError, match="q must"):
        hist_quantiles([0.0, 1.0], [1], 1.5)


def test_hist_mean():
    edges = np.linspace(0, 1, 11)
    counts = np.array([[10, 0, 0, 0, 0, 0, 0, 0, 0, 10], [0] * 10])
    np.testing.assert_allclose(hist_mean(edges, counts), [0.5, np.nan])
    x = np.random.default_rng(2).uniform(size=20_000)
    assert hist_mean(edges, np.histogram(x, edges)[0]) == pytest.approx(x.mean(), abs=0.005)


def test_merging_windows_equals_summarising_the_whole():
    rng = np.random.default_rng(3)
    chunks = [rng.normal(i, 1 + i, size=rng.integers(5, 50)) for i in range(7)]
    edges = np.linspace(-20, 30, 11)
    records = [summarise(c) | {"hist": np.histogram(c, edges)[0]} for c in chunks]
    fields = {k: np.array([r[k] for r in records]) for k in records[0]}
    steps, merged = merge_windows(np.arange(7) * 10, fields, 3)
    np.testing.assert_array_equal(steps, [20, 50, 60])  # last record of each window
    for w, group in enumerate([chunks[0:3], chunks[3:6], chunks[6:]]):
        whole = np.concatenate(group)
        expected = summarise(whole)
        for key, value in expected.items():
            assert merged[key][w] == pytest.approx(value, rel=1e-12)
        np.testing.assert_array_equal(merged["hist"][w], np.histogram(whole, edges)[0])
        mean, std = moments(merged["count"][w], merged["sum"][w], merged["sum_sq"][w])
        assert std == pytest.approx(whole.std(), rel=1e-10)


def test_merge_windows_ignores_nan_in_min_and_max():
    steps, merged = merge_windows([1, 2], {"min": [np.nan, 3.0], "max": [np.nan, 3.0], "count": [0, 1]}, 2)
    assert merged["min"][0] == 3.0 and merged["max"][0] == 3.0 and merged["count"][0] == 1
    with pytest.raises(ValueError, match="records"):
        merge_windows([1, 2, 3], {"count": [1, 2]}, 2)
