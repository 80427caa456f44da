"""Activations, norms and models: definitions, learnable α, readable names."""

import math

import pytest
import torch
from torch import nn

from dyntrace import catalog
from dyntrace.catalog import ConfigError
from dyntrace.catalog.activations import ACTIVATIONS, make_activation
from dyntrace.catalog.models import make_model
from dyntrace.catalog.norms import BOOK_BATCHNORM, make_norm
from dyntrace.errors import UnknownNameError

X = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5], dtype=torch.float64)


def soft_exponential_definition(alpha, x):
    if alpha < 0:
        return -math.log(1 - alpha * (x + alpha)) / alpha
    if alpha == 0:
        return x
    return (math.exp(alpha * x) - 1) / alpha + alpha


@pytest.mark.parametrize("alpha", [-0.25, 0.0, 0.75, 1.0])  # exact in float32; x in the α < 0 domain
def test_soft_exponential_matches_its_definition(alpha):
    module = make_activation("soft_exponential", alpha=alpha).double()
    expected = torch.tensor([soft_exponential_definition(alpha, x) for x in X.tolist()], dtype=torch.float64)
    torch.testing.assert_close(module(X), expected, rtol=1e-12, atol=1e-12)


def test_soft_exponential_alpha_is_learnt_even_from_zero():
    module = make_activation("soft_exponential").double()
    module(X).sum().backward()
    # ∂f/∂α at α = 0 is 1 + x²/2 (the limit from both sides)
    assert module.alpha.grad.item() == pytest.approx((1 + X**2 / 2).sum().item())
    for alpha in (-0.25, 0.375):  # and the gradient agrees with finite differences away from 0
        m = make_activation("soft_exponential", alpha=alpha).double()
        m(X).sum().backward()
        h = 1e-6
        numeric = sum(
            soft_exponential_definition(alpha + h, x) - soft_exponential_definition(alpha - h, x)
            for x in X.tolist()
        ) / (2 * h)
        assert m.alpha.grad.item() == pytest.approx(numeric, rel=1e-6)
    # α changes under an optimizer
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    opt.zero_grad()
    ((module(X) - 2 * X) ** 2).mean().backward()
    opt.step()
    assert module.alpha.item() != 0.0


def test_soft_exponential_gradients_stay_finite_for_large_inputs():
    module = make_activation("soft_exponential", alpha=-0.5)
    x = torch.tensor([50.0, 100.0], requires_grad=True)  # the exp branch is not selected: no inf·0
    module(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(module.alpha.grad)


def test_every_activation_is_a_module_with_expected_values():
    x = torch.tensor([-1.0, 0.0, 2.0])
    for name in ACTIVATIONS:
        assert isinstance(make_activation(name), nn.Module)
    torch.testing.assert_close(make_activation("binary_step")(x), torch.tensor([0.0, 1.0, 1.0]))
    torch.testing.assert_close(make_activation("linear")(x), x)
    torch.testing.assert_close(make_activation("swish")(x), x * torch.sigmoid(x))
    torch.testing.assert_close(make_activation("softsign")(x), x / (1 + x.abs()))
    torch.testing.assert_close(
        make_activation("leaky_relu", negative_slope=0.1)(x), torch.tensor([-0.1, 0.0, 2.0])
    )
    assert make_activation("softmax")(x).sum().item() == pytest.approx(1.0)


def test_book_batchnorm_constants():
    bn = make_norm("batch", 8, book=True)
    assert (bn.momentum, bn.eps) == (BOOK_BATCHNORM["momentum"], 1e-6)
    x = torch.randn(64, 8) * 3 + 5
    bn(x)  # running ← 0.9·running + 0.1·batch, the book's momentum 0.9
    torch.testing.assert_close(bn.running_mean, 0.1 * x.mean(0))


@pytest.mark.parametrize(
    "name, dims, shape",
    [
        ("batch", 2, (4, 6, 5, 5)),
        ("layer", 1, (4, 6)),
        ("layer", 2, (4, 6, 5, 5)),
        ("instance", 2, (4, 6, 5, 5)),
        ("group", 1, (4, 6)),
        ("group", 2, (4, 6, 5, 5)),
    ],
)
def test_norms_normalise(name, dims, shape):
    out = make_norm(name, 6, dims=dims)(torch.randn(shape) * 4 + 3)
    assert out.mean().abs().item() < 1e-4
    assert out.std().item() == pytest.approx(1.0, abs=0.05)


def test_norm_errors():
    with pytest.raises(ConfigError, match="instance norm needs images"):
        make_norm("instance", 6, dims=1)
    with pytest.raises(ConfigError, match="Invalid groups"):
        make_norm("group", 6, groups=4)
    assert make_norm("none", 6) is None and make_norm("weight", 6) is None


def test_mlp_names_shapes_and_init():
    model = make_model(
        "mlp",
        64,
        10,
        depth=3,
        width=32,
        activation="tanh",
        init="book_xavier",
        norm="batch",
        dropout=0.2,
        dropout_style="book",
    )
    names = [name for name, _ in model.named_children()]
    assert names == [
        "fc1",
        "norm1",
        "act1",
        "drop1",
        "fc2",
        "norm2",
        "act2",
        "drop2",
        "fc3",
        "norm3",
        "act3",
        "drop3",
        "out",
    ]
    assert model(torch.randn(5, 64)).shape == (5, 10)
    assert torch.all(model.fc1.bias == 0)
    weight_norm = make_model(
        "mlp", 4, 2, depth=1, width=8, activation="relu", init="he_normal", norm="weight"
    )
    assert [n for n, _ in weight_norm.named_children()] == ["fc1", "act1", "out"]
    assert "fc1.parametrizations.weight.original0" in dict(weight_norm.named_parameters())
    linear = make_model("mlp", 4, 2, depth=0, width=8, activation="relu", init="zeros")
    assert [n for n, _ in linear.named_children()] == ["out"]


def test_cnn_digits_takes_flat_inputs():
    model = make_model("cnn_digits", 64, 10, depth=2, width=8, norm="batch")
    assert model(torch.randn(3, 64)).shape == (3, 10)
    assert [n for n, _ in model.named_children()][:5] == ["image", "conv1", "norm1", "act1", "pool1"]
    with pytest.raises(ConfigError, match="Invalid depth"):
        make_model("cnn_digits", 64, 10, depth=4)


def test_registry_names_and_lookups():
    assert "optimizer" in catalog.kinds() and "function" in catalog.kinds()
    assert catalog.get("activation", "Leaky-ReLU") is nn.LeakyReLU
    assert catalog.get("activation", "SILU") is catalog.get("activation", "swish")
    for kind in catalog.kinds():
        for name in catalog.names(kind):
            assert catalog.summary(kind, name), (kind, name)


@pytest.mark.parametrize(
    "kind, name, expected",
    [
        ("init", "he_norml", "unknown init 'he_norml'; did you mean 'he_normal'? valid: book_he,"),
        ("dataset", "digit", "unknown dataset 'digit'; did you mean 'digits'? valid: blobs,"),
        ("activation", "qqq", "unknown activation 'qqq'; valid: binary_step,"),
    ],
)
def test_unknown_names(kind, name, expected):
    with pytest.raises(UnknownNameError) as info:
        catalog.get(kind, name)
    assert str(info.value).startswith(expected)


def test_every_public_module_declares_all():
    import importlib

    for module in [
        "activations",
        "book_adam",
        "datasets",
        "functions2d",
        "inits",
        "lookahead",
        "lr_schedules",
        "models",
        "norms",
        "optimizers",
        "regularizers",
    ]:
        mod = importlib.import_module(f"dyntrace.catalog.{module}")
        assert all(hasattr(mod, name) for name in mod.__all__), module
