"""Run files written out for other tools: ``dyntrace export RUN.h5 --tensorboard DIR``.

- :func:`dyntrace.export.tensorboard.to_tensorboard`: TensorBoard event files, written with the
  ``tensorboard`` package's own event-file writer (an optional extra; no torch, no TensorFlow).

Reading side: never imports torch.
"""

from importlib import import_module

__all__ = ["to_tensorboard"]


def __getattr__(name):
    if name == "to_tensorboard":
        return import_module("dyntrace.export.tensorboard").to_tensorboard
    raise AttributeError(f"module 'dyntrace.export' has no attribute {name!r}")
