import numpy as np
import pytest

from dyntrace.analysis import Plateau, find_plateaus


def staircase(n=1000):
    """3 → 1 by step 200, flat at 1.0 until step 500, down to 0.1 by 600, then slow decay."""
    t = np.arange(n, dtype=float)
    loss = np.piecewise(
        t,
        [t < 200, (t >= 200) & (t < 500), (t >= 500) & (t < 600), t >= 600],
        [
            lambda t: 3 - 2 * t / 200,
            1.0,
            lambda t: 1 - 0.9 * (t - 500) / 100,
            lambda t: 0.1 * np.exp(-(t - 600) / 100),
        ],
    )
    return t.astype(np.int64), loss


def test_finds_a_clean_plateau_and_its_escape():
    steps, loss = staircase()
    (p,) = find_plateaus(steps, loss)
    assert abs(p.start - 200) <= 2 and abs(p.end - 499) <= 2
    # escape: 10 % below the level of 1.0 is reached at 500 + 0.1/0.009 ≈ 511
    assert p.escape == 512
    assert p.level == pytest.approx(1.0)
    # missing and non-finite values are skipped, not mistaken for noise or a drop
    gappy = loss.copy()
    gappy[[150, 300, 301, 302, 550]] = [np.nan, np.inf, np.nan, -np.inf, np.nan]
    assert find_plateaus(steps, gappy) == [p]
    assert find_plateaus(steps, np.full(loss.size, np.nan)) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_a_noisy_plateau_within_a_few_steps(seed):
    steps, loss = staircase()
    noisy = loss * (1 + 0.05 * np.random.default_rng(seed).normal(size=loss.size))
    found = [p for p in find_plateaus(steps * 10, noisy) if p.escape is not None]
    (p,) = found
    # steps scaled by 10: "a few steps" of the series is ≤ 10 points = 100 steps
    assert abs(p.start - 2000) <= 100 and abs(p.end - 4990) <= 100
    assert 5100 <= p.escape <= 5200
    assert p.level == pytest.approx(1.0, abs=0.02)


def test_two_plateaus_and_an_unescaped_one():
    t = np.arange(1500)
    loss = np.select(
        [t < 300, t < 400, t < 800, t < 900],
        [2.0, 2.0 - (t - 300) / 100, 1.0, 1.0 - 0.5 * (t - 800) / 100],
        0.5,
    )
    found = find_plateaus(t, loss)
    expected = [(0, 299), (400, 799), (900, 1499)]
    assert len(found) == 3
    for p, (start, end) in zip(found, expected):  # corners rounded by the 25-tap smoothing
        assert abs(p.start - start) <= 3 and abs(p.end - end) <= 3
    # 10 % below 2.0 at slope 0.01/step, 10 % below 1.0 at slope 0.005/step: 20 steps each
    assert [p.escape for p in found] == [320, 820, None]
    assert [p.level for p in found] == [2.0, 1.0, 0.5]


def test_a_steady_descent_has_no_plateau():
    t = np.arange(2000)
    assert find_plateaus(t, 5 * np.exp(-t / 300) + 0.1) == []
    # with noise the tail looks flat window by window (5e^(−t/300) < 0.01 after t ≈ 1860),
    # but over any stretch long enough to be a plateau the decay is still measurable: a line
    # fitted to t = 1645…2000 falls by 0.015, eight standard errors of the noise (0.01)
    noisy = 5 * np.exp(-t / 300) + 0.01 * np.random.default_rng(0).normal(size=t.size)
    assert find_plateaus(t, noisy) == []
    # a truly flat tail after the decay is found, and not escaped
    flat_tail = np.where(t < 1000, 5 * np.exp(-t / 100), 5 * np.exp(-10.0)) + 0.01 * np.random.default_rng(
        0
    ).normal(size=t.size)
    (tail,) = find_plateaus(t, flat_tail)
    assert (
        600 < tail.start < 1000 and tail.end == 1999 and tail.escape is None
    )  # 5e^(−t/100) < 0.01 after t ≈ 620


def test_options_and_short_series():
    steps, loss = staircase()
    assert find_plateaus(steps, loss, min_length=400) == []  # the plateau is 300 long
    assert find_plateaus(steps[:4], loss[:4]) == []
    assert isinstance(find_plateaus(steps, loss, window=20)[0], Plateau)
    with pytest.raises(ValueError, match="shape"):
        find_plateaus(steps, loss[:-1])


def test_a_noisy_steady_descent_is_not_a_plateau():
    """Minibatch noise larger than the per-window drop must not make a descent look flat."""
    rng = np.random.default_rng(0)
    steps = np.arange(1, 241)
    loss = np.concatenate([np.full(90, 2.3), np.linspace(2.3, 0.3, 150)]) + rng.normal(0, 0.06, 240)
    plateaus = find_plateaus(steps, loss)
    assert len(plateaus) == 1
    assert (
        plateaus[0].start <= 5 and 85 <= plateaus[0].end <= 90 + 12
    )  # within one window (N // 20) of the corner


def test_a_slow_noisy_descent_after_a_real_plateau_is_not_one():
    """The quickstart's shape: flat at ln 10 for 80 steps, a fast fall, then a slow descent
    (6× over 280 steps) under minibatch noise. The old detector called the slow part a plateau
    "escaped" at the last step; only the first stretch is one."""
    rng = np.random.default_rng(3)
    t = np.arange(1, 481)
    trend = np.select([t <= 80, t <= 200], [2.3, 2.3 - 2.0 * (t - 80) / 120], 0.3 * np.exp(-(t - 200) / 156))
    loss = trend + 0.04 * rng.normal(size=t.size) * (0.3 + trend)
    found = find_plateaus(t, loss)
    assert len(found) == 1
    (p,) = found
    assert p.start <= 10 and 50 <= p.end <= 85 and p.escape is not None and p.escape <= 110
    assert p.level == pytest.approx(2.3, rel=0.02)
