"""The Recorder: two lines around a training loop, one HDF5 file of what happened inside.

    with dyntrace.Recorder(model, optimizer, "run.h5", every=10) as rec:
        for x, y in loader:
            ...; loss.backward(); optimizer.step()
            rec.log(loss=loss)

Steps are counted by an optimizer step hook: step ``s`` is the iteration that ends with the
s-th ``optimizer.step()``. When the schedule selects step ``s``, probes are armed right
after step s − 1 (forward hooks attached), read gradients before step s, read the update
after it, and their summaries go to the host in one transfer. Other steps run no hook at all.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import warnings
import weakref
from datetime import datetime, timezone

import numpy as np
import torch

from dyntrace.errors import DyntraceError
from dyntrace.io.writer import RunWriter
from dyntrace.probes import make_probes
from dyntrace.probes.base import RecordContext
from dyntrace.schedules import as_schedule
from dyntrace.summaries import to_host

__all__ = ["Recorder"]

_SCALAR_TYPES = (int, float, bool, np.number)


class Recorder:
    """Records a training run to an HDF5 file.

    Args:
        model: the ``nn.Module`` being trained (a DDP wrapper is unwrapped for naming).
        optimizer: its ``torch.optim.Optimizer``; its step hooks count and time the steps.
        path: the run file to create (overwritten if it exists).
        every: record every n-th step (int), or a schedule ``step -> bool``
            (see :mod:`dyntrace.schedules`).
        probes: None (scalars, activations, gradients, weights), "all", or a list of probe
            names and/or probe objects (see :mod:`dyntrace.probes`).
        config: the run's configuration (JSON-able), stored so the run can be re-made.
        trajectory: keep the flat parameter vector every this many steps (and at the start
            and end) for the trajectory plane of :mod:`dyntrace.landscape`; None to skip.
        trajectory_dtype: "float32" or "float16".
        flush_every: seconds between file flushes (a killed run keeps what was flushed).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        path,
        every=10,
        probes=None,
        *,
        config: dict | None = None,
        trajectory: int | None = None,
        trajectory_dtype: str = "float32",
        flush_every: float = 2.0,
    ):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if trajectory is not None and (not isinstance(trajectory, int) or trajectory < 1):
            raise ValueError(f"Invalid trajectory stride: {trajectory!r} (expected an int >= 1 or None)")
        if trajectory_dtype not in ("float32", "float16"):
            raise ValueError(f"Invalid trajectory_dtype: {trajectory_dtype!r} (float32 or float16)")
        self.path = os.fspath(path)
        self.schedule = as_schedule(every)
        self.step = 0  # completed optimizer steps
        self._ctx = RecordContext(model, optimizer)
        self._probes = make_probes(probes)
        self._armed = False
        self._first_record = True
        self._probe_handles: list = []
        self._scalars: list[tuple[int, str, object]] = []
        self._scalar_keys: dict[str, int] = {}
        self._last_lr: dict[int, float] = {}
        self._last_flush = time.monotonic()
        self._flush_every = flush_every
        self._trajectory = trajectory
        self._closed = False

        layouts = {}
        for probe in list(self._probes):
            layout = self._guard(probe, "setup")
            if layout is not None:
                layout.attrs.setdefault("options", json.dumps(probe.options(), default=str))
                layouts[probe.name] = layout
        traj_spec = None
        if trajectory is not None:
            traj_spec = {
                "names": self._ctx.param_names,
                "sizes": [p.numel() for p in self._ctx.params],
                "dtype": trajectory_dtype,
            }
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise DyntraceError(f"cannot write {self.path}: folder {parent} does not exist")
        try:
            self._writer = RunWriter(self.path, self._meta(model, optimizer, config), layouts, trajectory=traj_spec, flush_every=flush_every)
        except OSError as exc:
            raise DyntraceError(f"cannot write {self.path}: {exc}") from None
        self._finalizer = weakref.finalize(self, self._writer.close)

        self._hooks = [
            optimizer.register_step_pre_hook(self._before_step),
            optimizer.register_step_post_hook(self._after_step),
        ]
        if trajectory is not None:
            self._save_trajectory()
        self._arm_if_scheduled()

    # -- the public surface ------------------------------------------------------------------

    def log(self, **scalars) -> None:
        """Log scalars for the current step (the number of completed ``optimizer.step()``).

        Call it after ``optimizer.step()``. Values may be Python numbers or one-element
        tensors; tensors are kept on their device and moved with the next record step's
        transfer (or every few seconds), never synced one by one.
        """
        for name, value in scalars.items():
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    self._ctx.warn_once(("log", name), f"log: {name} has {value.numel()} elements, not 1; skipped")
                    continue
                value = value.detach().reshape(())
            elif not isinstance(value, _SCALAR_TYPES):
                self._ctx.warn_once(("log", name), f"log: {name} is {type(value).__name__}, not a number; skipped")
                continue
            self._scalars.append((self.step, name, value))
        if len(self._scalars) >= 4096 or time.monotonic() - self._last_flush >= self._flush_every:
            self._flush_scalars({})

    def close(self) -> None:
        """Remove every hook, write what is pending and close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for handle in self._hooks + self._probe_handles:
            handle.remove()
        self._probe_handles = []
        try:
            self._flush_scalars({})
            if self._trajectory is not None and self.step % self._trajectory:
                self._save_trajectory()
        finally:
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def probes(self) -> list[str]:
        return [p.name for p in self._probes]

    # -- optimizer hooks ---------------------------------------------------------------------

    def _before_step(self, optimizer, args, kwargs):
        if not self._armed:
            return
        ctx = self._ctx
        if any(p.needs_snapshot for p in self._probes):
            ctx.take_snapshot()
        for probe in list(self._probes):
            self._guard(probe, "before_step")

    def _after_step(self, optimizer, args, kwargs):
        self.step += 1
        try:
            self._log_learning_rates(optimizer)
            if self._armed:
                for probe in list(self._probes):
                    self._guard(probe, "after_step")
                self._record()
            if self._trajectory is not None and self.step % self._trajectory == 0:
                self._save_trajectory()
        except Exception as exc:  # the recorder never kills training
            self._ctx.warn_once("record", f"recording step {self.step} failed: {exc}")
        finally:
            self._disarm()
            self._arm_if_scheduled()

    # -- internals ---------------------------------------------------------------------------

    def _arm_if_scheduled(self):
        if self._closed or self._writer.failed:
            return
        try:
            armed = bool(self.schedule(self.step + 1))
        except Exception as exc:
            self._ctx.warn_once("schedule", f"the record schedule raised {exc!r}; step {self.step + 1} not recorded")
            armed = False
        if armed:
            self._ctx.step = self.step + 1
            self._ctx.recording = True
            for probe in list(self._probes):
                self._probe_handles += self._guard(probe, "attach") or []
        self._armed = armed

    def _disarm(self):
        for handle in self._probe_handles:
            handle.remove()
        self._probe_handles = []
        self._armed = False
        self._ctx.recording = False
        self._ctx.release_snapshot()

    def _guard(self, probe, method: str, *args):
        """Call a probe method; on failure warn once, drop the probe, keep training."""
        try:
            return getattr(probe, method)(self._ctx, *args)
        except Exception as exc:
            self._ctx.warn_once((probe.name, method), f"probe {probe.name!r} failed in {method} ({exc!r}); it is switched off")
            if probe in self._probes:
                self._probes.remove(probe)
            return None

    def _record(self):
        ctx = self._ctx
        device_fields = {}
        for probe in list(self._probes):
            for field, tensor in (self._guard(probe, "collect") or {}).items():
                device_fields[f"{probe.name}/{field}"] = tensor
        statics = {}
        if self._first_record:
            for probe in list(self._probes):
                for field, tensor in (self._guard(probe, "static") or {}).items():
                    statics[f"{probe.name}/{field}"] = tensor
        for name, value in ctx.scalars.items():
            self._scalars.append((self.step, name, value))
        ctx.scalars = {}
        host = self._flush_scalars({**device_fields, **{f"static:{k}": v for k, v in statics.items()}})
        if self._first_record:
            self._first_record = False
            for probe in self._probes:
                fields = {k.split("/", 1)[1]: v for k, v in host.items() if k.startswith(f"static:{probe.name}/")}
                if fields:
                    self._writer.add_static(probe.name, fields)
        for probe in list(self._probes):
            fields = {k.split("/", 1)[1]: v for k, v in host.items() if k.startswith(f"{probe.name}/")}
            if fields:
                fields = self._guard(probe, "check", fields)
                if fields is not None:
                    self._writer.add_record(probe.name, self.step, fields)

    def _flush_scalars(self, device_fields: dict) -> dict:
        """Move pending scalar tensors (and ``device_fields``) to the host in one transfer."""
        tensors = [(i, v) for i, (_, _, v) in enumerate(self._scalars) if isinstance(v, torch.Tensor)]
        batch = dict(device_fields)
        for i, value in tensors:
            batch[f"scalar:{i}"] = value
        host = to_host(batch) if batch else {}
        if self._scalars:
            new_names, steps, keys, values = [], [], [], []
            for i, (step, name, value) in enumerate(self._scalars):
                if name not in self._scalar_keys:
                    self._scalar_keys[name] = len(self._scalar_keys)
                    new_names.append(name)
                steps.append(step)
                keys.append(self._scalar_keys[name])
                values.append(float(host[f"scalar:{i}"]) if f"scalar:{i}" in host else float(value))
            self._writer.add_scalars(new_names, steps, keys, values)
            self._scalars = []
        self._last_flush = time.monotonic()
        return {k: v for k, v in host.items() if not k.startswith("scalar:")}

    def _log_learning_rates(self, optimizer):
        for i, group in enumerate(optimizer.param_groups):
            lr = group.get("lr")
            if lr is None:
                continue
            lr = float(lr)  # a tensor lr is a 0-d CPU tensor in torch; no device sync
            if self._last_lr.get(i) != lr:
                self._last_lr[i] = lr
                self._scalars.append((self.step, f"lr/{i}", lr))

    def _save_trajectory(self):
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1).float() for p in self._ctx.params])
        # A whole-model host copy, only every `trajectory` steps: the price of the PCA plane.
        self._writer.add_trajectory(self.step, flat.cpu().numpy())

    def _meta(self, model, optimizer, config) -> dict:
        groups = [
            {**{k: v for k, v in g.items() if k != "params"}, "n_params": len(g["params"])}
            for g in optimizer.param_groups
        ]
        return {
            "dyntrace_version": _dyntrace_version(),
            "torch_version": torch.__version__,
            "python_version": sys.version.split()[0],
            "numpy_version": np.__version__,
            "platform": platform.platform(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": json.dumps(config if config is not None else {}, default=str),
            "model": str(model),
            "model_class": type(model).__name__,
            "n_parameters": int(sum(p.numel() for p in self._ctx.params)),
            "device": str(next(model.parameters()).device) if any(True for _ in model.parameters()) else "cpu",
            "optimizer": json.dumps({"class": type(optimizer).__name__, "param_groups": groups}, default=_jsonable),
            "schedule": repr(self.schedule),
            "probes": json.dumps([{"name": p.name, "options": p.options()} for p in self._probes], default=str),
        }


def _jsonable(value):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


def _dyntrace_version() -> str:
    from dyntrace import __version__

    return __version__
