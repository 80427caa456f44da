"""Loss-landscape results: plain numpy containers, importable without torch.

The computing side (``dyntrace.landscape.plane``, ``line``, ``slice_1d``,
``trajectory_plane``) returns these; the reading and plotting side rebuilds them from a run
file with ``from_arrays``. ``to_arrays`` uses the dataset names of Li et al.'s h5 surfaces
(``xcoordinates``, ``ycoordinates``, ``train_loss``, ``train_acc``; ``proj_xcoord`` and
``proj_ycoord`` for a projected trajectory), so a stored surface reads like theirs.
Grids are stored [ny, nx] (row i ↔ ``y[i]``, column j ↔ ``x[j]``); NaN marks a value that was
not computed, e.g. ``train_acc`` when no metric was given.

Reference: H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss Landscape
of Neural Nets", NeurIPS 2018.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PlaneResult", "LineResult"]


def _float_array(values, name: str, ndim: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    return array


def _values_or_nan(values: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, np.nan) if values is None else values


def _none_if_all_nan(values: np.ndarray | None) -> np.ndarray | None:
    """Inverse of ``_values_or_nan``: an all-NaN array means "not computed"."""
    if values is None or np.isnan(values).all():
        return None
    return values


@dataclass
class LineResult:
    """Loss along a 1-D slice of parameter space.

    Attributes:
        t: (steps,) coordinates along the slice. For ``line`` the fraction of the way from
            ``start`` (t = 0) to ``end`` (t = 1); for ``slice_1d`` the step along a
            filter-normalised direction (in units of that direction, 0 = the model).
        loss: (steps,) loss at each coordinate.
        acc: (steps,) metric (e.g. accuracy) at each coordinate, or None when not computed.
        meta: JSON-serialisable description: ``kind`` ("line" or "slice_1d"), method used,
            timings, and the options of the computation.
    """

    t: np.ndarray
    loss: np.ndarray
    acc: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.t = _float_array(self.t, "t", 1)
        self.loss = _float_array(self.loss, "loss", 1)
        if self.loss.shape != self.t.shape:
            raise ValueError(f"loss has shape {self.loss.shape}, expected {self.t.shape} (one value per t)")
        if self.acc is not None:
            self.acc = _float_array(self.acc, "acc", 1)
            if self.acc.shape != self.t.shape:
                raise ValueError(f"acc has shape {self.acc.shape}, expected {self.t.shape} (one value per t)")

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays under Li et al.'s names: ``xcoordinates`` (t), ``train_loss``, ``train_acc`` (NaN if not computed)."""
        return {
            "xcoordinates": self.t,
            "train_loss": self.loss,
            "train_acc": _values_or_nan(self.acc, self.t.shape),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], meta: dict[str, Any] | None = None) -> LineResult:
        """Rebuild a result from ``to_arrays()`` output (and its ``meta``)."""
        return cls(
            t=arrays["xcoordinates"],
            loss=arrays["train_loss"],
            acc=_none_if_all_nan(_optional_array(arrays, "train_acc")),
            meta=dict(meta or {}),
        )


@dataclass
class PlaneResult:
    """Loss on a 2-D slice θ_c + x·δ + y·η of parameter space.

    Attributes:
        x: (nx,) coordinates along the first direction δ.
        y: (ny,) coordinates along the second direction η.
        loss: (ny, nx) loss; ``loss[i, j]`` is the loss at (x[j], y[i]). Never transposed.
        acc: (ny, nx) metric (e.g. accuracy), or None when not computed.
        meta: JSON-serialisable description: ``kind`` ("random_plane" or
            "trajectory_plane"), seed, normalisation, ignore, span, resolution (nx, ny),
            method used, timings.
        directions: (δ, η), each a list of tensors ordered like ``model.named_parameters()``.
            Held in memory only; ``to_arrays`` does not store them (None after ``from_arrays``).
        path: (T, 2) trajectory projected on the plane (trajectory planes only), same units
            as ``x`` and ``y``.
        path_steps: (T,) training step of each row of ``path``.
        explained_variance: (2,) fraction of the trajectory's squared deviation from the
            final parameters explained by each of the two directions.
    """

    x: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    acc: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    directions: tuple | None = None
    path: np.ndarray | None = None
    path_steps: np.ndarray | None = None
    explained_variance: np.ndarray | None = None

    def __post_init__(self):
        self.x = _float_array(self.x, "x", 1)
        self.y = _float_array(self.y, "y", 1)
        grid = (self.y.size, self.x.size)
        self.loss = _float_array(self.loss, "loss", 2)
        if self.loss.shape != grid:
            raise ValueError(f"loss has shape {self.loss.shape}, expected (ny, nx) = {grid}")
        if self.acc is not None:
            self.acc = _float_array(self.acc, "acc", 2)
            if self.acc.shape != grid:
                raise ValueError(f"acc has shape {self.acc.shape}, expected (ny, nx) = {grid}")
        if self.path is not None:
            self.path = _float_array(self.path, "path", 2)
            if self.path.shape[1] != 2:
                raise ValueError(f"path has shape {self.path.shape}, expected (T, 2)")
            steps = np.arange(len(self.path)) if self.path_steps is None else self.path_steps
            self.path_steps = np.asarray(steps, dtype=np.int64)
            if self.path_steps.shape != (len(self.path),):
                raise ValueError(
                    f"path_steps has shape {self.path_steps.shape}, expected ({len(self.path)},)"
                )
        if self.explained_variance is not None:
            self.explained_variance = _float_array(self.explained_variance, "explained_variance", 1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays under Li et al.'s names.

        Always ``xcoordinates`` (nx,), ``ycoordinates`` (ny,), ``train_loss`` and
        ``train_acc`` (ny, nx; NaN when not computed); for a trajectory plane also
        ``proj_xcoord``, ``proj_ycoord`` (T,), ``proj_steps`` (T,) and
        ``explained_variance`` (2,).
        """
        arrays = {
            "xcoordinates": self.x,
            "ycoordinates": self.y,
            "train_loss": self.loss,
            "train_acc": _values_or_nan(self.acc, self.loss.shape),
        }
        if self.path is not None:
            arrays.update(
                proj_xcoord=self.path[:, 0], proj_ycoord=self.path[:, 1], proj_steps=self.path_steps
            )
        if self.explained_variance is not None:
            arrays["explained_variance"] = self.explained_variance
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], meta: dict[str, Any] | None = None) -> PlaneResult:
        """Rebuild a result from ``to_arrays()`` output (and its ``meta``); ``directions`` is None."""
        path = None
        if "proj_xcoord" in arrays:
            path = np.column_stack([np.asarray(arrays["proj_xcoord"]), np.asarray(arrays["proj_ycoord"])])
        return cls(
            x=arrays["xcoordinates"],
            y=arrays["ycoordinates"],
            loss=arrays["train_loss"],
            acc=_none_if_all_nan(_optional_array(arrays, "train_acc")),
            meta=dict(meta or {}),
            path=path,
            path_steps=_optional_array(arrays, "proj_steps"),
            explained_variance=_optional_array(arrays, "explained_variance"),
        )


def _optional_array(arrays: dict[str, Any], key: str) -> np.ndarray | None:
    return np.asarray(arrays[key]) if key in arrays else None
