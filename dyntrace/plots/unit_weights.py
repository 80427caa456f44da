"""Each unit's incoming weights as a small image, read from the run's parameter trajectory.

A hidden unit of the first layer of an MLP on images sees every pixel through one weight: its
row of ``fc1.weight`` reshaped to the image is what the unit looks for. When every unit of a
layer starts from the same weights (constant initialisation) they all get the same update and
stay copies of each other; an L1 penalty zeroes most pixels of each row. Both show at a glance.

The runs must keep their parameters with ``Recorder(..., trajectory=N)`` (``dyntrace.train``:
``trajectory=N``).
"""

from __future__ import annotations

import numpy as np

from dyntrace.plots.data import missing
from dyntrace.plots.layout import panels

__all__ = ["trajectory_parameter", "unit_spread", "plot_unit_weights"]

_HOW = "keep the parameters with Recorder(..., trajectory=N) or dyntrace.train(trajectory=N)"


def trajectory_parameter(run, name: str, *, index: int = -1):
    """(step, values (numel,)) of parameter ``name`` in the ``index``-th snapshot of the run's
    trajectory (default: the last). Raises MissingDataError without a trajectory or parameter."""
    steps, names, flat = run.trajectory()  # MissingDataError without one
    if name not in names:
        raise missing(run, f"parameter {name!r} in the trajectory (has: {', '.join(names)})", _HOW)
    # the sizes are stored beside the names; the reader has no accessor for them yet
    sizes = np.asarray(run._ds("trajectory", "sizes")[:], dtype=np.int64)
    start = int(sizes[: names.index(name)].sum())
    return int(steps[index]), flat[index, start : start + int(sizes[names.index(name)])]


def unit_spread(weights) -> float:
    """How different the units of a layer are: the standard deviation across units of each
    incoming weight, averaged over the inputs, relative to the weights' root mean square.

    ``weights`` (units, inputs). 0 when every unit has the same incoming weights (the symmetry
    of a constant initialisation); ≈ 1 for independent random rows (e.g. He initialisation).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] < 2:
        raise ValueError(f"weights must be (units ≥ 2, inputs), got shape {w.shape}")
    rms = np.sqrt(np.mean(w**2))
    return float(np.mean(np.std(w, axis=0)) / rms) if rms > 0 else 0.0


def plot_unit_weights(
    run,
    /,
    *,
    param: str = "fc1.weight",
    image_shape=(8, 8),
    units: int = 8,
    index: int = -1,
    ax=None,
    limit: float | None = None,
    title: str | None = None,
):
    """The incoming weights of the first ``units`` units of ``param`` as images of ``image_shape``
    (one panel each, a diverging colour map centred on 0: red positive, blue negative), from the
    ``index``-th trajectory snapshot (default: the last). ``limit``: the colour range ±limit
    (default: the largest |w| drawn). ``ax``: an Axes (split into the panels) or one per unit.
    """
    step, flat = trajectory_parameter(run, param, index=index)
    inputs = int(np.prod(image_shape))
    if flat.size % inputs:
        raise ValueError(f"{param} has {flat.size} weights, not a multiple of the image size {inputs}")
    rows = flat.reshape(-1, inputs)[:units]
    limit = float(np.max(np.abs(rows))) if limit is None else float(limit)
    limit = limit if limit > 0 else 1.0
    with panels(ax, len(rows), ncols=len(rows), panel_size=(1.1, 1.2)) as (fig, axes, owns):
        for i, (a, row) in enumerate(zip(axes, rows)):
            a.imshow(
                row.reshape(image_shape), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
            )
            a.set_xticks([])
            a.set_yticks([])
            a.grid(False)
            a.set_title(f"unit {i + 1}", fontsize="x-small")
        if owns:
            fig.suptitle(title or f"Incoming weights of {param} at step {step}")
    return fig
