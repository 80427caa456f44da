"""The Recorder: two lines around a training loop, one HDF5 file of what happened inside.

    with dyntrace.Recorder(model, optimizer, "run.h5", every=10) as rec:
        for x, y in loader:
            ...; loss.backward(); optimizer.step()
            rec.log(loss=loss)

Steps are counted by an optimizer step hook: step ``s`` is the iteration that ends with the
s-th ``optimizer.step()`` (or with a skipped step, see :meth:`Recorder.log`). When the
schedule selects step ``s``, probes are armed right after step s − 1 (forward hooks
attached), read gradients once they are final — before ``optimizer.step()``, or right after
the closure of ``optimizer.step(closure)`` has run backward — read the update after the step,
and their summaries go to the host in one transfer. Other steps run no hook at all.

Under ``torch.distributed`` (an initialised process group) every rank makes a Recorder with
the same arguments; rank 0 alone writes the file, and the summaries of each record step are
combined across ranks with a constant number of collectives (see :mod:`dyntrace.distributed`).
"""

from __future__ import annotations

import os
import sys
import weakref

import numpy as np
import torch

from dyntrace import distributed as _distributed
from dyntrace.checks import check_choice, check_int, check_number
from dyntrace.errors import DyntraceError
from dyntrace.io.format import SCALAR_NAME_BYTES
from dyntrace.io.writer import RunWriter
from dyntrace.probes import make_probes
from dyntrace.probes.base import RecordContext
from dyntrace.record_step import RecordStep
from dyntrace.run_meta import describe_run
from dyntrace.scalar_log import ScalarLog
from dyntrace.schedules import as_schedule
from dyntrace.skipped_steps import SkippedSteps

__all__ = ["Recorder"]

_SCALAR_TYPES = (int, float, bool, np.number)


class Recorder:
    """Records a training run to an HDF5 file.

    Args:
        model: the ``nn.Module`` being trained (a DDP wrapper or a ``torch.compile``d module
            is unwrapped for naming).
        optimizer: its ``torch.optim.Optimizer``; its step hooks count and time the steps.
        path: the run file to create (overwritten if it exists).
        every: record every n-th step (int), or a schedule ``step -> bool``
            (see :mod:`dyntrace.schedules`) (default: 10).
        probes: None (scalars, activations, gradients, weights), "all", or a list of probe
            names and/or probe objects (see :mod:`dyntrace.probes`) (default: None).
        config: the run's configuration (JSON-able), stored so the run can be re-made.
        trajectory: keep the flat parameter vector every this many steps (and at the start
            and end) for the trajectory plane of :mod:`dyntrace.landscape`; None to skip.
        trajectory_dtype: "float32" or "float16" (default: "float32").
        flush_every: seconds from ``log()`` (or a record step) to the file (default: 2.0): a
            killed run keeps everything logged more than ``flush_every`` plus the time of one
            write before the kill, provided ``log()`` or a record step came after it. Logged
            tensors wait on their device at most half this long (or until the next record
            step); pending values are moved with one transfer then.
        distributed: what to record when a ``torch.distributed`` process group is
            initialised (ignored otherwise): "reduce" (default) combines the activation
            summaries of every rank's shard (gradients and weights, identical on every rank
            under DDP, are rank 0's); "rank0" records rank 0's shard only, with no
            collective; "per_rank" is "reduce" plus each rank's own activation summaries in
            groups ``activations@rank<r>``. Rank 0 alone creates and writes ``path``.
        process_group: the group to reduce over (default: the whole world).

    On a GPU a record step makes one host–device synchronisation (the transfer of its
    summaries); other steps make none, except the transfer of logged tensors every
    ``flush_every / 2`` seconds. Compiled code (``torch.compile``) runs eagerly on record steps
    (``torch.compiler.set_stance("force_eager")``), so hooks see inside it without a
    recompilation.
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
        check_int("trajectory", trajectory, low=1, optional=True)
        check_choice("trajectory_dtype", trajectory_dtype, ("float32", "float16"))
        check_number("flush_every", flush_every, low=0)
        self.path = os.fspath(path)
        self.schedule = as_schedule(every)
        self.step = 0  # completed iterations: optimizer steps, and steps skipped (see log)
        self._ctx = RecordContext(model, optimizer)
        if (
            trajectory is not None and not self._ctx.params
        ):  # a model without parameters: scalars (and activations) only
            self._ctx.warn_once("trajectory", "the model has no parameters: no trajectory is kept")
            trajectory = None
        self._armed = False
        self._grads_read = False  # this record step's gradients were read (pre-hook or closure)
        self._probe_handles: list = []
        self._stance = None  # a torch.compiler.set_stance("force_eager") while armed
        self._last_lr: dict[int, float] = {}
        self._trajectory = trajectory
        self._closed = False
        self._skips = SkippedSteps(self._ctx.params)
        self._dist = _distributed.coordinator(distributed, process_group)  # Local in a single process
        self._writes = self._dist.writes
        self._pipeline = RecordStep(make_probes(probes), self._ctx, self._dist)
        layouts = self._pipeline.layouts(self._ctx.param_names)
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
                meta = describe_run(
                    self._ctx.module,
                    self._ctx.params,
                    optimizer,
                    config=config,
                    schedule=self.schedule,
                    probes=self._pipeline.probes,
                    device=self._ctx.device,
                    distributed=self._dist.meta(model),
                )
                self._writer = RunWriter(
                    self.path, meta, layouts, trajectory=traj_spec, flush_every=flush_every
                )
            except OSError as exc:
                raise DyntraceError(f"cannot write {self.path}: {exc}") from None
        else:  # another rank: no file, no HDF5 work
            self._writer = _distributed.NullWriter()
        # handed to the writer at half the flush period: the writer has them in the file
        # flush_every after log() (it writes each batch by then, see dyntrace.io.writer)
        self._scalars = ScalarLog(self._writer, flush_every / 2)
        self._pipeline.connect(self._writer, self._scalars)
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
        """Log scalars for the current step (the number of completed iterations).

        Call it once an iteration, after ``optimizer.step()``. Values may be Python numbers
        or one-element tensors; tensors are kept on their device and moved with the next
        record step's transfer (or every ``flush_every`` seconds), never synced one by one.

        A skipped step: when ``log()`` finds that a backward pass ran since the previous
        ``log()`` but no ``optimizer.step()`` did, and the gradients hold NaN or inf (as when
        ``torch.amp.GradScaler`` skips a step), that iteration is counted as a step of its
        own, marked by the scalar ``skipped`` = 1, and its values are logged there; if it was
        a record step, its gradients (with their non-finite counts) and activations are
        recorded. (Finding that out costs one sync, only in such an iteration.)

        ``reduce`` ("mean", "sum", "min" or "max") combines the value across the ranks of
        a ``torch.distributed`` run, e.g. ``rec.log(loss=loss, reduce="mean")`` for the
        global batch's loss; the values wait for the next record step's collective (or
        close), so a step that records nothing communicates nothing. Without ``reduce``
        (or in "rank0" mode) rank 0's values are logged. In a single process it changes
        nothing. (``reduce`` is therefore not a scalar name.)
        """
        _distributed.check_scalar_reduce(reduce)
        if self._closed:
            self._ctx.warn_once(
                "log-closed", f"log() after the Recorder of {self.path} was closed: not recorded"
            )
            return
        try:
            self._notice_skipped_step()
        except Exception as exc:  # the recorder never kills training
            self._ctx.warn_once("skip", f"checking for a skipped step at {self.step + 1} failed: {exc}")
        dist_reduce = reduce is not None and self._dist.communicates
        if not (self._writes or dist_reduce):
            return  # another rank: its values are not recorded
        for name, value in scalars.items():
            if len(name.encode()) > SCALAR_NAME_BYTES:
                self._ctx.warn_once(
                    ("log", name),
                    f"log: a scalar name longer than {SCALAR_NAME_BYTES} bytes is not recorded ({name[:40]}…)",
                )
                continue
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    self._ctx.warn_once(
                        ("log", name), f"log: {name} has {value.numel()} elements, not 1; skipped"
                    )
                    continue
                value = value.detach().reshape(())
            elif not isinstance(value, _SCALAR_TYPES):
                self._ctx.warn_once(
                    ("log", name), f"log: {name} is {type(value).__name__}, not a number; skipped"
                )
                continue
            if dist_reduce:
                self._dist.add_scalar(self.step, name, value, reduce)
            else:
                self._scalars.add(self.step, name, value)
        if dist_reduce and self._dist.pending >= _distributed.MAX_PENDING:
            # every rank logs the same values, so every rank reaches this point together
            self._pipeline.combine_scalars(self.step)
        if self._scalars.due():
            self._pipeline.flush_scalars(self.step)

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
        for handle in self._hooks:
            handle.remove()
        self._disarm()
        try:
            self._close_distributed(failed)
            self._pipeline.flush_scalars(self.step)
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
        return [p.name for p in self._pipeline.probes]

    # -- optimizer hooks ---------------------------------------------------------------------

    def _before_step(self, optimizer, args, kwargs):
        if not self._armed:
            return None
        # args are (optimizer, *step's args): torch passes the bound method's self along
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if not callable(closure):
            self._read_gradients()
            return None

        # optimizer.step(closure): the gradients exist only once the closure has run backward
        # (LBFGS, every Lightning run). Read them right after its first call, before the
        # optimizer changes any weight (LBFGS evaluates the closure again at moved weights).
        def closure_then_read(*c_args, **c_kwargs):
            result = closure(*c_args, **c_kwargs)
            if not self._grads_read:
                self._read_gradients()
            return result

        if "closure" in kwargs:
            return args, {**kwargs, "closure": closure_then_read}
        return (args[0], closure_then_read, *args[2:]), kwargs

    def _after_step(self, optimizer, args, kwargs):
        self.step += 1
        try:
            if self._writes:
                self._log_learning_rates(optimizer)
            if self._armed:
                if not self._grads_read:  # a closure the optimizer never called
                    self._read_gradients()
                self._ctx.stepped = True
                self._pipeline.each("after_step")
                self._pipeline.record(self.step)
            if self._trajectory is not None and self.step % self._trajectory == 0 and self._writes:
                self._save_trajectory()
        except Exception as exc:  # the recorder never kills training
            self._ctx.warn_once("record", f"recording step {self.step} failed: {exc}")
        finally:
            self._disarm()
            self._arm_if_scheduled()

    # -- internals ---------------------------------------------------------------------------

    def _read_gradients(self):
        """Gradients are final: snapshot the weights, then let each probe read what it needs."""
        self._grads_read = True
        ctx = self._ctx
        try:
            self._dist.before_step(ctx)
            if any(p.needs_snapshot for p in self._pipeline.probes):
                ctx.take_snapshot()
        except (
            Exception
        ) as exc:  # e.g. no memory for the snapshot: the probes that need it fail later, guarded
            ctx.warn_once("before_step", f"preparing record step {self.step + 1} failed: {exc}")
        self._pipeline.each("before_step")

    def _arm_if_scheduled(self):
        # Under torch.distributed a failed writer keeps rank 0 in step with the others'
        # collectives (it then records nothing); a single process simply stops arming.
        if self._closed or (self._writer.failed and not self._dist.communicates):
            return
        try:
            armed = bool(self.schedule(self.step + 1))
        except Exception as exc:
            self._ctx.warn_once(
                "schedule", f"the record schedule raised {exc!r}; step {self.step + 1} not recorded"
            )
            armed = False
        if armed:
            self._ctx.step = self.step + 1
            self._ctx.recording = True
            self._grads_read = False
            for handles in self._pipeline.each("attach"):
                self._probe_handles += handles or []
            self._probe_handles += self._dist.attach(self._pipeline.probes)
            self._force_eager()
        self._armed = armed

    def _disarm(self):
        for handle in self._probe_handles:
            handle.remove()
        self._probe_handles = []
        self._armed = False
        self._ctx.recording = False
        self._ctx.release_snapshot()
        if self._stance is not None:
            stance, self._stance = self._stance, None
            try:
                stance.__exit__(None, None, None)
            except Exception as exc:
                self._ctx.warn_once("stance", f"restoring the torch.compile stance failed: {exc}")

    def _force_eager(self):
        """Run compiled code eagerly until the record step ends, so hooks see inside it.

        Hooks registered after ``torch.compile`` traced a graph never run inside the graph;
        the "force_eager" stance runs the original Python instead, without recompiling, and
        the compiled code is used again from the next step. Only if torch.compile is in use
        (``torch._dynamo`` imported) and the stance API exists (torch >= 2.6).
        """
        if "torch._dynamo" not in sys.modules or not hasattr(torch.compiler, "set_stance"):
            return
        try:
            self._stance = torch.compiler.set_stance("force_eager")
        except Exception as exc:
            self._ctx.warn_once(
                "stance",
                f"cannot run compiled code eagerly on record steps ({exc}); "
                "activations inside compiled graphs are not recorded",
            )

    def _notice_skipped_step(self):
        """Count an iteration that ran backward but no ``optimizer.step()`` (see :meth:`log`)."""
        # ranks decide together: a local decision would desynchronise their collectives
        if not self._skips.skipped(self.step, may_sync=not self._dist.communicates):
            return
        self.step += 1
        self._scalars.add(self.step, "skipped", 1.0)
        if self._armed:
            try:
                if not self._grads_read:
                    self._read_gradients()
                self._pipeline.record(self.step)
            except Exception as exc:  # the recorder never kills training
                self._ctx.warn_once("record", f"recording skipped step {self.step} failed: {exc}")
            finally:
                self._disarm()
        self._arm_if_scheduled()

    def _close_distributed(self, failed: bool):
        if not self._dist.communicates:
            return
        if failed:
            dropped = self._dist.drop_pending()
            if dropped and self._writes:
                self._ctx.warn_once(
                    "dist-close",
                    f"{dropped} scalar value(s) logged with reduce= not written: "
                    "the run ended with an exception, so no collective was attempted",
                )
            return
        try:
            self._pipeline.combine_scalars(
                self.step
            )  # always, so that no rank decides alone: one collective a run
        except Exception as exc:  # a rank died meanwhile: keep what rank 0 holds
            self._ctx.warn_once(
                "dist-close",
                f"the last collective at close failed ({exc}); "
                "scalars logged with reduce= since the last record step are lost",
            )

    def _log_learning_rates(self, optimizer):
        for i, group in enumerate(optimizer.param_groups):
            lr = group.get("lr")
            if lr is None:
                continue
            if isinstance(lr, torch.Tensor) and lr.device.type != "cpu":
                if self._armed:  # a device lr (capturable optimizers): with the record's transfer
                    self._scalars.add(self.step, f"lr/{i}", lr.detach().reshape(()))
                continue
            lr = float(lr)
            if self._last_lr.get(i) != lr:
                self._last_lr[i] = lr
                self._scalars.add(self.step, f"lr/{i}", lr)

    def _save_trajectory(self):
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1).float() for p in self._ctx.params])
        # A whole-model host copy, only every `trajectory` steps: the price of the PCA plane.
        self._writer.add_trajectory(self.step, flat.cpu().numpy())
