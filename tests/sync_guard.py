"""A guard for the record path's device discipline, usable on a CPU-only machine.

:class:`NoSync` is a ``TorchFunctionMode`` that refuses every operation that forces a CUDA
host–device synchronisation (``bincount``, ``nonzero``, ``item``, ``unique``,
``masked_select``, boolean-mask indexing, ``tolist``, ``bool(t)``/``float(t)``,
``repeat_interleave`` without ``output_size``) and counts host transfers (``.cpu()``,
``.to("cpu")``). Code that passes under it makes no sync on a GPU except the transfers it
counts. Only calls made by dyntrace count: an operation is judged by its nearest caller
outside torch, so a training loop (or ``torch.optim.Adam`` reading its CPU step count) may
do what it likes, while dyntrace's hooks, probes and recorder may not.
"""

from __future__ import annotations

import os
import sys

import torch
from torch.overrides import TorchFunctionMode

import dyntrace

__all__ = ["NoSync", "SyncError"]


class SyncError(AssertionError):
    """An operation that would force a host–device synchronisation."""


_FORBIDDEN = {
    torch.bincount,
    torch.Tensor.bincount,
    torch.nonzero,
    torch.Tensor.nonzero,
    torch.argwhere,
    torch.Tensor.argwhere,
    torch.Tensor.item,
    torch.Tensor.tolist,
    torch.unique,
    torch.Tensor.unique,
    torch.unique_consecutive,
    torch.Tensor.unique_consecutive,
    torch.masked_select,
    torch.Tensor.masked_select,
    torch.Tensor.__bool__,
    torch.Tensor.__float__,
    torch.Tensor.__int__,
    torch.Tensor.__index__,
    torch.Tensor.__complex__,
}


def _is_bool_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


class NoSync(TorchFunctionMode):
    """Fails on sync-forcing operations; counts host transfers in ``transfers``."""

    def __init__(self):
        super().__init__()
        self.transfers = 0
        self._host_copy = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not _called_by_dyntrace():
            return func(*args, **kwargs)
        if func in _FORBIDDEN:
            raise SyncError(f"{getattr(func, '__qualname__', func)} forces a host-device sync")
        if (
            func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__)
            and len(args) > 1
            and _is_bool_index(args[1])
        ):
            raise SyncError(
                "boolean-mask indexing forces a host-device sync (its result size depends on the data)"
            )
        if func in (torch.repeat_interleave, torch.Tensor.repeat_interleave):
            repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
            if isinstance(repeats, torch.Tensor) and kwargs.get("output_size") is None:
                raise SyncError("repeat_interleave with tensor repeats and no output_size forces a sync")
        to_host = func is torch.Tensor.cpu or (func is torch.Tensor.to and _targets_cpu(args, kwargs))
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and args and args[0] is not self._host_copy:
            # np.asarray(t) goes through __array__, whose inner .numpy() this mode never sees:
            # on a GPU both raise for a device tensor
            raise SyncError(".numpy() of a tensor that was not just copied to the host with .cpu()")
        result = func(*args, **kwargs)
        if to_host:
            self.transfers += 1
            self._host_copy = result
        return result


_DYNTRACE = os.path.dirname(os.path.abspath(dyntrace.__file__)) + os.sep
_TORCH = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


def _called_by_dyntrace() -> bool:
    """Whether the nearest caller outside torch (and this module) is dyntrace's code."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if filename.startswith(_TORCH) or filename == os.path.abspath(__file__):
            frame = frame.f_back
            continue
        return filename.startswith(_DYNTRACE)
    return False


def _targets_cpu(args, kwargs) -> bool:
    """``.to("cpu")`` spelled out: a copy to the host. (``.to(device)`` with a device object
    moves summaries to where the model lives: on a CPU machine that is the CPU too, so it
    cannot be told apart here; it is no host copy on a GPU run.)"""
    target = kwargs.get("device", args[1] if len(args) > 1 else None)
    return isinstance(target, str) and target.startswith("cpu")
