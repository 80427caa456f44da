"""The four mission figures' phenomenon claims can fail: each is applied to a control run of
its own entry (built in quick mode) in which the phenomenon is absent, and must reject it."""

import pytest

from dyntrace.io.reader import open_run


@pytest.fixture
def opened(built_entry):
    """``opened(name) -> {label: Run}`` of the entry built in quick mode; closed after the test."""
    runs = []

    def open_entry(name):
        result = built_entry(name)
        assert result.error is None, getattr(result, "traceback", result.error)
        out = {label: open_run(path) for label, path in result.runs.items()}
        runs.extend(out.values())
        return out

    yield open_entry
    for run in runs:
        run.close()


def test_dying_relu_claim_rejects_the_safe_rate(opened):
    from dyntrace.gallery import dying_relu

    runs = opened("dying_relu")
    assert dying_relu.dead_claim(runs["relu_high"]).passed
    control = dying_relu.dead_claim(runs["relu_safe"], label="control: safe rate")
    assert not control.passed, control
    # and the safe rate's claim rejects the too-high rate
    assert not dying_relu.no_overshoot_claim(runs["relu_high"], label="control: too high").passed


def test_noise_claim_rejects_the_full_batch(opened):
    from dyntrace.gallery import noisy_minibatch

    runs = opened("noisy_minibatch")
    assert noisy_minibatch.noise_claim(runs["minibatch_64"], "minibatch").passed
    control = noisy_minibatch.noise_claim(runs["full_batch"], "control: full batch")
    assert not control.passed, control


def test_stages_claim_rejects_adam(opened):
    from dyntrace.gallery import plateaus

    runs = opened("plateaus")
    assert plateaus.stages_claim(runs["deep_sgd"]).passed
    control = plateaus.stages_claim(runs["deep_adam"], "control: Adam learns the modes together")
    assert not control.passed, control


def test_saturation_claim_rejects_xavier(opened):
    from dyntrace.gallery import vanishing_sigmoid

    runs = opened("vanishing_sigmoid")
    assert vanishing_sigmoid.saturation_claim(runs["std1"]).passed
    control = vanishing_sigmoid.saturation_claim(runs["xavier"], "control: book's Xavier")
    assert not control.passed, control
