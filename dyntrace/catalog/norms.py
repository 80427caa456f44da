"""Normalisation layers by name.

``make_norm(name, features, dims=1)`` returns the module placed after a Linear (dims=1, input
(N, features)) or Conv2d (dims=2, input (N, features, H, W)) layer, or None for ``none`` and
``weight``. Weight normalisation reparametrises the layer itself: ``wrap_layer(name, layer)``.
"""

import math

from torch import nn

from dyntrace.catalog import ConfigError, lookup

__all__ = [
    "NORMS",
    "BOOK_BATCHNORM",
    "make_norm",
    "wrap_layer",
    "batch",
    "layer",
    "instance",
    "group",
    "weight",
    "none",
]

# The book's BatchNorm: running ← 0.9·running + 0.1·batch, ε = 1e-6. torch's momentum is the
# weight of the new batch statistic, so 0.9 in the book is 0.1 here.
BOOK_BATCHNORM = {"momentum": 0.1, "eps": 1e-6}


def _check_dims(dims: int) -> None:
    if dims not in (1, 2):
        raise ConfigError(f"Invalid dims: {dims!r} (1 for (N, C) features, 2 for (N, C, H, W) images)")


def batch(features: int, dims: int = 1, *, book: bool = False, **options) -> nn.Module:
    """BatchNorm: normalise each feature over the batch (and H, W), then γx̂ + β; running stats for eval.

    ``book=True`` uses ``BOOK_BATCHNORM`` (momentum 0.9 in the book's sense, ε 1e-6).
    Reference: Ioffe & Szegedy, ICML 2015.
    """
    _check_dims(dims)
    options = {**BOOK_BATCHNORM, **options} if book else options
    return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(features, **options)


def layer(features: int, dims: int = 1, **options) -> nn.Module:
    """LayerNorm: normalise each sample over its features (and H, W). Ba, Kiros & Hinton, 2016.

    For images this is GroupNorm with one group (per-channel γ, β), since the spatial size is
    not known here.
    """
    _check_dims(dims)
    return nn.LayerNorm(features, **options) if dims == 1 else nn.GroupNorm(1, features, **options)


def instance(features: int, dims: int = 2, **options) -> nn.Module:
    """InstanceNorm: normalise each sample's channel over H, W (affine γ, β by default).

    Images only (dims=2). Reference: Ulyanov, Vedaldi & Lempitsky, 2016.
    """
    if dims != 2:
        raise ConfigError(
            f"Invalid dims: {dims!r} (instance norm needs images, dims=2; use 'layer' for features)"
        )
    return nn.InstanceNorm2d(features, **{"affine": True, **options})


def group(features: int, dims: int = 1, *, groups: int | None = None, **options) -> nn.Module:
    """GroupNorm: normalise each sample over groups of channels (default gcd(features, 32) groups).

    Reference: Wu & He, ECCV 2018.
    """
    _check_dims(dims)
    groups = groups or math.gcd(features, 32)
    if features % groups:
        raise ConfigError(f"Invalid groups: {groups!r} (must divide features={features})")
    return nn.GroupNorm(groups, features, **options)


def weight(features: int, dims: int = 1) -> None:
    """Weight normalisation w = g·v/‖v‖ per output unit: applied to the layer by ``wrap_layer``.

    Reference: Salimans & Kingma, NeurIPS 2016.
    """
    _check_dims(dims)


def none(features: int, dims: int = 1) -> None:
    """No normalisation."""
    _check_dims(dims)


NORMS = {"batch": batch, "layer": layer, "instance": instance, "group": group, "weight": weight, "none": none}


def make_norm(name: str, features: int, *, dims: int = 1, **options) -> nn.Module | None:
    """The normalisation module called ``name`` for ``features`` channels, or None (none, weight)."""
    return lookup("norm", NORMS, name)(features, dims, **options)


def wrap_layer(name: str, layer: nn.Module) -> nn.Module:
    """``layer`` with weight normalisation if ``name`` is ``weight``, else ``layer`` unchanged."""
    if lookup("norm", NORMS, name) is weight:
        return nn.utils.parametrizations.weight_norm(layer)
    return layer
