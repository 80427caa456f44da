"""The edge-of-stability entry's phenomenon claims fail on control runs whose learning rate is
too small for the sharpness to reach the threshold within the run."""

import dyntrace
from dyntrace.gallery import edge_of_stability as entry


def _claims(claims):
    return {c.text.split(":")[0]: c for c in claims}


def test_a_small_learning_rate_never_reaches_two_over_eta_and_fails_the_claims(tmp_path):
    path = tmp_path / "control.h5"
    entry.train(str(path), "gd", 0.02, 300)  # 2/η = 100, the sharpness starts near 7
    with dyntrace.open_run(path) as run:
        claims = _claims(entry.gd_claims({"gd_0.02": run}))
    assert claims["progressive sharpening"].passed  # it does start below the threshold …
    assert not claims[
        "the sharpness reaches 2/η (first step at ≥ 0.9 × 2/η)"
    ].passed  # … but never gets there
    assert not claims["once there it hovers at 2/η"].passed
    assert not claims["… but not monotonically"].passed
    assert claims["once there it hovers at 2/η"].measured == "GD η = 0.02: nan"


def test_adam_at_a_small_rate_does_not_equilibrate_at_38_over_eta(tmp_path):
    path = tmp_path / "adam_control.h5"
    entry.train(str(path), "adam", 1e-4, 150)  # 38/η = 380 000
    with dyntrace.open_run(path) as run:
        claims = entry.adam_claims({"adam_0.0001": run})
    assert not claims[0].passed and claims[0].measured == "Adam η = 0.0001: nan"
