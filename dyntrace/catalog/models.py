"""Model builders: ``nn.Sequential`` networks whose module names read well in a recording.

Layer i of an MLP is ``fc{i}`` → ``norm{i}`` → ``act{i}`` → ``drop{i}`` (norm before the
activation, as the book's BatchNorm network; absent parts are left out), then ``out``.
Parameters are then named ``fc1.weight``, ``norm1.bias``, ``out.weight``, ...
"""

from collections import OrderedDict

from torch import nn

from dyntrace.catalog import ConfigError, lookup
from dyntrace.catalog.activations import make_activation
from dyntrace.catalog.inits import init_
from dyntrace.catalog.norms import make_norm, wrap_layer
from dyntrace.catalog.regularizers import make_dropout

__all__ = ["MODELS", "make_model", "mlp", "cnn_digits"]


def _block(
    index: int,
    layer: nn.Module,
    features: int,
    *,
    dims: int,
    activation: str,
    norm: str,
    dropout: float,
    dropout_style: str,
    activation_options: dict,
    norm_options: dict,
) -> list:
    """[(name, module)] for one hidden layer: layer → norm → activation → dropout."""
    parts = [(f"fc{index}" if dims == 1 else f"conv{index}", wrap_layer(norm, layer))]
    norm_module = make_norm(norm, features, dims=dims, **norm_options)
    if norm_module is not None:
        parts.append((f"norm{index}", norm_module))
    parts.append((f"act{index}", make_activation(activation, **activation_options)))
    if dropout > 0:
        parts.append((f"drop{index}", make_dropout(dropout_style, dropout)))
    return parts


def _check(depth: int, width: int, dropout: float) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ConfigError(f"Invalid depth: {depth!r} (an integer >= 0)")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"Invalid width: {width!r} (an integer >= 1)")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"Invalid dropout: {dropout!r} (in [0, 1))")


def mlp(
    n_in: int,
    n_out: int,
    *,
    depth: int,
    width: int,
    activation: str,
    init: str,
    norm: str = "none",
    dropout: float = 0.0,
    dropout_style: str = "inverted",
    bias: bool = True,
    activation_options: dict | None = None,
    init_options: dict | None = None,
    norm_options: dict | None = None,
) -> nn.Sequential:
    """Multilayer perceptron n_in → [width] × depth → n_out (inputs (N, n_in), outputs (N, n_out)).

    Args:
        depth: hidden layers (0 gives a linear model ``out`` alone).
        width: units per hidden layer.
        activation, init, norm: catalog names; ``init`` applies to every weight, biases start at 0.
        dropout: drop probability after each hidden activation (0 = none);
            ``dropout_style`` ``inverted`` (nn.Dropout) or ``book``.
        bias: whether the linear layers have biases.
        activation_options, init_options, norm_options: passed to the catalog entries.
    """
    _check(depth, width, dropout)
    layers = []
    for i in range(1, depth + 1):
        layers += _block(
            i,
            nn.Linear(n_in if i == 1 else width, width, bias=bias),
            width,
            dims=1,
            activation=activation,
            norm=norm,
            dropout=dropout,
            dropout_style=dropout_style,
            activation_options=activation_options or {},
            norm_options=norm_options or {},
        )
    layers.append(("out", nn.Linear(width if depth else n_in, n_out, bias=bias)))
    return init_(nn.Sequential(OrderedDict(layers)), init, **(init_options or {}))


def cnn_digits(
    n_in: int = 64,
    n_out: int = 10,
    *,
    depth: int = 2,
    width: int = 16,
    activation: str = "relu",
    init: str = "he_normal",
    norm: str = "none",
    dropout: float = 0.0,
    dropout_style: str = "inverted",
    bias: bool = True,
    activation_options: dict | None = None,
    init_options: dict | None = None,
    norm_options: dict | None = None,
) -> nn.Sequential:
    """Small CNN for 8×8 digits; takes flat (N, 64) inputs like the MLP (``image`` unflattens them).

    ``depth`` blocks (1–3) of conv 3×3 (padding 1, ``width``·2^(i−1) channels) → norm → act →
    dropout → 2×2 max-pool (``pool{i}``), halving 8 → 4 → 2 → 1; then ``flatten`` and ``out``.
    Other arguments as :func:`mlp`.
    """
    if n_in != 64:
        raise ConfigError(f"Invalid n_in for cnn_digits: {n_in!r} (8×8 images, 64)")
    if depth not in (1, 2, 3):
        raise ConfigError(f"Invalid depth: {depth!r} (cnn_digits has 1 to 3 blocks)")
    _check(depth, width, dropout)
    layers = [("image", nn.Unflatten(1, (1, 8, 8)))]
    channels = 1
    for i in range(1, depth + 1):
        out_channels = width * 2 ** (i - 1)
        layers += _block(
            i,
            nn.Conv2d(channels, out_channels, 3, padding=1, bias=bias),
            out_channels,
            dims=2,
            activation=activation,
            norm=norm,
            dropout=dropout,
            dropout_style=dropout_style,
            activation_options=activation_options or {},
            norm_options=norm_options or {},
        )
        layers.append((f"pool{i}", nn.MaxPool2d(2)))
        channels = out_channels
    side = 8 // 2**depth
    layers += [("flatten", nn.Flatten()), ("out", nn.Linear(channels * side * side, n_out, bias=bias))]
    return init_(nn.Sequential(OrderedDict(layers)), init, **(init_options or {}))


MODELS = {"mlp": mlp, "cnn_digits": cnn_digits}


def make_model(name: str, n_in: int, n_out: int, **options) -> nn.Sequential:
    """The model called ``name`` for n_in inputs and n_out outputs; ``options`` as the builder's."""
    return lookup("model", MODELS, name)(n_in, n_out, **options)
