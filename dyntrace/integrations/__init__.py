"""Thin adapters that record a run trained by a framework's own loop.

- :mod:`dyntrace.integrations.lightning`: ``DyntraceCallback`` for ``lightning.Trainer``;
- :mod:`dyntrace.integrations.transformers`: ``DyntraceCallback`` for ``transformers.Trainer``.

Each makes a :class:`dyntrace.Recorder` from the trainer's model and optimizer once both exist,
logs the training loss every step and the metrics the trainer computes at their steps, and
closes the run file when training ends or fails. The frameworks are optional: importing one of
these modules without its framework raises :class:`MissingDependencyError` saying what to install.
Importing ``dyntrace`` never imports them.
"""

from __future__ import annotations

import importlib

from dyntrace.errors import DyntraceError

__all__ = ["MissingDependencyError", "require", "unwrap_optimizer"]


class MissingDependencyError(DyntraceError, ImportError):
    """An optional framework an integration needs is not installed."""


def require(*modules: str, extra: str):
    """The first of ``modules`` that imports, or MissingDependencyError naming the extra to install."""
    for name in modules:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependencyError(
        f"this dyntrace integration needs {' or '.join(m.split('.')[0] for m in modules)}, which is not installed: "
        f"pip install 'dyntrace[{extra}]'"
    )


def unwrap_optimizer(optimizer):
    """The ``torch.optim.Optimizer`` inside framework wrappers (accelerate's ``AcceleratedOptimizer``,
    Lightning's ``LightningOptimizer``): the one whose ``step`` really runs and fires step hooks."""
    import torch

    seen = 0
    while seen < 8:
        inner = getattr(optimizer, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or inner is optimizer:
            break
        optimizer, seen = inner, seen + 1
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise DyntraceError(
            f"cannot record: the trainer's optimizer is a {type(optimizer).__name__}, not a torch.optim.Optimizer"
        )
    return optimizer
