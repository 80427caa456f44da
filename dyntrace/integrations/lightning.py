"""Record a Lightning ``Trainer.fit`` with one callback.

    from dyntrace.integrations.lightning import DyntraceCallback

    trainer = lightning.Trainer(max_epochs=5, callbacks=[DyntraceCallback("run.h5", every=10)])
    trainer.fit(model, train_loader, val_loader)

The Recorder is made in ``on_fit_start``, when the strategy has set up the model and its
optimizers; steps are ``optimizer.step()`` calls (Lightning's ``global_step``). Logged:

- ``loss`` every step: the ``loss`` that ``training_step`` returned, summed over the
  micro-batches of a step (Lightning already divides each by ``accumulate_grad_batches``);
- every metric ``training_step`` logged with ``self.log(..., on_step=True)``, at its step;
- every metric the validation loop logged (``val_loss``, ``val_acc``, …), at the step the
  validation ran after, under the name it was logged with (the sanity check is skipped);
- the learning rate of each parameter group (``lr/<i>``), by the Recorder.

The file is closed in ``on_fit_end`` and, when fit raises, in ``on_exception`` (a file closed
after a failure holds everything up to the failing step). Under DDP every rank records as
:class:`dyntrace.Recorder` does (rank 0 writes; losses are averaged over the ranks).
Lightning is imported from ``lightning.pytorch``, or from ``pytorch_lightning`` when only the
older package is installed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import torch

from dyntrace.integrations import require, unwrap_optimizer

_pl = require("lightning.pytorch", "pytorch_lightning", extra="lightning")

__all__ = ["DyntraceCallback"]


class DyntraceCallback(_pl.Callback):
    """Records ``Trainer.fit`` into a dyntrace run file.

    Args:
        path: the run file to write (overwritten at each ``fit``).
        every: record the probes every n-th optimizer step, or a schedule (default 10;
            see :class:`dyntrace.Recorder`).
        probes: None (the default set), "all", or a list of probe names/objects.
        optimizer_index: which of ``trainer.optimizers`` to record (default 0); steps are
            counted on it.
        **recorder_options: passed to :class:`dyntrace.Recorder` (``trajectory=``,
            ``distributed=``, ``config=``, …). Without ``config`` the module's ``hparams`` and
            the trainer's epoch/step limits are stored.
    """

    def __init__(self, path, every=10, probes=None, *, optimizer_index: int = 0, **recorder_options):
        if isinstance(optimizer_index, bool) or not isinstance(optimizer_index, int) or optimizer_index < 0:
            raise ValueError(f"Invalid optimizer_index: {optimizer_index!r} (expected an int >= 0)")
        self.path = os.fspath(path)
        self.every = every
        self.probes = probes
        self.optimizer_index = optimizer_index
        self.recorder_options = recorder_options
        self.recorder = None
        self._loss = None  # the step's loss so far (a device tensor: no sync per batch)
        self._batches = 0
        self._seen: dict = {}
        self._source: dict[str, str] = {}  # metric name → where it is computed
        self._logged_step = 0

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[{self.path}]"  # several callbacks (files) in one trainer

    # -- lifecycle -----------------------------------------------------------------------------

    def on_fit_start(self, trainer, pl_module):
        from dyntrace.recorder import Recorder

        self.close()  # a previous fit with this callback
        optimizers = trainer.optimizers
        if len(optimizers) <= self.optimizer_index:
            raise ValueError(
                f"Invalid optimizer_index: {self.optimizer_index} (the trainer has {len(optimizers)} optimizer(s))"
            )
        if len(optimizers) > 1:
            warnings.warn(
                f"dyntrace: the module has {len(optimizers)} optimizers; recording the steps of "
                f"optimizer {self.optimizer_index} ({type(optimizers[self.optimizer_index]).__name__})",
                stacklevel=2,
            )
        options = dict(self.recorder_options)
        options.setdefault("config", _config(trainer, pl_module))
        optimizer = unwrap_optimizer(optimizers[self.optimizer_index])
        self.recorder = Recorder(pl_module, optimizer, self.path, self.every, self.probes, **options)
        self._loss, self._batches, self._logged_step, self._seen = None, 0, 0, dict(trainer.callback_metrics)
        self._source = {}

    def on_fit_end(self, trainer, pl_module):
        self.close()

    def on_exception(self, trainer, pl_module, exception):
        if self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            recorder.__exit__(type(exception), exception, exception.__traceback__)

    def teardown(self, trainer, pl_module, stage):
        if stage == "fit":
            self.close()

    def close(self) -> None:
        """Write what is pending and close the run file (done by the callback when fit ends)."""
        if self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            recorder.close()

    # -- training ------------------------------------------------------------------------------

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        rec = self.recorder
        if rec is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            loss = loss.detach().reshape(())
            self._loss = loss if self._loss is None else self._loss + loss
            self._batches += 1
        if rec.step == self._logged_step:
            return  # gradients still accumulating: the step ends with a later batch
        self._logged_step = rec.step
        scalars = self._fresh(trainer.callback_metrics, "step")
        if self._loss is not None:
            # automatic optimisation divides each micro-batch's loss by the accumulation: the sum
            # is the step's loss; a manual training_step returns its own losses: their mean
            scalars["loss"] = self._loss if pl_module.automatic_optimization else self._loss / self._batches
        self._log(scalars)
        self._loss, self._batches = None, 0

    def on_train_epoch_end(self, trainer, pl_module):
        # metrics logged with on_epoch=True are reduced over the epoch by now
        if self.recorder is not None:
            self._log(self._fresh(trainer.callback_metrics, "epoch"))

    # -- validation ----------------------------------------------------------------------------

    def on_validation_end(self, trainer, pl_module):
        if self.recorder is None or trainer.sanity_checking:
            return
        self._log(self._fresh(trainer.callback_metrics, "validation"))

    # -- internals -----------------------------------------------------------------------------

    def _fresh(self, metrics: Mapping, source: str) -> dict:
        """The one-value metrics of ``source`` ("step", "epoch" or "validation") that Lightning
        (re)computed since the last call.

        ``trainer.callback_metrics`` keeps every metric's latest value and replaces the values
        it recomputes, so "not the same object as last time" means "computed now", found
        without comparing values (which would sync a device per metric). Lightning recomputes
        a few metrics of other sources at these points too (the training step metrics at a
        validation's end, the epoch metrics at the next batch): a name belongs to the first
        source it was found fresh at, and is logged only at that source's points.
        """
        out = {}
        seen, self._seen = self._seen, dict(metrics)
        for name, value in metrics.items():
            if seen.get(name) is value or self._source.setdefault(name, source) != source:
                continue
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                out[name] = value.detach().reshape(())
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = value
        return out

    def _log(self, scalars: dict) -> None:
        if scalars:
            self.recorder.log(
                reduce="mean", **scalars
            )  # the mean over DDP ranks; nothing else in one process


def _config(trainer, pl_module) -> dict:
    hparams = dict(getattr(pl_module, "hparams", {}) or {})
    return {
        "trainer": "lightning",
        "module": type(pl_module).__name__,
        "hparams": hparams,
        "max_epochs": trainer.max_epochs,
        "max_steps": trainer.max_steps,
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "precision": str(getattr(trainer, "precision", "")),
        "world_size": trainer.world_size,
    }
