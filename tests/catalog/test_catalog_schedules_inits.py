"""Schedules match their formulas; inits have the standard deviations their formulas say."""

import math

import pytest
import torch
from torch import nn

from dyntrace.catalog import ConfigError
from dyntrace.catalog.inits import INITS, fans, init_
from dyntrace.catalog.lr_schedules import make_schedule, make_scheduler
from dyntrace.catalog.norms import wrap_layer


@pytest.mark.parametrize(
    "name, options, t, expected",
    [
        ("constant", {}, 100, 1.0),
        ("step", {"step_size": 10, "gamma": 0.5}, 9, 1.0),
        ("step", {"step_size": 10, "gamma": 0.5}, 25, 0.25),
        ("exponential", {"gamma": 0.96, "decay_steps": 50}, 75, 0.96**1.5),
        ("exponential", {"gamma": 0.96, "decay_steps": 50, "staircase": True}, 75, 0.96),
        ("exponential", {"gamma": 0.95}, 3, 0.95**3),
        ("inverse_time", {"decay": 0.5}, 4, 1 / 3),
        ("inv_sqrt", {"k": 2.0}, 16, 0.5),
        ("inv_sqrt", {"k": 2.0}, 0, 2.0),
        ("cosine", {"total_steps": 100}, 50, 0.5),
        ("cosine", {"total_steps": 100, "min_factor": 0.2}, 100, 0.2),
        ("cosine", {"total_steps": 100, "min_factor": 0.2}, 250, 0.2),
        ("cosine", {"total_steps": 100}, 25, 0.5 * (1 + math.cos(math.pi / 4))),
    ],
)
def test_schedule_formulas(name, options, t, expected):
    assert make_schedule(name, **options)(t) == pytest.approx(expected, rel=1e-12)


def test_warmup_composes_with_any_schedule():
    schedule = make_schedule("step", warmup_steps=4, step_size=10, gamma=0.1)
    assert [schedule(t) for t in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert schedule(4) == 1.0 and schedule(13) == 1.0 and schedule(14) == pytest.approx(0.1)
    assert make_schedule("warmup", warmup_steps=2)(1) == 1.0
    cosine = make_schedule("cosine", warmup_steps=10, total_steps=100)
    assert cosine(60) == pytest.approx(0.5)


def test_scheduler_sets_the_rate_of_each_step():
    theta = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([theta], lr=0.2)
    scheduler = make_scheduler("inverse_time", opt, decay=1.0, warmup_steps=2)
    rates = []
    for _ in range(5):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert rates == pytest.approx([0.1, 0.2, 0.2, 0.1, 0.2 / 3])


@pytest.mark.parametrize(
    "name, options",
    [
        ("step", {"step_size": 0}),
        ("exponential", {"gamma": -1}),
        ("cosine", {"total_steps": 0}),
        ("warmup", {}),
    ],
)
def test_bad_schedule_options(name, options):
    with pytest.raises(ConfigError, match="Invalid"):
        make_schedule(name, **options)


FAN_IN, FAN_OUT = 400, 300


@pytest.mark.parametrize(
    "name, options, std",
    [
        ("normal", {"std": 0.01}, 0.01),
        ("uniform", {"a": 0.3}, 0.3 / math.sqrt(3)),
        ("lecun", {}, math.sqrt(1 / FAN_IN)),
        ("book_xavier", {}, math.sqrt(1 / FAN_IN)),
        ("xavier_normal", {}, math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("xavier_uniform", {}, math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("he_normal", {}, math.sqrt(2 / FAN_IN)),
        ("book_he", {}, math.sqrt(2 / FAN_IN)),
        ("he_uniform", {}, math.sqrt(2 / FAN_IN)),
        ("torch_default", {}, 1 / math.sqrt(3 * FAN_IN)),
        ("orthogonal", {}, math.sqrt(1 / FAN_IN)),  # rows of a 300×400 semi-orthogonal matrix have norm 1
    ],
)
def test_init_std_matches_formula(name, options, std):
    w = torch.empty(FAN_OUT, FAN_IN)
    INITS[name](w, **options)
    assert w.mean().item() == pytest.approx(0.0, abs=0.05 * std)
    assert w.std().item() == pytest.approx(std, rel=0.02)


def test_uniform_bounds_and_constants():
    w = torch.empty(FAN_OUT, FAN_IN)
    INITS["he_uniform"](w)
    assert w.abs().max().item() <= math.sqrt(6 / FAN_IN)
    assert torch.all(INITS["zeros"](w) == 0)
    assert torch.all(INITS["constant"](w, value=0.5) == 0.5)


def test_orthogonal_rows_are_orthonormal():
    w = INITS["orthogonal"](torch.empty(30, 50))
    torch.testing.assert_close(w @ w.T, torch.eye(30), atol=1e-5, rtol=0)


def test_conv_fans():
    assert fans(torch.empty(16, 3, 5, 5)) == (75, 400)


def test_init_model_sets_weights_and_zero_biases():
    model = nn.Sequential(nn.Linear(400, 300), nn.ReLU(), nn.BatchNorm1d(300), nn.Conv2d(2, 300, 3))
    init_(model, "He-Normal")
    assert model[0].weight.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    assert model[3].weight.std().item() == pytest.approx(math.sqrt(2 / 18), rel=0.05)
    assert torch.all(model[0].bias == 0) and torch.all(model[3].bias == 0)
    assert torch.all(model[2].weight == 1)  # normalisation parameters are not weights


def test_init_weight_normed_layer_sets_the_effective_weight():
    layer = wrap_layer("weight", nn.Linear(400, 300))
    init_(layer, "normal", std=0.05)
    assert layer.weight.std().item() == pytest.approx(0.05, rel=0.02)
