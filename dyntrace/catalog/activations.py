"""Activation functions by name, each an ``nn.Module`` so forward hooks (the recorder's) see it.

``make_activation(name, **options)`` builds one. Most are torch's own modules; ``binary_step``
and ``soft_exponential`` are defined here.
"""

import torch
from torch import nn

from dyntrace.catalog import lookup

__all__ = [
    "ACTIVATIONS",
    "make_activation",
    "BinaryStep",
    "Identity",
    "Softmax",
    "SoftExponential",
    "soft_exponential",
]


class BinaryStep(nn.Module):
    """Binary step: 1 if x ≥ 0 else 0. Its gradient is 0 everywhere (nothing learns through it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x >= 0).to(x.dtype)


def soft_exponential(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    r"""Soft exponential f(α, x), elementwise, for a scalar (0-d) or broadcastable α:

    .. math::
        f(α, x) = \begin{cases} -\ln(1 - α(x + α))/α & α < 0 \\ x & α = 0 \\
                  (e^{αx} - 1)/α + α & α > 0 \end{cases}

    It interpolates logarithm (α = −1), identity (α = 0) and exponential (α = 1). For α < 0 it is
    defined where 1 − α(x + α) > 0, i.e. x > 1/α − α (NaN elsewhere, as the formula says).
    At α = 0 the value is x and ∂f/∂α = 1 + x²/2, the limit of both sides, so α can leave 0.
    Reference: Godfrey & Gashler, "A continuum among logarithmic, linear, and exponential
    functions", IC3K 2015.
    """
    neg, pos = alpha < 0, alpha > 0
    # Each branch is evaluated everywhere (no host sync on α's sign); unselected branches get
    # harmless stand-ins (α = ∓1, x = ±1 / 0) so neither they nor their gradients are inf/NaN.
    a_neg, x_neg = torch.where(neg, alpha, -1.0), torch.where(neg, x, 1.0)
    a_pos, x_pos = torch.where(pos, alpha, 1.0), torch.where(pos, x, 0.0)
    f_neg = -torch.log1p(-a_neg * (x_neg + a_neg)) / a_neg
    f_pos = torch.expm1(a_pos * x_pos) / a_pos + a_pos
    f_zero = x + alpha * (1 + x * x / 2)  # = x at α = 0, with the right ∂/∂α
    return torch.where(neg, f_neg, torch.where(pos, f_pos, f_zero))


class Identity(nn.Module):
    """Linear activation f(x) = x, as a module of this catalog so the recorder's default probes
    see its output (they skip torch's ``nn.Identity``, which is not an activation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Softmax(nn.Softmax):
    """Softmax over the last dimension (``dim=-1``): e^{x_i} / Σ_j e^{x_j}."""

    def __init__(self, dim: int = -1):
        super().__init__(dim=dim)


class SoftExponential(nn.Module):
    """Soft exponential activation with a learnable scalar α (initial ``alpha``, default 0).

    See :func:`soft_exponential` for the definition and reference.
    """

    def __init__(self, alpha: float = 0.0):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return soft_exponential(x, self.alpha)


ACTIVATIONS = {
    "binary_step": BinaryStep,
    "linear": Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "softsign": nn.Softsign,
    "soft_exponential": SoftExponential,
    "softmax": Softmax,
}


def make_activation(name: str, **options) -> nn.Module:
    """The activation module called ``name``; ``options`` go to its constructor
    (e.g. ``negative_slope`` for leaky_relu, ``alpha`` for elu and soft_exponential).
    """
    return lookup("activation", ACTIVATIONS, name)(**options)
