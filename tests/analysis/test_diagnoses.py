from dataclasses import replace

import numpy as np
import pytest

from dyntrace.analysis import KINDS, Diagnosis, Thresholds, diagnose, gradient_flow, gradient_flow_ratio
from dyntrace.errors import MissingDataError

STEPS = np.arange(2001)
RECORDS = np.arange(0, 2001, 20)  # 101 record steps


class FakeRun:
    """The reader's interface (dyntrace.open_run) over constructed numbers."""

    def __init__(self, scalars, stats, kinds):
        self._scalars = scalars  # name → (steps, values)
        self._stats = stats  # (probe, tensor, stat) → (steps, values), in recording order
        self._kinds = kinds  # probe → {tensor: kind}
        self.config, self.meta = {}, {}

    @property
    def scalar_names(self):
        return list(self._scalars)

    def scalar(self, name):
        if name not in self._scalars:
            raise MissingDataError(f"fake: no scalar {name!r}")
        return self._scalars[name]

    @property
    def probes(self):
        return list(dict.fromkeys(p for p, _, _ in self._stats))

    def names(self, probe):
        if probe not in self.probes:
            raise MissingDataError(f"fake: no {probe!r} probe")
        return list(dict.fromkeys(n for p, n, _ in self._stats if p == probe))

    @property
    def layers(self):
        return self.names("activations")

    @property
    def params(self):
        return self.names("gradients")

    @property
    def record_steps(self):
        return RECORDS

    def stat(self, probe, name, stat):
        try:
            return self._stats[probe, name, stat]
        except KeyError:
            raise MissingDataError(f"fake: no {stat} of {probe}/{name}") from None

    def kinds(self, probe):
        self.names(probe)
        return self._kinds.get(probe, {})

    def hist(self, probe, name):
        raise MissingDataError("fake: no histograms")


def healthy(seed=0):
    """A run that trains well: every diagnosis must stay quiet on it."""
    rng = np.random.default_rng(seed)
    loss = (2.0 * np.exp(-STEPS / 400) + 0.1) * (1 + 0.03 * rng.standard_normal(STEPS.size))
    val_steps = np.arange(100, 2001, 100)
    val = 2.0 * np.exp(-val_steps / 400) + 0.15
    grad_norm = np.exp(-RECORDS / 2000) * (1 + 0.1 * rng.standard_normal(RECORDS.size))
    stats = {}
    for layer, scale in (("fc1", 0.5), ("fc2", 0.8), ("fc3", 1.0)):
        stats["gradients", f"{layer}.weight", "norm"] = (RECORDS, scale * grad_norm)
        stats["gradients", f"{layer}.bias", "norm"] = (RECORDS, 0.1 * scale * grad_norm)
    stats["activations", "act1", "frac_dead_persistent"] = (RECORDS, np.full(RECORDS.size, 0.02))
    stats["activations", "act1", "frac_saturated"] = (RECORDS, np.zeros(RECORDS.size))
    stats["activations", "act2", "frac_dead"] = (RECORDS, np.zeros(RECORDS.size))
    stats["activations", "act2", "frac_saturated"] = (RECORDS, np.full(RECORDS.size, 0.05))
    scalars = {"loss": (STEPS, loss), "val_loss": (val_steps, val), "grad_norm": (RECORDS, grad_norm)}
    return FakeRun(scalars, stats, {"activations": {"act1": "relu", "act2": "sigmoid"}})


def with_scalar(run, name, values, steps=None):
    scalars = dict(run._scalars)
    scalars[name] = (run._scalars[name][0] if steps is None else steps, values)
    return FakeRun(scalars, run._stats, run._kinds)


def with_stat(run, key, values):
    stats = dict(run._stats)
    stats[key] = (RECORDS, values)
    return FakeRun(run._scalars, stats, run._kinds)


def only(found, kind):
    assert {d.kind for d in found} == {kind}, found
    return found


def test_healthy_run_is_quiet():
    for seed in range(3):
        assert diagnose(healthy(seed)) == []


def test_gradient_flow_groups_parameters_into_layers():
    steps, names, norms = gradient_flow(healthy())
    np.testing.assert_array_equal(steps, RECORDS)
    assert names == ["fc1", "fc2", "fc3"]
    run = healthy()
    w, b = run.stat("gradients", "fc2.weight", "norm")[1], run.stat("gradients", "fc2.bias", "norm")[1]
    np.testing.assert_allclose(norms[:, 1], np.hypot(w, b))
    np.testing.assert_allclose(gradient_flow_ratio(norms), 0.5)


def test_gradient_flow_aligns_different_record_steps():
    run = FakeRun(
        {},
        {
            ("gradients", "a.weight", "norm"): (np.array([0, 10, 20]), np.array([3.0, 3.0, 3.0])),
            ("gradients", "a.bias", "norm"): (np.array([10, 20]), np.array([4.0, 4.0])),
            ("gradients", "b", "norm"): (np.array([20, 30]), np.array([1.0, 0.0])),
        },
        {},
    )
    steps, names, norms = gradient_flow(run)
    np.testing.assert_array_equal(steps, [0, 10, 20, 30])
    assert names == ["a", "b"]
    np.testing.assert_array_equal(norms, [[3, np.nan], [5, np.nan], [5, 1], [np.nan, 0]])
    np.testing.assert_array_equal(gradient_flow_ratio(norms), [np.nan, np.nan, 5, np.nan])
    with pytest.raises(MissingDataError):
        gradient_flow(FakeRun({}, {}, {}))


def test_vanishing_gradients_from_the_layer_ratio():
    run = healthy()
    for p in ("fc1.weight", "fc1.bias"):  # from step 1000 fc1's gradient shrinks 1e5-fold
        norms = run.stat("gradients", p, "norm")[1] * np.where(RECORDS >= 1000, 1e-5, 1.0)
        run = with_stat(run, ("gradients", p, "norm"), norms)
    (d,) = only(diagnose(run), "vanishing_gradients")
    assert (d.start, d.end, d.subject, d.severity) == (1000, 2000, "fc1", "warning")
    assert d.value == pytest.approx(0.5e-5)  # healthy ratio 0.5, times 1e-5


def test_vanishing_gradients_from_a_tiny_layer_norm():
    run = healthy()
    for p in ("fc2.weight", "fc2.bias"):
        run = with_stat(run, ("gradients", p, "norm"), np.full(RECORDS.size, 1e-12))
    (d,) = only(diagnose(run), "vanishing_gradients")
    assert (d.start, d.end, d.subject) == (0, 2000, "fc2")
    assert d.value == pytest.approx(np.sqrt(2) * 1e-12) and "1.4e-12" in d.message


def test_exploding_gradients_from_the_layer_ratio():
    run = healthy()
    norms = run.stat("gradients", "fc1.weight", "norm")[1] * np.where(RECORDS >= 400, 1e5, 1.0)
    (d,) = only(diagnose(with_stat(run, ("gradients", "fc1.weight", "norm"), norms)), "exploding_gradients")
    assert (d.start, d.end, d.severity) == (400, 2000, "critical")
    assert d.value > 1e4


def test_exploding_gradients_from_global_growth():
    run = healthy()
    # 1 → e²⁰ ≈ 5e8; the early median (first 5 records) is e^0.4, so the norm passes
    # 1e3 × e^0.4 at step 100·(ln 1e3 + 0.4) ≈ 731: the first record after is 740
    grad_norm = np.exp(RECORDS / 100)
    (d,) = only(diagnose(with_scalar(run, "grad_norm", grad_norm)), "exploding_gradients")
    assert d.start == 740 and d.end == 2000 and d.subject == "grad_norm"
    assert d.value == pytest.approx(np.exp(20) / np.median(grad_norm[:5]), rel=1e-9)


def test_non_finite_gradient_norm():
    grad_norm = np.ones(RECORDS.size)
    grad_norm[70:] = np.inf
    (d,) = only(diagnose(with_scalar(healthy(), "grad_norm", grad_norm)), "exploding_gradients")
    assert (d.start, d.value, d.severity) == (1400, 31.0, "critical")


def test_dead_units():
    frac = np.where(RECORDS >= 1000, 0.6, 0.02)
    (d,) = only(
        diagnose(with_stat(healthy(), ("activations", "act1", "frac_dead_persistent"), frac)), "dead_units"
    )
    assert (d.start, d.end, d.subject, d.value) == (1000, 2000, "act1", 0.6)
    assert "act1 (relu)" in d.message and "60%" in d.message


def test_dead_units_fall_back_to_per_batch_fraction():
    (d,) = only(
        diagnose(with_stat(healthy(), ("activations", "act2", "frac_dead"), np.full(RECORDS.size, 0.3))),
        "dead_units",
    )
    assert d.subject == "act2"


def test_saturation():
    frac = np.where(RECORDS < 600, 0.7, 0.1)  # saturated early, then escapes (Glorot & Bengio)
    (d,) = only(diagnose(with_stat(healthy(), ("activations", "act2", "frac_saturated"), frac)), "saturation")
    assert (d.start, d.end, d.subject, d.value) == (0, 580, "act2", 0.7)


def test_loss_spike():
    run = healthy()
    loss = run.scalar("loss")[1].copy()
    loss[1234] *= 10
    (d,) = only(diagnose(with_scalar(run, "loss", loss)), "loss_spike")
    assert (d.start, d.end) == (1234, 1234)
    assert d.value == pytest.approx(10, rel=0.15)


def test_divergence_non_finite():
    loss = healthy().scalar("loss")[1].copy()
    loss[1500:] = np.nan
    found = diagnose(with_scalar(healthy(), "loss", loss))
    (d,) = [f for f in found if f.kind == "divergence"]
    assert (d.start, d.end, d.value, d.severity) == (1500, 2000, 501.0, "critical")


def test_divergence_of_a_finite_loss():
    loss = np.where(STEPS < 1000, 2.0 * np.exp(-STEPS / 200) + 0.1, 0.1 * np.exp((STEPS - 1000) / 150))
    (d,) = only(diagnose(with_scalar(healthy(), "loss", loss)), "divergence")
    assert abs(d.start - 1000) <= 10 and d.end == 2000
    # the raw loss ends at e^(1000/150) ≈ 786 × its minimum; the smoothed end, an average over
    # the last few steps of an exponential, lags it by a few per cent
    assert 700 < d.value < 786


def test_plateau_with_escape():
    loss = np.select(
        [STEPS < 300, STEPS < 800, STEPS < 900], [2.3 - STEPS / 300, 1.3, 1.3 - (STEPS - 800) / 100], 0.3
    )
    (d,) = only(diagnose(with_scalar(healthy(), "loss", loss)), "plateau")
    assert d.severity == "info" and abs(d.start - 300) <= 3 and abs(d.end - 799) <= 4
    assert d.value == pytest.approx(1.3) and "escaped at step 813" in d.message


def test_stuck_loss():
    loss = 2.303 * (1 + 0.01 * np.random.default_rng(0).standard_normal(STEPS.size))  # never learns
    (d,) = only(diagnose(with_scalar(healthy(), "loss", loss)), "plateau")
    assert (d.severity, d.start, d.end) == ("warning", 0, 2000)
    assert d.value == pytest.approx(2.303, rel=0.005)


def test_overfitting():
    val_steps = np.arange(100, 2001, 100)
    val = 0.5 + 0.4 * ((val_steps - 800) / 1200) ** 2 * (val_steps > 800) + 1.0 * np.exp(-val_steps / 200)
    (d,) = only(diagnose(with_scalar(healthy(), "val_loss", val, val_steps)), "overfitting")
    assert d.start in (800, 900) and d.end == 2000
    # raw: 0.90 at the end vs 0.52 at step 800, +74 %; the smoothed end averages the last
    # few validation points of a rising curve and sits lower
    assert 0.55 < d.value < 0.74


def test_overfitting_needs_the_training_loss_to_fall():
    val_steps = np.arange(100, 2001, 100)
    val = 1.0 + 0.5 * (val_steps > 1000)
    run = with_scalar(with_scalar(healthy(), "val_loss", val, val_steps), "loss", np.exp(STEPS / 2000.0))
    assert [d.kind for d in diagnose(run) if d.kind == "overfitting"] == []


def test_missing_data_skips_checks_and_thresholds_apply():
    assert diagnose(FakeRun({}, {}, {})) == []
    frac = np.full(RECORDS.size, 0.2)
    run = with_stat(healthy(), ("activations", "act1", "frac_dead_persistent"), frac)
    assert diagnose(run) == []
    strict = replace(Thresholds(), dead_fraction=0.1)
    assert [d.kind for d in diagnose(run, thresholds=strict)] == ["dead_units"]


def test_every_kind_is_documented_and_results_are_sorted():
    run = healthy()
    loss = run.scalar("loss")[1].copy()
    loss[1234] *= 10
    run = with_scalar(run, "loss", loss)
    run = with_stat(run, ("activations", "act2", "frac_saturated"), np.where(RECORDS < 600, 0.7, 0.1))
    found = diagnose(run)
    assert [d.start for d in found] == [0, 1234]
    assert all(isinstance(d, Diagnosis) and d.kind in KINDS for d in found)
