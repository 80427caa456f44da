"""Parameter vectors: the order in which a model's parameters are flattened and read back.

A flat parameter vector is the concatenation of ``p.reshape(-1)`` for the parameters named in
``names``, in that order; ``names`` defaults to every name of ``model.named_parameters()`` (which
lists a shared parameter once). The recorder stores trajectories in this layout and
``trajectory_plane`` reads them back with ``unflatten``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["parameter_names", "flatten_params", "unflatten"]


def parameter_names(model: nn.Module) -> list[str]:
    """Names of ``model.named_parameters()``, in order: the default layout of a flat vector."""
    return [name for name, _ in model.named_parameters()]


def _named(model: nn.Module, names: Sequence[str] | None) -> list[tuple[str, torch.Tensor]]:
    params = dict(model.named_parameters())
    if names is None:
        return list(params.items())
    unknown = [name for name in names if name not in params]
    if unknown:
        raise KeyError(f"names {unknown} are not parameters of the model; it has {list(params)}")
    return [(name, params[name]) for name in names]


def flatten_params(model: nn.Module, names: Sequence[str] | None = None) -> torch.Tensor:
    """The model's parameters as one detached 1-D tensor (a copy), on their device.

    Args:
        model: the module; it is only read.
        names: parameter names to include, in this order; default ``parameter_names(model)``.

    Returns:
        (D,) tensor, D = total number of elements of the named parameters.
    """
    return torch.cat([p.detach().reshape(-1) for _, p in _named(model, names)])


def unflatten(model: nn.Module, flat, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Split a flat vector (tensor or numpy array) back into ``{name: tensor}``.

    The tensors take the shape, dtype and device of the model's parameters of the same name.
    ``names`` must be the list the vector was flattened with (default: all parameters).
    Raises ValueError when the length does not match.
    """
    named = _named(model, names)
    if not isinstance(flat, torch.Tensor):
        flat = torch.from_numpy(np.asarray(flat))
    expected = sum(p.numel() for _, p in named)
    if flat.ndim != 1 or flat.numel() != expected:
        raise ValueError(
            f"flat vector has shape {tuple(flat.shape)}, expected ({expected},) for {len(named)} parameters"
        )
    out, offset = {}, 0
    for name, p in named:
        out[name] = flat[offset : offset + p.numel()].reshape(p.shape).to(device=p.device, dtype=p.dtype)
        offset += p.numel()
    return out


def as_param_list(model: nn.Module, point, what: str) -> list[torch.Tensor]:
    """A point of parameter space as detached tensors aligned with ``model.named_parameters()``.

    ``point`` is a module of the same architecture, a state dict (or any mapping containing
    every parameter name; buffers are ignored) or a sequence of tensors in
    ``named_parameters()`` order. ``what`` names the argument in error messages.
    """
    named = list(model.named_parameters())
    if isinstance(point, nn.Module):
        point = dict(point.named_parameters())
    if isinstance(point, Mapping):
        missing = [name for name, _ in named if name not in point]
        if missing:
            raise KeyError(f"{what} lacks parameters {missing}")
        values = [point[name] for name, _ in named]
    else:
        values = list(point)
        if len(values) != len(named):
            raise ValueError(f"{what} has {len(values)} tensors, the model has {len(named)} parameters")
    out = []
    for (name, p), value in zip(named, values):
        value = torch.as_tensor(value).detach()
        if value.shape != p.shape:
            raise ValueError(
                f"{what}[{name!r}] has shape {tuple(value.shape)}, the parameter has {tuple(p.shape)}"
            )
        out.append(value.to(device=p.device, dtype=p.dtype))
    return out
