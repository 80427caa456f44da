"""Loss landscapes of a run recorded in your own loop, stored in its run file.

    with dyntrace.Recorder(model, optimizer, "run.h5", every=10, trajectory=20) as rec:
        ...                                       # your loop
    dyntrace.landscape.for_run("run.h5", model, loss_fn, (x_val, y_val))
    # then: dyntrace plot run.h5  (draws the "landscapes" figure)

The run file gives the weights (the first and last records of the trajectory the Recorder
kept with ``trajectory=N``); the model (architecture and buffers) and the loss and data are
yours. ``dyntrace landscape RUN.h5`` can do this only for runs of ``dyntrace train``, which
it rebuilds from their stored config.

Reference: H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss Landscape
of Neural Nets", NeurIPS 2018.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from dyntrace.errors import DyntraceError, MissingDataError, RunFileError
from dyntrace.io import format as fmt
from dyntrace.io.reader import Run, open_run
from dyntrace.landscape.params import unflatten
from dyntrace.landscape.results import LineResult, PlaneResult
from dyntrace.landscape.slices import line, plane
from dyntrace.landscape.trajectory import trajectory_plane
from dyntrace.probes.base import unwrap

__all__ = ["for_run", "KINDS"]

KINDS = ("line", "plane", "trajectory")


def for_run(
    run_or_path,
    model: nn.Module,
    loss_fn: Callable,
    batch,
    kinds: Sequence[str] = KINDS,
    *,
    # grids
    resolution: int | tuple[int, int] = 21,
    steps: int = 21,
    # the random plane
    span: float = 1.0,
    seed: int = 0,
    ignore: str | None = "biasbn",
    # the trajectory plane
    margin: float = 0.2,
    # evaluation
    method: str = "auto",
    metric: Callable | None = None,
) -> dict[str, PlaneResult | LineResult]:
    """Compute loss-landscape slices of a recorded run and store them in its file.

    Every slice is evaluated with ``model``'s architecture and buffers in eval mode on
    ``batch`` (the model is never modified), at weights read from the run's trajectory
    (``Recorder(..., trajectory=N)``): θ₀ its first record, θ_T its last.

    - "line": loss on (1 − t)·θ₀ + t·θ_T, t ∈ [0, 1] (``/landscape/line``);
    - "plane": loss on θ_T + x·δ + y·η, δ, η filter-normalised Gaussian directions
      (``/landscape/plane``);
    - "trajectory": loss on the PCA plane of the recorded trajectory, with the path
      projected on it (``/landscape/trajectory``).

    Args:
        run_or_path: the run file, or a :class:`dyntrace.Run` of it (closed while the file
            is written, then reopened so it sees the slices). The run must have finished.
        model: the network the run trained, with the same parameter names (a DDP wrapper is
            unwrapped); parameters the trajectory does not hold keep their current values.
        loss_fn: ``loss_fn(model(inputs), targets)`` → scalar tensor.
        batch: ``(inputs, targets)``, the fixed evaluation batch.
        kinds: the slices to compute, among "line", "plane", "trajectory" (default all three).
        resolution: grid points per axis of the planes, an int or (nx, ny) (default 21).
        steps: points on the line (default 21).
        span: half-width of the random plane (default 1.0).
        seed: seed of the random plane's directions (default 0).
        ignore: "biasbn" (default): biases and norm parameters get a zero direction; None.
        margin: space around the trajectory's path on its plane, a fraction of its extent
            (default 0.2).
        method: "auto" (default), "vmap" or "sequential" (see ``dyntrace.landscape.evaluate``).
        metric: optional ``metric(outputs, targets)`` → scalar tensor (e.g. accuracy), stored
            as ``train_acc``.

    Returns:
        ``{name: result}`` as written, in the order of ``kinds``.

    Raises:
        MissingDataError: the run kept no trajectory (record with ``Recorder(..., trajectory=N)``).
        RunFileError: not a run file, or one still being written.
        DyntraceError: the model's parameters do not match the trajectory's.
    """
    kinds = _check_kinds(kinds)
    given = run_or_path if isinstance(run_or_path, Run) else None
    path = given.path if given is not None else os.fspath(run_or_path)
    steps_t, names, flat = _read(given, path, needs_two="line" in kinds or "trajectory" in kinds)
    model = unwrap(model)
    first, last = _points(model, names, flat, path)
    size = int(batch[0].shape[0]) if isinstance(batch[0], torch.Tensor) and batch[0].ndim else None
    extra = {
        "source": "dyntrace.landscape.for_run",
        "start_step": int(steps_t[0]),
        "loss": getattr(loss_fn, "__name__", None) or type(loss_fn).__name__,
        "batch": f"the batch given to for_run ({size} examples)"
        if size is not None
        else "the batch given to for_run",
        "buffers": "the model's own, as given to for_run (the run file holds no buffers)",
    }
    pair = (resolution, resolution) if isinstance(resolution, (int, np.integer)) else tuple(resolution)
    results = {}
    for kind in kinds:
        if kind == "line":
            results[kind] = line(model, loss_fn, batch, first, last, steps, method=method, metric=metric)
        elif kind == "plane":
            results[kind] = plane(
                model,
                loss_fn,
                batch,
                span=span,
                resolution=pair,
                seed=seed,
                ignore=ignore,
                center=last,
                method=method,
                metric=metric,
            )
        else:
            try:
                results[kind] = trajectory_plane(
                    (steps_t, names, flat),
                    model,
                    loss_fn,
                    batch,
                    resolution=pair,
                    margin=margin,
                    method=method,
                    metric=metric,
                )
            except ValueError as exc:  # a trajectory that never moved
                raise DyntraceError(f"{path}: no trajectory plane: {exc}") from None
    if given is not None:
        given.close()  # HDF5 refuses a writer while this process holds the file open for reading
    try:
        for name, result in results.items():
            _write(path, name, result, step=int(steps_t[-1]), extra=extra)
    finally:
        if given is not None:
            given.__init__(path)
    return results


def _check_kinds(kinds) -> list[str]:
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"Invalid kinds: {kinds!r} (expected one or more of {', '.join(KINDS)})")
    return list(dict.fromkeys(kinds))


def _read(run: Run | None, path: str, *, needs_two: bool):
    """(steps, names, flat) of the run's trajectory, checked."""
    if run is None:
        with open_run(path) as opened:
            return _read(opened, path, needs_two=needs_two)
    if not run.closed_cleanly:
        raise RunFileError(
            f"{path}: the run is still being written or was interrupted; close the Recorder first"
        )
    steps, names, flat = run.trajectory()  # MissingDataError names Recorder(..., trajectory=N)
    if len(steps) < (2 if needs_two else 1):
        raise MissingDataError(
            f"{path}: the trajectory holds {len(steps)} record(s); the line and the trajectory plane need 2 or more"
        )
    return steps, names, flat


def _points(
    model: nn.Module, names: list[str], flat: np.ndarray, path: str
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The first and last trajectory records as full parameter lists of ``model``."""
    params = dict(model.named_parameters())
    unknown = [name for name in names if name not in params]
    if unknown:
        raise DyntraceError(
            f"{path}: the model has no parameter {unknown[0]!r} that the run recorded "
            f"({len(unknown)} of {len(names)} missing); pass the model the run trained"
        )
    try:
        first, last = unflatten(model, flat[0], names), unflatten(model, flat[-1], names)
    except ValueError as exc:
        raise DyntraceError(
            f"{path}: the model's parameters do not match the run's trajectory ({exc})"
        ) from None
    return (
        [first.get(n, p.detach()) for n, p in params.items()],
        [last.get(n, p.detach()) for n, p in params.items()],
    )


def _write(path: str, name: str, result, *, step: int, extra: dict) -> None:
    """``/landscape/<name>`` with the attributes ``dyntrace landscape`` writes (see docs/format.md)."""
    attrs = {key: value for key, value in result.meta.items() if value is not None}
    if result.meta.get("ignore", "") is None:
        attrs["ignore"] = "none"  # a choice, not "not applicable"
    attrs["step"] = step
    if name == "line":
        attrs.update(normalisation="none", span=[0.0, 1.0], resolution=[len(result.t)], end_step=step)
    if name == "trajectory":
        path_steps = result.path_steps
        attrs.update(
            normalisation="unit",  # PCA directions are unit vectors: coordinates are distances
            directions="pca",
            explained_variance=[float(v) for v in result.explained_variance],
            extent=[float(result.x[0]), float(result.x[-1]), float(result.y[0]), float(result.y[-1])],
            stride=int(path_steps[1] - path_steps[0]) if len(path_steps) > 1 else 0,
        )
    attrs.update(extra)
    try:
        fmt.write_landscape(path, name, result.to_arrays(), attrs)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunFileError(
            f"{path}: cannot add /landscape/{name} ({first}); is the run still being written, or open elsewhere?"
        ) from None
