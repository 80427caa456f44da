"""dyntrace: record the training dynamics of PyTorch models to HDF5 and draw them.

The recording side (``Recorder``) needs torch; the reading side (``open_run``, plots,
analysis) does not. Names are resolved lazily so that reading a run never imports torch.
"""

from importlib import import_module

__version__ = "0.1.0"

__all__ = ["Recorder", "open_run", "Run", "train", "schedules", "DyntraceError", "__version__"]

_LAZY = {
    "Recorder": ("dyntrace.recorder", "Recorder"),
    "open_run": ("dyntrace.io.reader", "open_run"),
    "Run": ("dyntrace.io.reader", "Run"),
    "train": ("dyntrace.trainer", "train"),
    "DyntraceError": ("dyntrace.errors", "DyntraceError"),
}


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    if name in {"schedules", "analysis", "plots", "landscape", "catalog", "probes", "io"}:
        return import_module(f"dyntrace.{name}")
    raise AttributeError(f"module 'dyntrace' has no attribute {name!r}")
