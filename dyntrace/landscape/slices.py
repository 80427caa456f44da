"""Loss on lines and planes through parameter space (Li et al. 2018).

- ``plane``: θ_c + x·δ + y·η on a grid, δ and η filter-normalised Gaussian directions;
- ``slice_1d``: θ_c + t·δ along one such direction;
- ``line``: (1 − t)·θ_start + t·θ_end, t ∈ [0, 1] (Goodfellow et al.'s interpolation).

All evaluate ``loss_fn(model(inputs), targets)`` in eval mode on one fixed batch, under
``torch.no_grad()``, without modifying the model (see ``dyntrace.landscape.evaluate``).

Reference: H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss Landscape
of Neural Nets", NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from dyntrace.landscape.directions import check_ignore, filter_normalised
from dyntrace.landscape.evaluate import check_method, evaluate
from dyntrace.landscape.params import as_param_list
from dyntrace.landscape.results import LineResult, PlaneResult

__all__ = ["plane", "line", "slice_1d"]


def check_count(n, what: str) -> int:
    """``n`` as an int ≥ 2 (points along one axis)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"{what} must be an int ≥ 2, got {n!r}")
    return int(n)


def check_resolution(resolution) -> tuple[int, int]:
    """``resolution`` as (nx, ny), each an int ≥ 2."""
    try:
        nx, ny = resolution
    except (TypeError, ValueError):
        raise ValueError(f"resolution must be a pair (nx, ny), got {resolution!r}") from None
    return check_count(nx, "resolution[0] (nx)"), check_count(ny, "resolution[1] (ny)")


def symmetric_coordinates(span: float, n: int) -> np.ndarray:
    """(n,) evenly spaced coordinates from −span to span, exactly symmetric: the ends are ±span
    and, for odd n, the middle is exactly 0 (so the grid contains the centre itself)."""
    if not np.isfinite(span) or span <= 0:
        raise ValueError(f"span must be a positive number, got {span!r}")
    return span * (2 * np.arange(n) - (n - 1)) / (n - 1)


def _current(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach() for _, p in model.named_parameters()]


def _described(meta: dict, batch, metric, info: dict) -> dict:
    """``meta`` plus what every slice records: batch size, metric name, evaluation info."""
    inputs = batch[0]
    size = int(inputs.shape[0]) if isinstance(inputs, torch.Tensor) and inputs.ndim else None
    name = None if metric is None else getattr(metric, "__name__", type(metric).__name__)
    return {**meta, "batch_size": size, "metric": None if name == "<lambda>" else name, **info}


def evaluate_plane(
    model, loss_fn, batch, center, directions, x, y, *, method, chunk_size, metric, meta, evaluator=evaluate
) -> PlaneResult | None:
    """Loss at center + x[j]·directions[0] + y[i]·directions[1] for every (i, j), as a PlaneResult.

    ``evaluator`` has :func:`dyntrace.landscape.evaluate.evaluate`'s signature; one that
    splits the points over ranks returns None where it holds no result (then so does this).
    """
    gx, gy = np.meshgrid(x, y)  # [ny, nx]; raveled row by row, so point n = i·nx + j
    coefs = np.column_stack([np.ones(gx.size), gx.ravel(), gy.ravel()])
    result = evaluator(
        model,
        loss_fn,
        batch,
        [center, *directions],
        coefs,
        method=method,
        chunk_size=chunk_size,
        metric=metric,
    )
    if result is None:
        return None
    shape = (len(y), len(x))
    return PlaneResult(
        x=x,
        y=y,
        loss=result.loss.reshape(shape),
        acc=None if result.metric is None else result.metric.reshape(shape),
        meta=_described({**meta, "resolution": [len(x), len(y)]}, batch, metric, result.info),
        directions=tuple(directions),
    )


def plane(
    model: nn.Module,
    loss_fn: Callable,
    batch,
    *,
    span: float = 1.0,
    resolution: tuple[int, int] = (51, 51),
    seed: int = 0,
    ignore: str | None = "biasbn",
    directions: Sequence | None = None,
    center=None,
    method: str = "auto",
    chunk_size: int | None = None,
    metric: Callable | None = None,
) -> PlaneResult:
    """Loss on the plane θ_c + x·δ + y·η, x, y ∈ [−span, span] (Li et al. 2018, Fig. 1–5).

    Args:
        model: the network; only read (parameters, buffers, flags and modes are untouched).
        loss_fn: ``loss_fn(model(inputs), targets)`` → scalar tensor.
        batch: ``(inputs, targets)``; the loss is the eval-mode loss on this batch.
        span: half-width of the grid in units of the directions (default 1.0, Li et al.'s −1:1).
        resolution: (nx, ny) grid points along δ and η (default (51, 51)); odd counts put
            the centre itself on the grid at (0, 0).
        seed: seed of the random directions (default 0).
        ignore: "biasbn" (default): biases and normalisation parameters get a zero
            direction; None: they are normalised as whole vectors.
        directions: (δ, η) to use instead of random ones, each a state dict or list of
            tensors in ``named_parameters()`` order, taken as given (not normalised).
        center: θ_c as a module, state dict or tensor list; default the model's parameters.
            Random directions are filter-normalised against θ_c.
        method: "auto" (default), "vmap" or "sequential"; see ``dyntrace.landscape.evaluate``.
        chunk_size: grid points per vmap chunk; default from a memory bound.
        metric: optional ``metric(model(inputs), targets)`` → scalar tensor, e.g. accuracy;
            stored as ``acc``.

    Returns:
        PlaneResult: ``x`` (nx,), ``y`` (ny,), ``loss`` (ny, nx) with ``loss[i, j]`` at
        (x[j], y[i]), optional ``acc``, ``directions`` (δ, η) and ``meta`` (kind
        "random_plane", seed, normalisation, ignore, span, resolution, method, timings).
    """
    theta, chosen, x, y, meta = plane_inputs(
        model,
        span=span,
        resolution=resolution,
        seed=seed,
        ignore=ignore,
        directions=directions,
        center=center,
        method=method,
    )
    return evaluate_plane(
        model,
        loss_fn,
        batch,
        theta,
        chosen,
        x,
        y,
        method=method,
        chunk_size=chunk_size,
        metric=metric,
        meta=meta,
    )


def plane_inputs(model, *, span, resolution, seed, ignore, directions, center, method):
    """Checked arguments of :func:`plane` → (θ_c, (δ, η), x, y, meta), shared by its variants."""
    nx, ny = check_resolution(resolution)
    x, y = symmetric_coordinates(span, nx), symmetric_coordinates(span, ny)
    check_method(method)
    check_ignore(ignore)
    theta = _current(model) if center is None else as_param_list(model, center, "center")
    if directions is None:
        chosen = filter_normalised(theta, seed=seed, ignore=ignore, count=2)
    else:
        if len(directions) != 2:
            raise ValueError(f"directions must be a pair (δ, η), got {len(directions)} items")
        chosen = tuple(as_param_list(model, d, f"directions[{i}]") for i, d in enumerate(directions))
    meta = {
        "kind": "random_plane",
        "seed": seed if directions is None else None,
        "normalisation": "filter" if directions is None else None,
        "ignore": ignore if directions is None else None,
        "directions": "random" if directions is None else "given",
        "center": "model" if center is None else "given",
        "span": float(span),
    }
    return theta, chosen, x, y, meta


def _line_result(model, loss_fn, batch, bases, coefs, t, *, method, chunk_size, metric, meta) -> LineResult:
    result = evaluate(
        model, loss_fn, batch, bases, coefs, method=method, chunk_size=chunk_size, metric=metric
    )
    return LineResult(
        t=t,
        loss=result.loss,
        acc=result.metric,
        meta=_described({**meta, "steps": len(t)}, batch, metric, result.info),
    )


def line(
    model: nn.Module,
    loss_fn: Callable,
    batch,
    start,
    end,
    steps: int = 51,
    *,
    method: str = "auto",
    chunk_size: int | None = None,
    metric: Callable | None = None,
) -> LineResult:
    """Loss along the segment θ(t) = (1 − t)·θ_start + t·θ_end, t = 0, 1/(steps−1), …, 1.

    Both ends are included and exact: θ(0) is ``start`` and θ(1) is ``end`` bit for bit, so
    ``loss[0]`` and ``loss[-1]`` are the model's losses there. Typical use: initial → final
    weights, or between two checkpoints.

    Args:
        model: supplies the architecture and buffers; only read.
        loss_fn, batch, method, chunk_size, metric: as for ``plane``.
        start, end: modules, state dicts or tensor lists in ``named_parameters()`` order.
        steps: number of points, ≥ 2 (default 51).

    Returns:
        LineResult with ``t`` (steps,) in [0, 1], ``loss`` (steps,), optional ``acc`` and
        ``meta`` (kind "line").
    """
    steps = check_count(steps, "steps")
    check_method(method)
    t = np.arange(steps) / (steps - 1)
    bases = [as_param_list(model, start, "start"), as_param_list(model, end, "end")]
    return _line_result(
        model,
        loss_fn,
        batch,
        bases,
        np.column_stack([1 - t, t]),
        t,
        method=method,
        chunk_size=chunk_size,
        metric=metric,
        meta={"kind": "line"},
    )


def slice_1d(
    model: nn.Module,
    loss_fn: Callable,
    batch,
    *,
    span: float = 1.0,
    steps: int = 51,
    seed: int = 0,
    ignore: str | None = "biasbn",
    method: str = "auto",
    chunk_size: int | None = None,
    metric: Callable | None = None,
) -> LineResult:
    """Loss along θ + t·δ, t ∈ [−span, span], δ one filter-normalised Gaussian direction.

    The 1-D counterpart of ``plane`` (Li et al. 2018, §4); δ is the first direction
    ``plane`` would draw with the same seed. Arguments as for ``plane``; ``steps`` points
    (default 51; odd puts t = 0 on the grid). Returns a LineResult with ``t`` (steps,),
    ``loss``, optional ``acc`` and ``meta`` (kind "slice_1d").
    """
    t = symmetric_coordinates(span, check_count(steps, "steps"))
    check_method(method)
    check_ignore(ignore)
    theta = _current(model)
    (direction,) = filter_normalised(theta, seed=seed, ignore=ignore, count=1)
    meta = {
        "kind": "slice_1d",
        "seed": seed,
        "normalisation": "filter",
        "ignore": ignore,
        "span": float(span),
    }
    return _line_result(
        model,
        loss_fn,
        batch,
        [theta, direction],
        np.column_stack([np.ones_like(t), t]),
        t,
        method=method,
        chunk_size=chunk_size,
        metric=metric,
        meta=meta,
    )
