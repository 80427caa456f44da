"""The gallery: reference experiments that regenerate the classic figures from real runs.

A new entry is one module plus one line in ``ENTRIES`` (its place sets its number).
"""

from __future__ import annotations

import difflib
import importlib

from dyntrace.errors import UnknownNameError

__all__ = ["ENTRIES", "entry", "names"]

ENTRIES = [
    "vanishing_sigmoid",
    "dying_relu",
    "noisy_minibatch",
    "plateaus",
    "optimizer_paths",
    "ewma",
    "lr_schedules",
    "init_histograms",
    "batchnorm",
    "overfitting",
    "step_sizes",
    "adam_warmup_radam",
    "landscape",
    "random_landscapes",
    "lookahead",
    "hyperparameter_search",
    "feature_scaling",
    "activation_functions",
    "optimizer_comparison",
    "init_training",
    "learning_rates",
    "saddle_points",
    "l1_vs_l2",
    "norms_batch_size",
    "augmentation",
    "softmax_cross_entropy",
    "dropout",
    "edge_of_stability",
]


def names() -> list[str]:
    return list(ENTRIES)


def entry(name: str):
    """The module of a gallery entry, by name."""
    if name not in ENTRIES:
        close = difflib.get_close_matches(name, ENTRIES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown gallery entry {name!r}{hint} valid: {', '.join(ENTRIES)}")
    return importlib.import_module(f"dyntrace.gallery.{name}")
