"""Weight initialisations by name.

Each entry fills a weight tensor in place and returns it: ``INITS["he_normal"](w)``.
fan_in / fan_out of a Linear weight (out, in) are in / out; of a Conv weight (out, in, *k)
they are in·∏k / out·∏k. ``init_(model, name)`` initialises every Linear and Conv weight of a
model and sets their biases to 0 (the book's convention).

The book ("Deep Learning from Scratch") calls std √(1/n_in) "Xavier"; that is LeCun normal,
not Glorot's √(2/(n_in + n_out)). Both are here under their own names.
"""

import math

import torch
from torch import nn

from dyntrace.catalog import ConfigError, lookup

__all__ = [
    "INITS",
    "init_",
    "fans",
    "zeros",
    "constant",
    "normal",
    "uniform",
    "lecun",
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "orthogonal",
    "book_xavier",
    "book_he",
    "torch_default",
]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def fans(w: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel)."""
    if w.dim() < 2:
        raise ConfigError(f"Invalid weight shape: {tuple(w.shape)} (fan-based inits need >= 2 dimensions)")
    receptive = math.prod(w.shape[2:])
    return w.shape[1] * receptive, w.shape[0] * receptive


@torch.no_grad()
def _normal(w: torch.Tensor, std: float) -> torch.Tensor:
    return w.normal_(0.0, std)


@torch.no_grad()
def _uniform(w: torch.Tensor, a: float) -> torch.Tensor:
    return w.uniform_(-a, a)


@torch.no_grad()
def zeros(w: torch.Tensor) -> torch.Tensor:
    """W = 0 (every unit learns the same thing: the book's counter-example)."""
    return w.zero_()


@torch.no_grad()
def constant(w: torch.Tensor, value: float = 0.1) -> torch.Tensor:
    """W = value (default 0.1)."""
    return w.fill_(value)


def normal(w: torch.Tensor, std: float = 0.01) -> torch.Tensor:
    """W ~ N(0, std²) (default std 0.01, the book's small-init example)."""
    if not std >= 0:
        raise ConfigError(f"Invalid std: {std!r} (>= 0)")
    return _normal(w, std)


def uniform(w: torch.Tensor, a: float = 0.05) -> torch.Tensor:
    """W ~ U(−a, a) (default a = 0.05)."""
    if not a >= 0:
        raise ConfigError(f"Invalid a: {a!r} (>= 0)")
    return _uniform(w, a)


def lecun(w: torch.Tensor) -> torch.Tensor:
    """LeCun normal: W ~ N(0, 1/fan_in). LeCun et al., "Efficient BackProp", 1998."""
    return _normal(w, math.sqrt(1.0 / fans(w)[0]))


def xavier_normal(w: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Glorot normal: W ~ N(0, gain²·2/(fan_in + fan_out)). Glorot & Bengio, AISTATS 2010."""
    fan_in, fan_out = fans(w)
    return _normal(w, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def xavier_uniform(w: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Glorot uniform: W ~ U(±gain·√(6/(fan_in + fan_out))), variance 2/(fan_in + fan_out)."""
    fan_in, fan_out = fans(w)
    return _uniform(w, gain * math.sqrt(6.0 / (fan_in + fan_out)))


def he_normal(w: torch.Tensor) -> torch.Tensor:
    """He normal: W ~ N(0, 2/fan_in). He et al., "Delving Deep into Rectifiers", ICCV 2015."""
    return _normal(w, math.sqrt(2.0 / fans(w)[0]))


def he_uniform(w: torch.Tensor) -> torch.Tensor:
    """He uniform: W ~ U(±√(6/fan_in)), variance 2/fan_in."""
    return _uniform(w, math.sqrt(6.0 / fans(w)[0]))


def orthogonal(w: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """W = gain·Q with Q (semi-)orthogonal. Saxe, McClelland & Ganguli, ICLR 2014."""
    return nn.init.orthogonal_(w, gain=gain)


def book_xavier(w: torch.Tensor) -> torch.Tensor:
    """The book's "Xavier": W ~ N(0, 1/n_in) with n_in = fan_in (= LeCun normal)."""
    return lecun(w)


def book_he(w: torch.Tensor) -> torch.Tensor:
    """The book's "He": W ~ N(0, 2/n_in) (= He normal)."""
    return he_normal(w)


def torch_default(w: torch.Tensor) -> torch.Tensor:
    """PyTorch's Linear/Conv default: W ~ U(±1/√fan_in) (kaiming_uniform with a = √5)."""
    return _uniform(w, 1.0 / math.sqrt(fans(w)[0]))


INITS = {
    "zeros": zeros,
    "constant": constant,
    "normal": normal,
    "uniform": uniform,
    "lecun": lecun,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "orthogonal": orthogonal,
    "book_xavier": book_xavier,
    "book_he": book_he,
    "torch_default": torch_default,
}


def init_(model: nn.Module, name: str, **options) -> nn.Module:
    """Initialise every Linear/Conv weight of ``model`` with init ``name`` (``options`` passed on),
    biases to 0; returns the model. A weight-normed layer gets the initialised weight as g·v/‖v‖.
    """
    fill = lookup("init", INITS, name)
    for module in model.modules():
        if not isinstance(module, _LAYERS):
            continue
        if nn.utils.parametrize.is_parametrized(module, "weight"):
            with torch.no_grad():  # assignment runs the parametrization's right_inverse: sets g and v
                module.weight = fill(torch.empty_like(module.weight), **options)
        else:
            fill(module.weight, **options)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    return model
