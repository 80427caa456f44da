"""Loss landscapes on several processes: the grid points are split across the ranks.

Li et al. (2018) spread the grid of a surface over MPI workers; here the ranks of an
initialised ``torch.distributed`` process group (gloo or NCCL) do. Every rank calls the same
function with the same model, batch and options; each evaluates a contiguous block of the
grid's points (the blocks differ in size by at most one point) with
:func:`dyntrace.landscape.evaluate.evaluate`, and rank 0 gathers the values and returns the
whole result (other ranks return None). The values are those of the single-process
``plane``/``line``: the points, directions and evaluation are the same, only who computes
which point differs; with the same ``method`` each point is computed by the same code on
the same tensors ("auto" lets each rank time and pick its own method, equal to rounding).

Before evaluating, the ranks check (one small all-reduce) that they hold the same batch,
centre and directions (float64 sums), so a rank with other data fails loudly on every rank
rather than drawing a patchwork surface.

Reference: H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss Landscape
of Neural Nets", NeurIPS 2018 (their ``plot_surface.py --mpi``).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dyntrace.landscape.evaluate import Evaluation, check_method
from dyntrace.landscape.evaluate import evaluate as evaluate_local
from dyntrace.landscape.params import as_param_list
from dyntrace.landscape.results import LineResult, PlaneResult
from dyntrace.landscape.slices import _described, check_count, evaluate_plane, plane_inputs

__all__ = ["evaluate", "plane", "line", "split"]


def split(n: int, world_size: int) -> list[tuple[int, int]]:
    """[start, stop) of each rank's block of ``n`` points: contiguous, sizes differ by ≤ 1."""
    bounds = [n * r // world_size for r in range(world_size + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _require_group(group):
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "dyntrace.landscape.distributed needs an initialised torch.distributed process group "
            "(torch.distributed.init_process_group)"
        )
    return dist.get_rank(group), dist.get_world_size(group)


def _check_same_everywhere(group, batch, bases) -> None:
    """Raise on every rank if the ranks hold different batches or bases (one all-reduce)."""
    tensors = [t for t in batch if isinstance(t, torch.Tensor)] + [t for basis in bases for t in basis]
    sums = (
        torch.stack([t.detach().double().sum().cpu() for t in tensors])
        if tensors
        else torch.zeros(0, dtype=torch.float64)
    )
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend(group) == "nccl"
        else torch.device("cpu")
    )
    both = torch.cat([sums, -sums]).to(device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group)
    both = both.cpu()
    hi, lo = both[: len(sums)], -both[len(sums) :]
    if not torch.equal(hi, lo):
        raise ValueError(
            "the ranks hold different batches, models or directions: "
            "every rank must pass the same ones to a distributed landscape"
        )


def evaluate(
    model: nn.Module,
    loss_fn: Callable,
    batch,
    bases: Sequence[Sequence[torch.Tensor]],
    coefs: np.ndarray,
    *,
    method: str = "auto",
    chunk_size: int | None = None,
    metric: Callable | None = None,
    group=None,
) -> Evaluation | None:
    """:func:`dyntrace.landscape.evaluate.evaluate` with the rows of ``coefs`` split over the ranks.

    Every rank of ``group`` (default: the world) calls it with the same arguments. Returns
    the whole ``Evaluation`` on rank 0 (``info`` adds ``ranks``, ``points_per_rank``,
    ``methods`` per rank and ``seconds`` as wall time), None on the others.
    """
    rank, world = _require_group(group)
    check_method(method)
    coefs = np.asarray(coefs, dtype=np.float64)
    if coefs.ndim != 2 or coefs.shape[1] != len(bases):
        raise ValueError(f"coefs has shape {coefs.shape}, expected (N, {len(bases)})")
    _check_same_everywhere(group, batch, bases)
    began = time.perf_counter()
    start, stop = split(len(coefs), world)[rank]
    mine = None
    if stop > start:
        mine = evaluate_local(
            model,
            loss_fn,
            batch,
            bases,
            coefs[start:stop],
            method=method,
            chunk_size=chunk_size,
            metric=metric,
        )
    part = None if mine is None else (mine.loss, mine.metric, mine.info)
    parts = [None] * world if rank == 0 else None
    # Pickled: a block of floats per rank, any backend; the one collective after the check.
    dist.gather_object(part, parts, dst=0 if group is None else dist.get_global_rank(group, 0), group=group)
    if rank != 0:
        return None
    done = [p for p in parts if p is not None]
    loss = np.concatenate([p[0] for p in done])
    values = None if metric is None else np.concatenate([p[1] for p in done])
    methods = [None if p is None else p[2]["method"] for p in parts]
    used = {m for m in methods if m is not None}
    info = {
        "method": used.pop() if len(used) == 1 else "mixed",
        "methods": methods,
        "ranks": world,
        "points_per_rank": [b - a for a, b in split(len(coefs), world)],
        "chunk_size": max((p[2].get("chunk_size", 0) for p in done), default=0),
        "seconds": time.perf_counter() - began,
        "seconds_per_point": (time.perf_counter() - began) / max(len(coefs), 1),
        "rank_seconds": [None if p is None else p[2]["seconds"] for p in parts],
    }
    return Evaluation(loss, values, info)


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
    group=None,
    path=None,
    name: str = "plane",
) -> PlaneResult | None:
    """:func:`dyntrace.landscape.plane` with its grid points split over the ranks.

    Arguments as for ``plane`` (every rank passes the same ones; the random directions are
    drawn from a private seeded generator, so every rank draws the same), plus ``group``
    (default: the world) and, optionally, ``path``: a closed run file to which rank 0 adds
    the result as ``/landscape/<name>``. Returns the PlaneResult on rank 0, None elsewhere;
    ``meta`` adds ``ranks`` and ``points_per_rank``.
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
    evaluator = functools.partial(evaluate, group=group)
    plane_result = evaluate_plane(
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
        evaluator=evaluator,
    )
    if plane_result is None:
        return None
    if path is not None:
        _write(path, name, plane_result)
    return plane_result


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
    group=None,
    path=None,
    name: str = "line",
) -> LineResult | None:
    """:func:`dyntrace.landscape.line` (θ(t) = (1 − t)·θ_start + t·θ_end) split over the ranks.

    Arguments as for ``line`` plus ``group``, ``path`` and ``name`` as for :func:`plane`.
    Returns the LineResult on rank 0, None elsewhere.
    """
    steps = check_count(steps, "steps")
    check_method(method)
    t = np.arange(steps) / (steps - 1)
    bases = [as_param_list(model, start, "start"), as_param_list(model, end, "end")]
    result = evaluate(
        model,
        loss_fn,
        batch,
        bases,
        np.column_stack([1 - t, t]),
        method=method,
        chunk_size=chunk_size,
        metric=metric,
        group=group,
    )
    if result is None:
        return None
    line_result = LineResult(
        t=t,
        loss=result.loss,
        acc=result.metric,
        meta=_described({"kind": "line", "steps": steps}, batch, metric, result.info),
    )
    if path is not None:
        _write(path, name, line_result)
    return line_result


def _write(path, name: str, result) -> None:
    """Rank 0 adds the result to a closed run file (the format module owns the layout)."""
    from dyntrace.io import format as fmt

    fmt.write_landscape(os.fspath(path), name, result.to_arrays(), result.meta)
