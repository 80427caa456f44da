"""Small models and a fixed batch for the landscape tests, and a plain reference loss."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F


def _trained_look(model):
    """Non-zero biases and BatchNorm affine parameters, as after training."""
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim <= 1:
                p.add_(0.3 * torch.randn_like(p))


def make_mlp(seed=0):
    """MLP with BatchNorm and Dropout; warmed-up running stats, first weight frozen, mixed modes."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.5), nn.Linear(12, 3))
    model(torch.randn(32, 6))  # running stats that differ from their initial values
    _trained_look(model)
    model[0].weight.requires_grad_(False)
    model[2].eval()  # per-module flags that a blanket model.train() would not restore
    return model


def make_cnn(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )
    model(torch.randn(8, 2, 8, 8))
    _trained_look(model)
    return model


@pytest.fixture
def mlp():
    return make_mlp()


@pytest.fixture
def cnn():
    return make_cnn()


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(40, 6, generator=generator), torch.randint(0, 3, (40,), generator=generator)


@pytest.fixture
def image_batch():
    generator = torch.Generator().manual_seed(2)
    return torch.randn(16, 2, 8, 8, generator=generator), torch.randint(0, 3, (16,), generator=generator)


def accuracy(outputs, targets):
    return (outputs.argmax(dim=1) == targets).float().mean()


def loss_at(model, params, batch, fn=F.cross_entropy):
    """The eval-mode loss of a private copy of ``model`` with ``params`` written into it."""
    clone = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p, value in zip(clone.parameters(), params):
            p.copy_(value)
        return fn(clone(batch[0]), batch[1]).item()


def snapshot(model):
    """Everything about the model that evaluation must leave bit-identical."""
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [(name, p.requires_grad) for name, p in model.named_parameters()],
        [(name, m.training) for name, m in model.named_modules()],
        [id(p) for p in model.parameters()],
    )


def assert_same(before, after):
    states_before, *rest_before = before
    states_after, *rest_after = after
    assert states_before.keys() == states_after.keys()
    for key in states_before:
        assert torch.equal(states_before[key], states_after[key]), key
    assert rest_before == rest_after
