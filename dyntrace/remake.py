"""Re-making a run of ``dyntrace train`` from its own file, to compute what it did not store.

The run file of ``dyntrace train`` holds its whole config (nanoGPT's habit: a run can be
re-made from its artefact) and, with ``--trajectory N``, its parameters along the way. This
module rebuilds the model and data from the config, puts the recorded weights back and
computes the loss-landscape slices of :mod:`dyntrace.landscape.store` (``dyntrace
landscape``). It belongs to the trainer's side: the landscape package slices any model and
knows neither the trainer nor the catalog.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dyntrace.errors import ConfigError, DyntraceError, MissingDataError, RunFileError
from dyntrace.landscape.results import LineResult, PlaneResult
from dyntrace.landscape.store import _SHARED, KINDS, normalize_options

__all__ = ["landscape_of_run"]

_REMAKE = "make the run with `dyntrace train ... --trajectory N` (or --landscape)"
_OWN = "for a run of your own loop, call dyntrace.landscape.for_run(RUN, model, loss_fn, batch) in Python"


@dataclass
class _Stored:
    """What the run file says: its train config, its trajectory and whether early stopping chose weights."""

    config: object  # dyntrace.trainer.TrainConfig
    steps: np.ndarray
    names: list[str]
    flat: np.ndarray
    extra: dict


def landscape_of_run(
    path,
    kinds: Sequence[str] | None = None,
    *,
    resolution: int | None = None,
    span: float | None = None,
    seed: int | None = None,
) -> dict[str, PlaneResult | LineResult]:
    """Compute and store slices for a run made by ``dyntrace train`` with a trajectory.

    The model and data are rebuilt from the config stored in the file
    (:meth:`dyntrace.trainer.TrainConfig.from_dict`); the final weights are the trajectory's
    last record (or the best one early stopping restored) and the initial weights its first.
    The options are those of the run's ``landscape`` config where it had one, else the
    defaults, with ``resolution`` (every slice: grid points per axis, points on the line),
    ``span`` and ``seed`` (the random plane) on top. A model with BatchNorm gets its running
    statistics re-estimated on the training set at the final weights (the file does not hold
    buffers); the attribute ``buffers`` says so.

    Args:
        path: the run file; its ``/landscape/<name>`` groups are added or replaced.
        kinds: slices among "plane", "line", "trajectory" (default: all three).
        resolution, span, seed: options on top of the run's own (default: the run's).

    Returns:
        ``{name: result}``, as written.

    Raises:
        MissingDataError: the file has no train config or no trajectory (with what to do).
        RunFileError: not a readable run file, or it is still being written.
    """
    path = os.fspath(path)
    kinds = _kinds(kinds)
    stored = _read(path)
    options = _options(stored.config, kinds, resolution=resolution, span=span, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stored.config.seed)
        job, buffers = _rebuild(stored, path)
        initial = None
        if "line" in options:
            named = dict(zip(stored.names, _split(stored.flat[0], job.model, stored.names)))
            initial = [named[name] for name, _ in job.model.named_parameters()]
        return job.landscape(
            options,
            initial=initial,
            trajectory=(stored.steps, stored.names, stored.flat),
            step=int(stored.steps[-1]),
            extra={"buffers": buffers, **stored.extra},
            path=path,
        )


def _kinds(kinds) -> list[str]:
    kinds = list(KINDS if not kinds else kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown slice {bad[0]!r}; valid: {', '.join(KINDS)}")
    return kinds


def _read(path: str) -> _Stored:
    """The config and trajectory of a finished ``dyntrace train`` run, ended where early
    stopping put the weights back; one clear error for any other file."""
    from dyntrace.io.reader import open_run
    from dyntrace.trainer import TrainConfig

    with open_run(path) as run:
        config, closed = run.config, run.closed_cleanly
        try:
            trajectory = run.trajectory()
        except MissingDataError:
            trajectory = None
        val_loss = (
            run.scalar("val_loss")
            if "early_stop" in run.scalar_names and "val_loss" in run.scalar_names
            else None
        )
    if not config:
        raise MissingDataError(
            f"{path}: no training config, so not a run of `dyntrace train` "
            f"(which `dyntrace landscape` rebuilds); {_OWN}"
        )
    try:
        config = TrainConfig.from_dict(config)
    except ConfigError as exc:
        raise MissingDataError(
            f"{path}: not a run of `dyntrace train` ({exc}), which `dyntrace landscape` rebuilds; {_OWN}"
        ) from None
    if not closed:
        raise RunFileError(
            f"{path}: the run is still being written or was interrupted; wait for it to finish"
        )
    if trajectory is None:
        raise MissingDataError(f"{path}: no parameter trajectory, so no initial and final weights; {_REMAKE}")
    steps, names, flat = trajectory
    if len(steps) < 2:
        raise MissingDataError(
            f"{path}: the trajectory holds {len(steps)} record(s), 2 or more are needed; {_REMAKE}"
        )
    extra = {"start_step": int(steps[0]), "source": "trajectory"}
    if val_loss is not None and config.early_stopping is not None:
        best = _best_step(*val_loss, config.early_stopping_min_delta)
        if best in steps:  # the weights early stopping put back: end the trajectory there
            keep = steps <= best
            steps, flat = steps[keep], flat[keep]
            extra["weights"] = f"best val_loss at step {best} (restored by early stopping)"
        else:
            extra["weights"] = (
                f"last trajectory record; early stopping restored the weights of step {best}, "
                "which the trajectory did not keep"
            )
    return _Stored(config, steps, names, flat, extra)


def _options(config, kinds, *, resolution, span, seed) -> dict:
    """The run's own landscape options for ``kinds``, with the command line's on top."""
    base = dict(config.landscape or {})
    asked = {kind: dict(base.get(kind) or {}) for kind in kinds}
    for kind, options in asked.items():
        if resolution is not None:
            options["steps" if kind == "line" else "resolution"] = resolution
        if kind == "plane" and span is not None:
            options["span"] = span
        if kind == "plane" and seed is not None:
            options["seed"] = seed
    return normalize_options({**asked, **{k: base[k] for k in _SHARED if k in base}})


def _rebuild(stored: _Stored, path: str):
    """The run's model and data rebuilt from its config, at its final weights; BatchNorm's
    running statistics re-estimated (the file holds no buffers). Returns (job, buffers note)."""
    from dyntrace.trainer import build

    job = build(stored.config)
    _final_weights(job.model, stored.names, stored.flat[-1], path)
    buffers = "trained"
    if _recompute_running_stats(job.model, job.data["train"][0], stored.config.batch_size):
        buffers = "running statistics re-estimated on the training set at the final weights"
    return job, buffers


def _final_weights(model: nn.Module, names: list[str], final: np.ndarray, path: str) -> None:
    from dyntrace.landscape.params import unflatten

    params = dict(model.named_parameters())
    if list(params) != names:
        raise DyntraceError(
            f"{path}: the trajectory's parameters ({len(names)}) do not match the model rebuilt from the config "
            f"({len(params)}); was the run made by another dyntrace version?"
        )
    try:
        values = unflatten(model, final, names)
    except ValueError as exc:
        raise DyntraceError(
            f"{path}: the trajectory does not fit the model rebuilt from the config ({exc})"
        ) from None
    with torch.no_grad():
        for name, value in values.items():
            params[name].copy_(value)


def _recompute_running_stats(model: nn.Module, inputs: torch.Tensor, batch_size: int) -> bool:
    """Running statistics of the normalisation layers, re-estimated at the current weights.

    A run file holds the parameters but not the buffers, so BatchNorm's running mean and
    variance are estimated again with one pass over ``inputs`` (the training set) in train
    mode with a cumulative average (momentum None), as ``torch.optim.swa_utils.update_bn``
    does; other modules (dropout) stay in eval mode. Returns whether there were any.
    """
    norms = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats
    ]
    if not norms:
        return False
    model.eval()
    momenta = {}
    for m in norms:
        momenta[m] = m.momentum
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        for first in range(0, len(inputs), batch_size):
            model(inputs[first : first + batch_size])
    for m in norms:
        m.momentum = momenta[m]
    model.eval()
    return True


def _best_step(steps: np.ndarray, values: np.ndarray, min_delta: float) -> int:
    """The step of the evaluation ``EarlyStopping`` keeps as best (an improvement beats the best by > min_delta)."""
    best, best_step = float("inf"), int(steps[0])
    for step, value in zip(steps.tolist(), values.tolist()):
        if value < best - min_delta:
            best, best_step = value, step
    return best_step


def _split(flat: np.ndarray, model: nn.Module, names: list[str]) -> list[torch.Tensor]:
    from dyntrace.landscape.params import unflatten

    return list(unflatten(model, flat, names).values())
