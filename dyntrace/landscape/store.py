"""The standard loss-landscape slices of a trained model, computed and stored in its run file.

Three slices, each evaluated in eval mode on one fixed batch (the data loss, no penalty; the
accuracy too where the task is classification) and written to a closed run file through
:func:`dyntrace.io.format.write_landscape` under Li et al.'s dataset names:

============================  =====================================================================
``/landscape/plane``          loss on a filter-normalised Gaussian random plane around the final
                              weights (``dyntrace.landscape.plane``), kind ``random_plane``
``/landscape/line``           loss on the straight line from the initial (t = 0) to the final
                              (t = 1) weights (``dyntrace.landscape.line``), kind ``line``
``/landscape/trajectory``     loss on the PCA plane of the recorded trajectory, with the path
                              projected on it (``dyntrace.landscape.trajectory_plane``), kind
                              ``trajectory_plane``
============================  =====================================================================

Options are a dict, one entry per slice to compute (``TrainConfig.landscape``)::

    {"plane": {"resolution": 21, "span": 1.0, "seed": 0, "ignore": "biasbn"},
     "line": {"steps": 21},
     "trajectory": {"resolution": 21, "margin": 0.2},
     "examples": 1024,    # at most this many validation examples in the evaluation batch
     "method": "auto"}    # "auto", "vmap" or "sequential" (dyntrace.landscape.evaluate)

Missing options take these defaults; ``resolution`` is one int (a square grid) or [nx, ny].
A list of slice names (or "plane,line") asks for those slices with the defaults.

The same slices of a finished run are computed after the fact by
:func:`dyntrace.remake.landscape_of_run` (a run of ``dyntrace train``, rebuilt from its
config) and :func:`dyntrace.landscape.for_run` (a run of one's own loop, with one's own
model); this package knows neither the trainer nor the catalog.

Reference: H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss Landscape
of Neural Nets", NeurIPS 2018.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from dyntrace.checks import check_int, check_number
from dyntrace.errors import ConfigError, DyntraceError, RunFileError
from dyntrace.landscape.evaluate import METHODS
from dyntrace.landscape.results import LineResult, PlaneResult

__all__ = [
    "KINDS",
    "DEFAULTS",
    "MAX_SNAPSHOTS",
    "normalize_options",
    "trajectory_stride",
    "flat_parameters",
    "accuracy",
    "compute",
    "attributes",
    "write",
]

KINDS = ("plane", "line", "trajectory")
# Per-slice defaults: 21 points an axis keep a digits MLP's three slices near a second on a CPU.
DEFAULTS = {
    "plane": {"resolution": 21, "span": 1.0, "seed": 0, "ignore": "biasbn"},
    "line": {"steps": 21},
    "trajectory": {"resolution": 21, "margin": 0.2},
}
_SHARED = {"examples": 1024, "method": "auto"}
# At most about this many trajectory snapshots when the trajectory plane turns the trajectory
# on by itself (a stride is chosen from the run's length; the first and last step are extra).
MAX_SNAPSHOTS = 200


# -- options ---------------------------------------------------------------------------------


def _bad(key: str, value, expected: str) -> ConfigError:
    return ConfigError(f"Invalid landscape {key}: {value!r} ({expected})")


def _int(key, value, low):
    return check_int(f"landscape {key}", value, low=low, error=ConfigError)


def _resolution(key, value):
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise _bad(key, value, "an integer >= 2 or a pair [nx, ny]")
        return [_int(key, v, 2) for v in value]
    return _int(key, value, 2)


def _positive(key, value, *, strict=True):
    return check_number(f"landscape {key}", value, low=0, strict_low=strict, error=ConfigError)


def _ignore(key, value):
    if value not in ("biasbn", None):
        raise _bad(key, value, "'biasbn' or null")
    return value


_CHECKS = {
    "plane": {
        "resolution": _resolution,
        "span": _positive,
        "seed": lambda k, v: _int(k, v, 0),
        "ignore": _ignore,
    },
    "line": {"steps": lambda k, v: _int(k, v, 2)},
    "trajectory": {"resolution": _resolution, "margin": lambda k, v: _positive(k, v, strict=False)},
}


def normalize_options(value) -> dict | None:
    """``TrainConfig.landscape`` checked and completed with the defaults (None stays None).

    Accepts a dict (see the module docstring), a list of slice names, or a comma-separated
    string of them. Raises :class:`dyntrace.catalog.ConfigError` naming the first bad key or value.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = [name.strip() for name in value.split(",") if name.strip()]
    if isinstance(value, (list, tuple)):
        value = {name: {} for name in value}
    if not isinstance(value, dict):
        raise ConfigError(
            f'Invalid landscape: {value!r} (a table of slices, e.g. {{"plane": {{}}, "line": {{}}}})'
        )
    unknown = [key for key in value if key not in KINDS and key not in _SHARED]
    if unknown:
        raise ConfigError(f"Invalid landscape key {unknown[0]!r}; valid: {', '.join(KINDS + tuple(_SHARED))}")
    if not any(kind in value for kind in KINDS):
        raise ConfigError(f"Invalid landscape: {value!r} names no slice (one or more of {', '.join(KINDS)})")
    out = {}
    for kind in KINDS:
        if kind not in value:
            continue
        given = value[kind]
        given = {} if given is None or given is True else given
        if not isinstance(given, dict):
            raise ConfigError(
                f"Invalid landscape {kind}: {given!r} (a table of options, e.g. {DEFAULTS[kind]})"
            )
        bad = [key for key in given if key not in DEFAULTS[kind]]
        if bad:
            raise ConfigError(f"Invalid landscape option {kind}.{bad[0]}; valid: {', '.join(DEFAULTS[kind])}")
        options = {**DEFAULTS[kind], **given}
        out[kind] = {key: _CHECKS[kind][key](f"{kind}.{key}", v) for key, v in options.items()}
    out["examples"] = _int("examples", value.get("examples", _SHARED["examples"]), 1)
    method = value.get("method", _SHARED["method"])
    if method not in METHODS:
        raise _bad("method", method, f"one of {', '.join(METHODS)}")
    out["method"] = method
    return out


def trajectory_stride(total_steps: int, max_snapshots: int = MAX_SNAPSHOTS) -> int:
    """The stride that keeps at most ``max_snapshots`` snapshots besides the first and last."""
    return max(1, math.ceil(total_steps / max_snapshots))


def flat_parameters(model: nn.Module, names: Sequence[str]) -> np.ndarray:
    """The named parameters as one float32 vector, laid out like a recorded trajectory row."""
    from dyntrace.landscape.params import flatten_params

    return flatten_params(model, names).float().cpu().numpy()


def _pair(resolution) -> tuple[int, int]:
    return tuple(resolution) if isinstance(resolution, list) else (resolution, resolution)


# -- computing -------------------------------------------------------------------------------


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose largest output is the target class (a 0-d tensor; vmappable)."""
    return (outputs.argmax(dim=-1) == targets).float().mean()


def compute(
    model: nn.Module,
    loss_fn: Callable,
    batch,
    options: dict,
    *,
    initial: Sequence[torch.Tensor] | None = None,
    trajectory=None,
    metric: Callable | None = None,
) -> dict[str, PlaneResult | LineResult]:
    """The slices ``options`` asks for, around the model's current (final) parameters.

    Args:
        model: the trained model; only read (see ``dyntrace.landscape.evaluate``).
        loss_fn: ``loss_fn(outputs, targets)`` → scalar tensor.
        batch: ``(inputs, targets)``, the fixed evaluation batch (already capped).
        options: output of :func:`normalize_options`.
        initial: the initial parameters, in ``named_parameters()`` order (needed for "line").
        trajectory: ``(steps, names, flat)`` as ``Run.trajectory()`` (needed for "trajectory").
        metric: e.g. :func:`accuracy`, stored as ``train_acc``.

    Returns:
        ``{name: result}`` in the order plane, line, trajectory; each ``meta`` as the
        landscape function wrote it.
    """
    from dyntrace.landscape.slices import line, plane
    from dyntrace.landscape.trajectory import trajectory_plane

    options = normalize_options(options)
    method = options["method"]
    results = {}
    if "plane" in options:
        o = options["plane"]
        results["plane"] = plane(
            model,
            loss_fn,
            batch,
            span=o["span"],
            resolution=_pair(o["resolution"]),
            seed=o["seed"],
            ignore=o["ignore"],
            method=method,
            metric=metric,
        )
    if "line" in options:
        if initial is None:
            raise ValueError("the line slice needs the initial parameters (initial=...)")
        final = [p.detach() for p in model.parameters()]
        results["line"] = line(
            model,
            loss_fn,
            batch,
            list(initial),
            final,
            options["line"]["steps"],
            method=method,
            metric=metric,
        )
    if "trajectory" in options:
        if trajectory is None:
            raise ValueError(
                "the trajectory plane needs the recorded trajectory (trajectory=(steps, names, flat))"
            )
        o = options["trajectory"]
        try:
            results["trajectory"] = trajectory_plane(
                trajectory,
                model,
                loss_fn,
                batch,
                resolution=_pair(o["resolution"]),
                margin=o["margin"],
                method=method,
                metric=metric,
            )
        except ValueError as exc:  # a trajectory of one record, or one that never moved
            raise DyntraceError(f"no trajectory plane: {exc}") from None
    return results


def _stored(meta: dict) -> dict:
    """Attributes from a result's meta: None means "not applicable" and is left out, except
    ``ignore`` where None is a choice (stored as "none")."""
    out = {}
    for key, value in meta.items():
        if value is None:
            if key == "ignore":
                out[key] = "none"
            continue
        out[key] = value
    return out


def attributes(name: str, result, *, step: int, extra: dict | None = None) -> dict:
    """The attributes stored with one slice (see :func:`write`)."""
    attrs = _stored(result.meta)
    attrs["step"] = int(step)
    if name == "line":
        attrs.update(normalisation="none", span=[0.0, 1.0], resolution=[len(result.t)])
    if name == "trajectory":
        steps = result.path_steps
        attrs.update(
            normalisation="unit",  # PCA directions are unit vectors: coordinates are distances
            directions="pca",
            explained_variance=[float(v) for v in result.explained_variance],
            extent=[float(result.x[0]), float(result.x[-1]), float(result.y[0]), float(result.y[-1])],
            stride=int(steps[1] - steps[0]) if len(steps) > 1 else 0,
        )
    attrs.update(extra or {})
    return attrs


def write(path, results: dict, *, step: int, extra: dict | None = None) -> dict[str, dict]:
    """Write each result to ``/landscape/<name>`` of the closed run file ``path``.

    Attributes of every group: the result's meta (``kind``, ``method``, ``chunk_size``,
    ``seconds``, ``batch_size``, ``metric``, …; for the random plane ``seed``,
    ``normalisation`` "filter", ``ignore``, ``span``, ``resolution`` [nx, ny]), ``step`` (the
    training step of the final weights), then ``extra`` (e.g. ``loss``, ``batch``). The line
    adds ``start_step``/``end_step`` via ``extra`` and ``resolution`` [steps]; the trajectory
    plane adds ``explained_variance`` [2], ``extent`` [x0, x1, y0, y1], ``records``,
    ``margin``, ``normalisation`` "unit" and ``directions`` "pca". Returns the attributes written.
    """
    from dyntrace.io.format import write_landscape

    written = {}
    for name, result in results.items():
        attrs = attributes(name, result, step=step, extra=extra)
        try:
            write_landscape(path, name, result.to_arrays(), attrs)
        except OSError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunFileError(
                f"{os.fspath(path)}: cannot add /landscape/{name} ({first}); is the run still being written?"
            ) from None
        written[name] = attrs
    return written


# -- a run made by dyntrace train ------------------------------------------------------------
