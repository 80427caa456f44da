"""The plane that best holds a recorded training trajectory, with the loss on it.

Li et al. (2018, §7) explain why random directions miss the optimisation path (two random
directions in high dimension are nearly orthogonal to it) and plot instead the loss on the
plane of the two leading principal directions of the checkpoints' deviations θ_i − θ_final,
with the trajectory projected onto it and the explained variance on the axes.

Here the components come from the SVD of the uncentred matrix M = [θ_i − θ_final] (numpy,
float64): the plane passes through θ_final, so "explained" refers to the squared distances
from θ_final that the drawn plane keeps, ratio_k = s_k² / Σ s². (Li et al. run sklearn's PCA,
which centres M on the mean checkpoint instead.) Components are unit vectors, so the
coordinates are Euclidean distances in parameter space; each is signed so that its largest
projected coordinate is positive.

Reference: H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss Landscape
of Neural Nets", NeurIPS 2018.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from dyntrace.landscape.evaluate import check_method
from dyntrace.landscape.params import unflatten
from dyntrace.landscape.results import PlaneResult
from dyntrace.landscape.slices import check_resolution, evaluate_plane

__all__ = ["trajectory_plane", "principal_plane"]


def _read(run_or_trajectory):
    if hasattr(run_or_trajectory, "trajectory"):
        run_or_trajectory = run_or_trajectory.trajectory()
    try:
        steps, names, flat = run_or_trajectory
    except (TypeError, ValueError):
        raise TypeError(
            "run_or_trajectory must be a run with .trajectory() or a tuple (steps, names, flat)"
        ) from None
    flat = np.asarray(flat, dtype=np.float64)
    if flat.ndim != 2 or len(flat) < 2 or flat.shape[1] < 2:
        raise ValueError(
            f"the trajectory must be a [T, D] array with T ≥ 2 records and D ≥ 2 values, got shape {flat.shape}"
        )
    steps = np.asarray(steps)
    if steps.shape != (len(flat),):
        raise ValueError(f"steps has shape {steps.shape}, expected ({len(flat)},): one step per record")
    return steps, list(names), flat


def principal_plane(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two leading directions of a trajectory's deviations from its last record.

    Args:
        flat: (T, D) parameter vectors, last row θ_final.

    Returns:
        components (2, D) orthonormal rows; ratios (2,) explained-variance ratios; path (T, 2)
        coordinates of (θ_i − θ_final) on the components (the last row is (0, 0)).
    """
    deviations = np.asarray(flat - flat[-1], dtype=np.float64)
    singular, components = _leading_components(deviations)
    total = np.sum(singular**2)
    if total == 0:
        raise ValueError("the trajectory never moves: every record equals the last one")
    path = deviations @ components.T
    # SVD signs are arbitrary: make each component's largest coordinate positive
    signs = np.sign(path[np.argmax(np.abs(path), axis=0), [0, 1]])
    signs[signs == 0] = 1
    return components * signs[:, None], singular[:2] ** 2 / total, path * signs


def _leading_components(deviations: np.ndarray):
    """(all singular values, the two leading right singular vectors [2, D]) of [T, D] data.

    With fewer records than parameters (the usual case) the eigenvectors of the small T×T
    Gram matrix give them at a fraction of a full SVD's cost (0.01 s against seconds for
    200 × 10⁴); a degenerate second component (a straight path) falls back to the SVD.
    """
    records, dims = deviations.shape
    if records < dims:
        eigenvalues, vectors = np.linalg.eigh(deviations @ deviations.T)
        eigenvalues, vectors = np.clip(eigenvalues[::-1], 0.0, None), vectors[:, ::-1]
        singular = np.sqrt(eigenvalues)
        if singular.size >= 2 and singular[1] > 1e-6 * singular[0]:
            return singular, (deviations.T @ vectors[:, :2] / singular[:2]).T
    _, singular, vt = np.linalg.svd(deviations, full_matrices=False)
    return singular, vt[:2]


def _covering(path: np.ndarray, margin: float, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid axes covering the path plus ``margin`` × the path's larger extent on every side."""
    low, high = path.min(axis=0), path.max(axis=0)
    pad = margin * np.max(high - low)
    return np.linspace(low[0] - pad, high[0] + pad, nx), np.linspace(low[1] - pad, high[1] + pad, ny)


def trajectory_plane(
    run_or_trajectory,
    model: nn.Module,
    loss_fn: Callable,
    batch,
    *,
    resolution: tuple[int, int] = (51, 51),
    margin: float = 0.2,
    method: str = "auto",
    chunk_size: int | None = None,
    metric: Callable | None = None,
) -> PlaneResult:
    """Loss on the PCA plane of a recorded trajectory, with the trajectory projected on it.

    Args:
        run_or_trajectory: a run with ``.trajectory() -> (steps, names, flat)``, or that
            tuple: steps (T,), names of the recorded parameters, flat (T, D) parameter
            vectors laid out as by ``flatten_params(model, names)``; the last record is
            the plane's centre θ_final.
        model: supplies architecture, buffers and the parameters not in ``names`` (held at
            their current values); only read.
        loss_fn, batch, method, chunk_size, metric: as for ``plane``.
        resolution: (nx, ny) grid points along PC1 and PC2 (default (51, 51)).
        margin: space around the projected path, as a fraction of its larger extent
            (default 0.2).

    Returns:
        PlaneResult whose ``x``/``y`` are distances along PC1/PC2 from θ_final, ``loss``
        (ny, nx), ``directions`` (PC1, PC2) as tensor lists, ``path`` (T, 2),
        ``path_steps`` (T,), ``explained_variance`` (2,), ``meta`` (kind
        "trajectory_plane").
    """
    nx, ny = check_resolution(resolution)
    check_method(method)
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a number ≥ 0, got {margin!r}")
    steps, names, flat = _read(run_or_trajectory)
    components, ratios, path = principal_plane(flat)
    x, y = _covering(path, margin, nx, ny)

    def full(values: np.ndarray, rest: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        """A point of the whole parameter space: ``values`` for ``names``, ``rest(p)`` elsewhere."""
        named = unflatten(model, values, names)
        return [named[name] if name in named else rest(p.detach()) for name, p in model.named_parameters()]

    center = full(flat[-1], lambda p: p)
    directions = tuple(full(component, torch.zeros_like) for component in components)
    meta = {
        "kind": "trajectory_plane",
        "margin": float(margin),
        "records": len(flat),
        "recorded_parameters": len(names),
    }
    result = evaluate_plane(
        model,
        loss_fn,
        batch,
        center,
        directions,
        x,
        y,
        method=method,
        chunk_size=chunk_size,
        metric=metric,
        meta=meta,
    )
    return dataclasses.replace(result, path=path, path_steps=steps, explained_variance=ratios)
