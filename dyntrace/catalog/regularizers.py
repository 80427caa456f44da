"""Regularisers: weight penalties and decay, dropout, early stopping, augmentation, feature scaling.

"Weights" are the ``weight`` of every Linear and Conv layer; biases and normalisation
parameters are never penalised or decayed (the book's convention).

Augmentations share one signature ``aug(x, y, *, rng, **options) -> (x_mixed, y_a, y_b, lam)``
with x images (N, C, H, W), ``rng`` a ``numpy.random.Generator`` (seeded by the caller) and the
loss ``lam·L(out, y_a) + (1 − lam)·L(out, y_b)`` (:func:`mixed_loss`).
"""

import copy
import functools

import numpy as np
import torch
from torch import nn

from dyntrace.catalog import ConfigError, lookup

__all__ = [
    "REGULARIZERS",
    "DROPOUTS",
    "AUGMENTATIONS",
    "SCALERS",
    "l1_penalty",
    "l2_penalty",
    "decoupled_weight_decay_",
    "BookDropout",
    "make_dropout",
    "EarlyStopping",
    "no_augmentation",
    "mixup",
    "cutout",
    "cutmix",
    "mixed_loss",
    "make_augmentation",
    "NoScaling",
    "Standardize",
    "MinMaxScale",
    "make_scaler",
]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """The (effective) weight of every Linear/Conv layer, differentiable."""
    return [m.weight for m in model.modules() if isinstance(m, _LAYERS)]


def l1_penalty(model: nn.Module, lam: float) -> torch.Tensor:
    """L1 penalty λ·Σ|W| over the weights (a 0-d tensor to add to the loss)."""
    return lam * sum(w.abs().sum() for w in _weights(model))


def l2_penalty(model: nn.Module, lam: float) -> torch.Tensor:
    """L2 penalty ½λ·ΣW² over the weights (the book's weight decay; its gradient is λW)."""
    return 0.5 * lam * sum(w.pow(2).sum() for w in _weights(model))


@torch.no_grad()
def decoupled_weight_decay_(model: nn.Module, *, lr: float, weight_decay: float) -> None:
    """Decoupled weight decay W ← W·(1 − η·λ), applied after ``optimizer.step()``.

    Unlike an L2 penalty it bypasses the optimizer's adaptive scaling. ``torch.optim.AdamW``
    does the same inside its step (before the Adam update) for all parameters of a group;
    this function touches weights only. A weight-normed layer decays its magnitude g.
    Reference: Loshchilov & Hutter, ICLR 2019.
    """
    for module in model.modules():
        if not isinstance(module, _LAYERS):
            continue
        if nn.utils.parametrize.is_parametrized(module, "weight"):
            module.parametrizations.weight.original0.mul_(1 - lr * weight_decay)
        else:
            module.weight.mul_(1 - lr * weight_decay)


class BookDropout(nn.Module):
    """Non-inverted dropout (the book's): in training drop each unit with probability p, keep
    the rest unscaled; in evaluation multiply every unit by (1 − p).

    ``nn.Dropout`` (the "inverted" entry) scales kept units by 1/(1 − p) in training instead
    and is the identity in evaluation; both have the same expected output.
    Reference: Srivastava et al., JMLR 2014.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"Invalid dropout probability: {p!r} (in [0, 1))")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x * (torch.rand_like(x) >= self.p)
        return x * (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


DROPOUTS = {"inverted": nn.Dropout, "book": BookDropout}


def make_dropout(name: str, p: float) -> nn.Module:
    """Dropout module ``inverted`` (nn.Dropout) or ``book`` (BookDropout) with drop probability p."""
    return lookup("dropout", DROPOUTS, name)(p)


class EarlyStopping:
    """Stop when the validation loss has not improved by more than ``min_delta`` for ``patience``
    consecutive evaluations; optionally put the best weights back.

    Call ``update(val_loss, model)`` once per evaluation (e.g. per epoch); it returns True when
    training should stop. Attributes: ``best`` (lowest loss), ``best_epoch`` and ``epoch``
    (1-based count of updates), ``stopped_epoch`` (None until stopped).

    Args:
        patience: evaluations without improvement before stopping (default 10).
        min_delta: an improvement must lower the best loss by more than this (default 0).
        restore_best: on stopping, load the weights of the best evaluation (default True).
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0, restore_best: bool = True):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ConfigError(f"Invalid patience: {patience!r} (an integer >= 1)")
        if not min_delta >= 0:
            raise ConfigError(f"Invalid min_delta: {min_delta!r} (>= 0)")
        self.patience, self.min_delta, self.restore_best = patience, min_delta, restore_best
        self.best = float("inf")
        self.best_epoch = 0
        self.epoch = 0
        self.stopped_epoch = None
        self._wait = 0
        self._best_state = None

    def update(self, val_loss, model: nn.Module | None = None) -> bool:
        """Record one validation loss (float or 0-d tensor); True means stop now."""
        self.epoch += 1
        val_loss = float(val_loss)  # a device sync if it is a tensor: once per evaluation
        if val_loss < self.best - self.min_delta:
            self.best, self.best_epoch, self._wait = val_loss, self.epoch, 0
            if self.restore_best and model is not None:
                self._best_state = copy.deepcopy(model.state_dict())
        else:
            self._wait += 1
        if self._wait < self.patience:
            return False
        self.stopped_epoch = self.epoch
        if self.restore_best and model is not None:
            self.restore(model)
        return True

    def restore(self, model: nn.Module) -> None:
        """Load the weights saved at the best evaluation into ``model`` (no-op if none saved)."""
        if self._best_state is not None:
            model.load_state_dict(self._best_state)


REGULARIZERS = {
    "l1": l1_penalty,
    "l2": l2_penalty,
    "weight_decay": decoupled_weight_decay_,
    "early_stopping": EarlyStopping,
}


def _check_images(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ConfigError(f"Invalid input for {name}: shape {tuple(x.shape)} (needs images (N, C, H, W))")


def _beta(rng: np.random.Generator, alpha: float) -> float:
    if not alpha > 0:
        raise ConfigError(f"Invalid alpha: {alpha!r} (> 0)")
    return float(rng.beta(alpha, alpha))


def no_augmentation(x: torch.Tensor, y: torch.Tensor, *, rng: np.random.Generator):
    """No augmentation: (x, y, y, 1.0)."""
    return x, y, y, 1.0


def mixup(x: torch.Tensor, y: torch.Tensor, *, rng: np.random.Generator, alpha: float = 1.0):
    """Mixup: λ ~ Beta(α, α), x̃ = λx + (1 − λ)x[π] for a random permutation π (α = 1).

    Works on any input shape. Reference: Zhang et al., "mixup", ICLR 2018.
    """
    lam = _beta(rng, alpha)
    perm = torch.from_numpy(rng.permutation(len(x))).to(x.device)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def cutout(x: torch.Tensor, y: torch.Tensor, *, rng: np.random.Generator, size: int = 4):
    """Cutout: zero a size×size square (clipped at the border) at a random centre in each image.

    Labels are unchanged (λ = 1). Reference: DeVries & Taylor, 2017.
    """
    _check_images(x, "cutout")
    n, _, h, w = x.shape
    top = torch.from_numpy(rng.integers(0, h, size=n) - size // 2).to(x.device)[:, None]
    left = torch.from_numpy(rng.integers(0, w, size=n) - size // 2).to(x.device)[:, None]
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top) & (rows < top + size)  # (N, H)
    in_cols = (cols >= left) & (cols < left + size)  # (N, W)
    hole = in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
    return x.masked_fill(hole[:, None], 0.0), y, y, 1.0


def cutmix(x: torch.Tensor, y: torch.Tensor, *, rng: np.random.Generator, alpha: float = 1.0):
    """CutMix: paste a box of x[π] into x; λ = 1 − (pasted area)/(H·W), the area actually pasted.

    The box has sides √(1 − λ₀)·(H, W) for λ₀ ~ Beta(α, α), a uniform random centre, and is
    clipped at the border (so λ ≥ λ₀). Reference: Yun et al., "CutMix", ICCV 2019.
    """
    _check_images(x, "cutmix")
    _, _, h, w = x.shape
    ratio = np.sqrt(1.0 - _beta(rng, alpha))
    cy, cx = rng.integers(0, h), rng.integers(0, w)
    top, bottom = np.clip([cy - int(h * ratio) // 2, cy + int(h * ratio) // 2], 0, h)
    left, right = np.clip([cx - int(w * ratio) // 2, cx + int(w * ratio) // 2], 0, w)
    perm = torch.from_numpy(rng.permutation(len(x))).to(x.device)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[perm][:, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    return mixed, y, y[perm], float(lam)


def mixed_loss(
    criterion, output: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float
) -> torch.Tensor:
    """λ·criterion(output, y_a) + (1 − λ)·criterion(output, y_b)."""
    if lam == 1.0:
        return criterion(output, y_a)
    return lam * criterion(output, y_a) + (1 - lam) * criterion(output, y_b)


AUGMENTATIONS = {"none": no_augmentation, "mixup": mixup, "cutout": cutout, "cutmix": cutmix}


def make_augmentation(name: str, **options):
    """The augmentation ``name`` with ``options`` bound: a function ``(x, y, *, rng)``."""
    return functools.partial(lookup("augmentation", AUGMENTATIONS, name), **options)


class NoScaling:
    """Leave features as they are."""

    def fit(self, x: torch.Tensor) -> "NoScaling":
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Standardize(NoScaling):
    """Standardisation x' = (x − μ)/σ per feature, μ and σ (population) from the data given to
    ``fit`` (the training set); a constant feature gets σ = 1. Apply ``transform`` to every split.
    """

    def fit(self, x: torch.Tensor) -> "Standardize":
        self.mean = x.mean(dim=0)
        std = x.std(dim=0, unbiased=False)
        self.std = torch.where(std > 0, std, torch.ones_like(std))
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MinMaxScale(NoScaling):
    """Min–max scaling x' = (x − min)/(max − min) per feature, fitted on the training set
    (training values land in [0, 1]); a constant feature gets range 1.
    """

    def fit(self, x: torch.Tensor) -> "MinMaxScale":
        self.min = x.min(dim=0).values
        span = x.max(dim=0).values - self.min
        self.span = torch.where(span > 0, span, torch.ones_like(span))
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.min) / self.span


SCALERS = {"none": NoScaling, "standardize": Standardize, "minmax": MinMaxScale}


def make_scaler(name: str):
    """An unfitted scaler: ``make_scaler("standardize").fit(X_train).transform(X_val)``."""
    return lookup("scaling", SCALERS, name)()
