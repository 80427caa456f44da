"""Optimizers by name: thin factories over ``torch.optim`` with each update rule written out.

``make_optimizer(name, params, lr=..., **options)`` builds one. Notation: θ parameters, g the
gradient, η the learning rate, t the step count (from 1). Where Saito's "Deep Learning from
Scratch" writes a rule differently from torch, ``book=True`` selects the book's version (see
``BOOK_OPTIONS``); nothing changes silently.
"""

import torch

from dyntrace.catalog import ConfigError, lookup, normalize
from dyntrace.catalog.book_adam import BookAdam
from dyntrace.catalog.lookahead import Lookahead

__all__ = [
    "OPTIMIZERS",
    "BOOK_OPTIONS",
    "make_optimizer",
    "sgd",
    "momentum",
    "nesterov",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    "radam",
    "lookahead",
]


def sgd(params, *, lr: float, **options) -> torch.optim.SGD:
    """Plain SGD: θ ← θ − η g. ``options`` go to ``torch.optim.SGD`` (e.g. ``weight_decay``)."""
    return torch.optim.SGD(params, lr=lr, **options)


def momentum(params, *, lr: float, momentum: float = 0.9, **options) -> torch.optim.SGD:
    """Heavy-ball momentum: b ← μb + g, θ ← θ − η b (μ = 0.9).

    For a constant η this is the book's v ← μv − η g, θ ← θ + v with v = −η b.
    Reference: Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
    """
    return torch.optim.SGD(params, lr=lr, momentum=momentum, **options)


def nesterov(params, *, lr: float, momentum: float = 0.9, **options) -> torch.optim.SGD:
    """Nesterov accelerated gradient (NAG): b ← μb + g, θ ← θ − η (g + μ b) (μ = 0.9).

    This is Bengio et al.'s reformulation θ ← θ + μ² v − (1 + μ) η g (with v = −η b), in which
    the gradient is evaluated at θ itself rather than at the look-ahead point θ + μ v.
    Reference: Nesterov 1983; Sutskever et al., ICML 2013; Bengio et al., ICASSP 2013.
    """
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, **options)


def adagrad(params, *, lr: float, eps: float = 1e-10, **options) -> torch.optim.Adagrad:
    """AdaGrad: h ← h + g², θ ← θ − η g / (√h + ε) (ε = 1e-10; the book's 1e-7 with ``book=True``).

    Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods", JMLR 2011.
    """
    return torch.optim.Adagrad(params, lr=lr, eps=eps, **options)


def rmsprop(params, *, lr: float, alpha: float = 0.99, eps: float = 1e-8, **options) -> torch.optim.RMSprop:
    """RMSprop: h ← ρh + (1 − ρ) g², θ ← θ − η g / (√h + ε) (ρ = ``alpha`` = 0.99, ε = 1e-8; book 1e-7).

    Reference: Tieleman & Hinton, COURSERA Neural Networks lecture 6.5, 2012.
    """
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, **options)


def adam(
    params, *, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, eps_placement: str = "torch", **options
) -> torch.optim.Optimizer:
    """Adam with bias correction: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², m̂ = m/(1−β₁ᵗ),
    v̂ = v/(1−β₂ᵗ), θ ← θ − η m̂ / (√v̂ + ε) (β = 0.9/0.999, ε = 1e-8).

    ``eps_placement="book"`` adds ε to √v before the bias correction, as Saito's book does
    (:class:`~dyntrace.catalog.book_adam.BookAdam`, no further options).
    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    if eps_placement == "book":
        return BookAdam(params, lr=lr, betas=betas, eps=eps, **options)
    if eps_placement != "torch":
        raise ConfigError(f"Invalid eps_placement: {eps_placement!r} (valid: 'torch', 'book')")
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, **options)


def adamw(params, *, lr: float, weight_decay: float = 1e-2, **options) -> torch.optim.AdamW:
    """AdamW: Adam with decoupled weight decay θ ← θ(1 − ηλ) before the Adam step (λ = 0.01).

    Unlike an L2 penalty, the decay does not pass through the adaptive scaling 1/(√v̂ + ε).
    Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **options)


def radam(params, *, lr: float, **options) -> torch.optim.RAdam:
    """Rectified Adam: Adam scaled by r_t once the variance of the adaptive rate is tractable.

    ρ∞ = 2/(1−β₂) − 1, ρ_t = ρ∞ − 2tβ₂ᵗ/(1−β₂ᵗ); if ρ_t > 5 (torch and the authors' code; the
    paper says 4) θ ← θ − η r_t m̂ √(1−β₂ᵗ)/(√v + ε) with
    r_t = √[(ρ_t−4)(ρ_t−2)ρ∞ / ((ρ∞−4)(ρ∞−2)ρ_t)], else θ ← θ − η m̂. At β₂ = 0.999 the first
    rectified step is t = 6. (torch's RAdam adds ε to √v before the bias correction, as the book's Adam.)
    Reference: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.
    """
    return torch.optim.RAdam(params, lr=lr, **options)


def lookahead(
    params, *, lr: float, inner: str = "adam", k: int = 5, alpha: float = 0.5, book: bool = False, **options
) -> Lookahead:
    """Lookahead around the optimizer named ``inner`` (default adam): k fast steps, then
    φ ← φ + α(θ − φ), θ ← φ (k = 5, α = 0.5). ``options`` go to the inner optimizer.

    Reference: Zhang et al., "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019.
    """
    if normalize(inner) == "lookahead":
        raise ConfigError("Invalid inner: 'lookahead' cannot wrap itself")
    return Lookahead(make_optimizer(inner, params, lr=lr, book=book, **options), k=k, alpha=alpha)


OPTIMIZERS = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "nag": nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adam": adam,
    "adamw": adamw,
    "radam": radam,
    "lookahead": lookahead,
}

# Saito's conventions where they differ from torch's defaults (book=True). SGD and momentum
# are the same rules; the book's RMSprop decay 0.99 is torch's default alpha.
BOOK_OPTIONS = {
    "adagrad": {"eps": 1e-7},
    "rmsprop": {"eps": 1e-7},
    "adam": {"eps": 1e-7, "eps_placement": "book"},
}


def make_optimizer(name: str, params, *, lr: float, book: bool = False, **options) -> torch.optim.Optimizer:
    """Build the optimizer called ``name`` over ``params`` with learning rate ``lr``.

    ``book=True`` applies ``BOOK_OPTIONS[name]`` under the explicit ``options``; ``lookahead``
    takes ``inner=``, ``k=``, ``alpha=`` and passes the rest (and ``book``) to the inner one.
    Raises UnknownNameError for an unknown name, ValueError/TypeError for bad options.
    """
    factory = lookup("optimizer", OPTIMIZERS, name)
    if factory is lookahead:
        return lookahead(params, lr=lr, book=book, **options)
    if book:
        options = {**BOOK_OPTIONS.get(factory.__name__, {}), **options}
    return factory(params, lr=lr, **options)
