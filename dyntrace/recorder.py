"""The Recorder: two lines around a training loop, one HDF5 file of what happened inside.

    with dyntrace.Recorder(model, optimizer, "run.h5", every=10) as rec:
        for x, y in loader:
            ...; loss.backward(); optimizer.step()
            rec.log(loss=loss)

Steps are counted by an optimizer step hook: step ``s`` is the iteration that ends with the
s-th ``optimizer.step()``. When the schedule selects step ``s``, probes are armed right
after step s − 1 (forward hooks attached), read gradients before step s, read the update
after it, and their summaries go to the host in one transfer. Other steps run no hook at all.

Under ``torch.distributed`` (an initialised process group) every rank makes a Recorder with
the same arguments; rank 0 alone writes the file, and the summaries of each record step are
combined across ranks with a constant number of collectives (see :mod:`dyntrace.distributed`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import weakref
from datetime import datetime, timezone

import numpy as np
import torch

from dyntrace import distributed as _distributed
from dyntrace.errors import DyntraceError
from dyntrace.io.format import SCALAR_NAME_BYTES
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
        flush_every: seconds from ``log()`` (or a record step) to the file: a killed run keeps
            everything logged more than ``flush_every`` plus the time of one write before the
            kill, provided ``log()`` or a record step came after it (values wait for one of
            them to leave the recorder, so that device tensors are never synced one by one).
        distributed: what to record when a ``torch.distributed`` process group is
            initialised (ignored otherwise): "reduce" (default) combines the activation
            summaries of every rank's shard (gradients and weights, identical on every rank
            under DDP, are rank 0's); "rank0" records rank 0's shard only, with no
            collective; "per_rank" is "reduce" plus each rank's own activation summaries in
            groups ``activations@rank<r>``. Rank 0 alone creates and writes ``path``.
        process_group: the group to reduce over (default: the whole world).
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
        distributed: str | None = None,
        process_group=None,
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
        if trajectory is not None and not self._ctx.params:  # a model without parameters: scalars (and activations) only
            self._ctx.warn_once("trajectory", "the model has no parameters: no trajectory is kept")
            trajectory = None
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
        self._dist = _distributed.active(distributed, process_group)  # None: a single process
        self._writes = self._dist is None or self._dist.writes

        layouts = {}
        for probe in list(self._probes):
            layout = self._guard(probe, "setup")
            if layout is not None:
                layout.attrs.setdefault("options", json.dumps(probe.options(), default=str))
                layouts[probe.name] = layout
        if self._dist is not None:
            self._probes, layouts = self._dist.setup(self._probes, layouts, self._ctx.param_names)
        self._layouts = set(layouts)
        traj_spec = None
        if trajectory is not None and self._writes:
            traj_spec = {
                "names": self._ctx.param_names,
                "sizes": [p.numel() for p in self._ctx.params],
                "dtype": trajectory_dtype,
            }
        if self._writes:
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise DyntraceError(f"cannot write {self.path}: folder {parent} does not exist")
            try:
                self._writer = RunWriter(self.path, self._meta(model, optimizer, config), layouts, trajectory=traj_spec, flush_every=flush_every)
            except OSError as exc:
                raise DyntraceError(f"cannot write {self.path}: {exc}") from None
        else:  # another rank: no file, no HDF5 work
            self._writer = _distributed.NullWriter()
        self._finalizer = weakref.finalize(self, self._writer.close)

        self._hooks = [
            optimizer.register_step_pre_hook(self._before_step),
            optimizer.register_step_post_hook(self._after_step),
        ]
        if trajectory is not None and self._writes:
            self._save_trajectory()
        self._arm_if_scheduled()

    # -- the public surface ------------------------------------------------------------------

    def log(self, *, reduce: str | None = None, **scalars) -> None:
        """Log scalars for the current step (the number of completed ``optimizer.step()``).

        Call it after ``optimizer.step()``. Values may be Python numbers or one-element
        tensors; tensors are kept on their device and moved with the next record step's
        transfer (or every few seconds), never synced one by one.

        ``reduce`` ("mean", "sum", "min" or "max") combines the value across the ranks of
        a ``torch.distributed`` run, e.g. ``rec.log(loss=loss, reduce="mean")`` for the
        global batch's loss; the values wait for the next record step's collective (or
        close), so a step that records nothing communicates nothing. Without ``reduce``
        (or in "rank0" mode) rank 0's values are logged. In a single process it changes
        nothing. (``reduce`` is therefore not a scalar name.)
        """
        if self._closed:
            self._ctx.warn_once("log-closed", f"log() after the Recorder of {self.path} was closed: not recorded")
            return
        _distributed.check_scalar_reduce(reduce)
        dist_reduce = reduce is not None and self._dist is not None and self._dist.communicates
        if not (self._writes or dist_reduce):
            return  # another rank: its values are not recorded
        for name, value in scalars.items():
            if len(name.encode()) > SCALAR_NAME_BYTES:
                self._ctx.warn_once(("log", name), f"log: a scalar name longer than {SCALAR_NAME_BYTES} bytes is not recorded ({name[:40]}…)")
                continue
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    self._ctx.warn_once(("log", name), f"log: {name} has {value.numel()} elements, not 1; skipped")
                    continue
                value = value.detach().reshape(())
            elif not isinstance(value, _SCALAR_TYPES):
                self._ctx.warn_once(("log", name), f"log: {name} is {type(value).__name__}, not a number; skipped")
                continue
            if dist_reduce:
                self._dist.add_scalar(self.step, name, value, reduce)
            else:
                self._scalars.append((self.step, name, value))
        if dist_reduce and self._dist.pending >= _distributed.MAX_PENDING:
            # every rank logs the same values, so every rank reaches this point together
            self._combine_scalars()
        # handed over at half the flush period: the writer then has them on disk flush_every after log()
        if len(self._scalars) >= 4096 or time.monotonic() - self._last_flush >= self._flush_every / 2:
            try:
                self._flush_scalars({})
            except Exception as exc:  # the recorder never kills training
                self._scalars = []
                self._ctx.warn_once("flush", f"logging scalars at step {self.step} failed: {exc}")

    def close(self) -> None:
        """Remove every hook, write what is pending and close the file. Safe to call twice.

        Under ``torch.distributed`` every rank calls it at the same point: scalars logged
        with ``reduce=`` are combined in one last collective.
        """
        self._close(failed=False)

    def _close(self, *, failed: bool) -> None:
        if self._closed:
            return
        self._closed = True
        for handle in self._hooks + self._probe_handles:
            handle.remove()
        self._probe_handles = []
        try:
            if self._dist is not None:
                self._close_distributed(failed)
            self._flush_scalars({})
            if self._trajectory is not None and self.step % self._trajectory and self._writes:
                self._save_trajectory()
        finally:
            self._finalizer()

    def __enter__(self):
        if self._closed:
            raise DyntraceError(f"this Recorder of {self.path} is closed; make a new one to record again")
        return self

    def __exit__(self, exc_type, exc, tb):
        # Leaving on an exception, this rank may be alone: no collective, only what it holds.
        self._close(failed=exc_type is not None)
        return False

    @property
    def probes(self) -> list[str]:
        return [p.name for p in self._probes]

    # -- optimizer hooks ---------------------------------------------------------------------

    def _before_step(self, optimizer, args, kwargs):
        if not self._armed:
            return
        ctx = self._ctx
        try:
            if self._dist is not None:
                self._dist.before_step(ctx)
            if any(p.needs_snapshot for p in self._probes):
                ctx.take_snapshot()
        except Exception as exc:  # e.g. no memory for the snapshot: the probes that need it fail later, guarded
            ctx.warn_once("before_step", f"preparing record step {self.step + 1} failed: {exc}")
        for probe in list(self._probes):
            self._guard(probe, "before_step")

    def _after_step(self, optimizer, args, kwargs):
        self.step += 1
        try:
            if self._writes:
                self._log_learning_rates(optimizer)
            if self._armed:
                for probe in list(self._probes):
                    self._guard(probe, "after_step")
                self._record()
            if self._trajectory is not None and self.step % self._trajectory == 0 and self._writes:
                self._save_trajectory()
        except Exception as exc:  # the recorder never kills training
            self._ctx.warn_once("record", f"recording step {self.step} failed: {exc}")
        finally:
            self._disarm()
            self._arm_if_scheduled()

    # -- internals ---------------------------------------------------------------------------

    def _arm_if_scheduled(self):
        # Under torch.distributed a failed writer keeps rank 0 in step with the others'
        # collectives (it then records nothing); a single process simply stops arming.
        if self._closed or (self._writer.failed and self._dist is None):
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
            if self._dist is not None:
                self._probe_handles += self._dist.attach(self._probes)
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
        if self._dist is not None:
            self._dist.before_collect(self._probes)
        device_fields = {}
        for probe in list(self._probes):
            for field, tensor in (self._guard(probe, "collect") or {}).items():
                device_fields[f"{probe.name}/{field}"] = tensor
        checks = {}
        if self._dist is not None and self._dist.communicates:
            combined = self._dist.combine(self.step, device_fields)  # the record step's collectives
            if combined is None:  # another rank: its part is done
                self._first_record = False
                return
            device_fields, events, checks = combined
            self._scalars += events
        elif not self._writes:  # "rank0" mode, another rank: nothing to do
            return
        statics = {}
        if self._first_record:
            for probe in list(self._probes):
                for field, tensor in (self._guard(probe, "static") or {}).items():
                    statics[f"{probe.name}/{field}"] = tensor
        for name, value in ctx.scalars.items():
            self._scalars.append((self.step, name, value))
        ctx.scalars = {}
        host = self._flush_scalars(
            {**device_fields, **{f"static:{k}": v for k, v in statics.items()}, **{f"check:{k}": v for k, v in checks.items()}}
        )
        if self._dist is not None:
            self._scalars += self._dist.after_transfer(self.step, {k[6:]: v for k, v in host.items() if k.startswith("check:")})
        # (group, probe): each probe's group, and under "per_rank" its per-rank groups; only
        # groups that exist in the file (a probe without a layout, e.g. no activation module
        # matched, writes nothing)
        groups = [(p.name, p) for p in self._probes]
        if self._dist is not None:
            groups += self._dist.rank_groups(self._probes)
        groups = [(group, probe) for group, probe in groups if group in self._layouts]
        if self._first_record:
            self._first_record = False
            for group, probe in groups:
                fields = {k.split("/", 1)[1]: v for k, v in host.items() if k.startswith(f"static:{probe.name}/")}
                if fields:
                    self._writer.add_static(group, fields)
        for group, probe in groups:
            fields = {k.split("/", 1)[1]: v for k, v in host.items() if k.startswith(f"{group}/")}
            if fields:
                fields = self._guard(probe, "check", fields)
                if fields is not None:
                    self._writer.add_record(group, self.step, fields)

    def _combine_scalars(self):
        """A scalars-only collective (``reduce=`` values), when no record step comes soon enough."""
        combined = self._dist.combine(self.step, None)
        if combined is not None:
            self._scalars += combined[1]

    def _close_distributed(self, failed: bool):
        if failed or not self._dist.communicates:
            dropped = self._dist.drop_pending()
            if dropped and self._writes:
                self._ctx.warn_once("dist-close", f"{dropped} scalar value(s) logged with reduce= not written: the run ended with an exception, so no collective was attempted")
            return
        try:
            self._combine_scalars()  # always, so that no rank decides alone: one collective a run
        except Exception as exc:  # a rank died meanwhile: keep what rank 0 holds
            self._ctx.warn_once("dist-close", f"the last collective at close failed ({exc}); scalars logged with reduce= since the last record step are lost")

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
            if isinstance(lr, torch.Tensor) and lr.device.type != "cpu" and not self._armed:
                continue  # a device lr (capturable optimizers) is read on record steps only: no sync per step
            lr = float(lr)
            if self._last_lr.get(i) != lr:
                self._last_lr[i] = lr
                self._scalars.append((self.step, f"lr/{i}", lr))

    def _save_trajectory(self):
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1).float() for p in self._ctx.params])
        # A whole-model host copy, only every `trajectory` steps: the price of the PCA plane.
        self._writer.add_trajectory(self.step, flat.cpu().numpy())

    def _meta(self, model, optimizer, config) -> dict:
        module = self._ctx.module  # described as named in the file: inside a DDP wrapper
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
            "model": str(module),
            "model_class": type(module).__name__,
            "n_parameters": int(sum(p.numel() for p in self._ctx.params)),
            "device": str(next(model.parameters()).device) if any(True for _ in model.parameters()) else "cpu",
            "optimizer": json.dumps({"class": type(optimizer).__name__, "param_groups": groups}, default=_jsonable),
            "schedule": repr(self.schedule),
            "probes": json.dumps([{"name": p.name, "options": p.options()} for p in self._probes], default=str),
            **({"distributed": json.dumps(self._dist.meta(model))} if self._dist is not None else {}),
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
