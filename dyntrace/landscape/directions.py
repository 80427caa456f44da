"""Filter-normalised Gaussian random directions (Li et al. 2018, §4).

A direction is a list of tensors, one per parameter, in ``model.named_parameters()`` order.
Each entry is drawn from N(0, 1) and rescaled so that the landscape is comparable across
networks whose weights have different scales:

- a parameter with ≥ 2 dimensions is normalised per output filter (conv) / output unit
  (linear), i.e. per slice along dim 0: d_i ← d_i / ‖d_i‖ · ‖θ_i‖;
- a parameter with ≤ 1 dimension (biases, normalisation weights and biases) gets a zero
  direction with ``ignore="biasbn"`` (Li et al.'s default), or is normalised once as a whole
  vector, d ← d / ‖d‖ · ‖θ‖, with ``ignore=None``. (Li et al.'s code copies θ itself there;
  loss-landscapes 3.0.6 normalises it twice.)

Reference: H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss Landscape
of Neural Nets", NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["random_directions", "IGNORE_CHOICES"]

IGNORE_CHOICES = ("biasbn", None)

# Guards the division for a direction slice that is exactly zero (Li et al. use the same).
_EPS = 1e-10


def check_ignore(ignore) -> None:
    if ignore not in IGNORE_CHOICES:
        raise ValueError(f"ignore must be one of {IGNORE_CHOICES}, got {ignore!r}")


def filter_normalised(
    params: Sequence[torch.Tensor], *, seed: int, ignore: str | None, count: int
) -> tuple[list[torch.Tensor], ...]:
    """``count`` directions normalised against ``params`` (see the module docstring)."""
    check_ignore(ignore)
    # Drawn on the CPU from a private generator: the same seed gives the same directions on
    # every device, and the global RNG is left alone.
    generator = torch.Generator().manual_seed(seed)
    directions = []
    for _ in range(count):
        direction = []
        for p in params:
            w = p.detach()
            d = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
            if w.ndim <= 1:
                d = torch.zeros_like(w) if ignore == "biasbn" else d * (w.norm() / (d.norm() + _EPS))
            else:
                w_norms = w.reshape(len(w), -1).norm(dim=1)
                d_norms = d.reshape(len(d), -1).norm(dim=1)
                d = d * (w_norms / (d_norms + _EPS)).view(-1, *[1] * (w.ndim - 1))
            direction.append(d)
        directions.append(direction)
    return tuple(directions)


def random_directions(
    model: nn.Module, *, seed: int = 0, ignore: str | None = "biasbn", count: int = 2
) -> tuple[list[torch.Tensor], ...]:
    """Filter-normalised Gaussian directions around the model's current parameters.

    Args:
        model: the module; only read.
        seed: seed of the private CPU generator the directions are drawn from (default 0);
            the directions are drawn one after the other, parameter by parameter.
        ignore: "biasbn" (default) gives parameters with ≤ 1 dimension a zero direction;
            None normalises them as whole vectors.
        count: number of directions (default 2, the two axes of a plane).

    Returns:
        A tuple of ``count`` directions; each is a list of tensors shaped, typed and placed
        like ``model.named_parameters()``.
    """
    if count < 1:
        raise ValueError(f"count must be ≥ 1, got {count!r}")
    return filter_normalised([p for _, p in model.named_parameters()], seed=seed, ignore=ignore, count=count)
