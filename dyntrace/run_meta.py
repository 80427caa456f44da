"""What a run file says about the run that wrote it: versions, model, optimizer, schedule,
probes, configuration. The root attributes of the file (see ``docs/format.md``)."""

from __future__ import annotations

import json
import math
import platform
import sys
from datetime import datetime, timezone

import numpy as np
import torch

__all__ = ["describe_run"]


def describe_run(module, params, optimizer, *, config, schedule, probes, device, distributed=None) -> dict:
    """Root attributes of a run file (strings; JSON where structured).

    Args:
        module: the trained module as named in the file (inside DDP/compile wrappers).
        params: its parameters (counted).
        optimizer: the recorded optimizer (its class and parameter groups, without tensors).
        config: the run's configuration (JSON-able) or None.
        schedule: the record schedule (its ``repr`` is stored).
        probes: the probe objects (names and options are stored).
        device: where the model lives.
        distributed: how a distributed run was recorded (:meth:`dyntrace.distributed.Sync.meta`).
    """
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, "n_params": len(g["params"])}
        for g in optimizer.param_groups
    ]
    meta = {
        "dyntrace_version": _dyntrace_version(),
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "numpy_version": np.__version__,
        "platform": platform.platform(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": json.dumps(config if config is not None else {}, default=str),
        "model": str(module),
        "model_class": type(module).__name__,
        "n_parameters": int(sum(p.numel() for p in params)),
        "device": str(device),
        "optimizer": json.dumps(
            {"class": type(optimizer).__name__, "param_groups": groups}, default=_jsonable
        ),
        "schedule": repr(schedule),
        "probes": json.dumps([{"name": p.name, "options": p.options()} for p in probes], default=str),
    }
    if distributed is not None:
        meta["distributed"] = json.dumps(distributed)
    return meta


def _jsonable(value):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


def _dyntrace_version() -> str:
    from dyntrace import __version__

    return __version__
