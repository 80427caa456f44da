"""Record a Hugging Face ``transformers.Trainer`` run with one callback.

    from dyntrace.integrations.transformers import DyntraceCallback

    with DyntraceCallback("run.h5", every=10) as recording:   # closes the file even if train() raises
        Trainer(model, args, train_dataset=train, eval_dataset=val, callbacks=[recording]).train()

The Recorder is made in ``on_train_begin``, once the Trainer has created its optimizer (the
``torch.optim.Optimizer`` inside accelerate's wrapper is recorded); steps are optimizer steps
(the Trainer's ``global_step``). Logged:

- ``loss`` every step: the ``loss`` the model returns in training (a forward hook reads it
  on the device, no sync), averaged over the micro-batches of a step (summed where the
  Trainer passes ``num_items_in_batch``, which already divides by the whole step's items).
  A Trainer that computes the loss outside the model (``compute_loss_func``, label
  smoothing) gives no such output: then the ``loss`` the Trainer logs is used, at its
  ``logging_steps``;
- every metric of an evaluation at the step it ran after, ``eval_*`` renamed ``val_*``
  (``val_loss``, ``val_accuracy``, … as dyntrace's figures and diagnoses expect), without
  the timing entries (``*_runtime``, ``*_per_second``);
- the learning rate of each parameter group (``lr/<i>``), by the Recorder.

The file is closed in ``on_train_end``. The Trainer has no hook for a failed ``train()``:
used as a context manager (above) the callback closes the file when ``train()`` raises,
a new ``train()`` closes the previous file first, and a process that ends with the exception
closes it at exit; until then the file is readable, up to its last flush. Under DDP every
rank records as :class:`dyntrace.Recorder` does (rank 0 writes; losses are averaged over the
ranks).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from dyntrace.integrations import require, unwrap_optimizer

_transformers = require("transformers", extra="transformers")

__all__ = ["DyntraceCallback"]

_TIMINGS = ("_runtime", "_samples_per_second", "_steps_per_second")


class DyntraceCallback(_transformers.TrainerCallback):
    """Records ``transformers.Trainer.train()`` into a dyntrace run file.

    Args:
        path: the run file to write (overwritten at each ``train()``).
        every: record the probes every n-th optimizer step, or a schedule (default 10;
            see :class:`dyntrace.Recorder`).
        probes: None (the default set), "all", or a list of probe names/objects.
        **recorder_options: passed to :class:`dyntrace.Recorder` (``trajectory=``,
            ``distributed=``, ``config=``, …). Without ``config`` the training arguments and
            the model's config are stored.
    """

    def __init__(self, path, every=10, probes=None, **recorder_options):
        self.path = os.fspath(path)
        self.every = every
        self.probes = probes
        self.recorder_options = recorder_options
        self.recorder = None
        self._hook = None
        self._loss = None  # the step's model losses so far (a device tensor: no sync per batch)
        self._batches = 0
        self._summed = False
        self._model_loss = False  # whether the model returned its loss in this run

    # -- lifecycle -----------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        from dyntrace.recorder import Recorder

        self.close()  # a previous train() (e.g. one that raised) with this callback
        if model is None or optimizer is None:
            raise ValueError("DyntraceCallback needs the Trainer's model and optimizer in on_train_begin")
        options = dict(self.recorder_options)
        options.setdefault("config", _config(args, model))
        self.recorder = Recorder(
            model, unwrap_optimizer(optimizer), self.path, self.every, self.probes, **options
        )
        self._loss, self._batches, self._model_loss = None, 0, False
        self._hook = model.register_forward_hook(self._capture_loss, with_kwargs=True)

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self, *, failed: BaseException | None = None) -> None:
        """Write what is pending and close the run file (done by the callback when training ends)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            if failed is None:
                recorder.close()
            else:
                recorder.__exit__(type(failed), failed, failed.__traceback__)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(failed=exc)
        return False

    # -- training ------------------------------------------------------------------------------

    def _capture_loss(self, module, args, kwargs, output):
        if not (module.training and torch.is_grad_enabled()):
            return  # an evaluation or generation forward
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            return
        loss = loss.detach().reshape(())
        self._loss = loss if self._loss is None else self._loss + loss
        self._batches += 1
        self._summed = kwargs.get("num_items_in_batch") is not None
        self._model_loss = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.recorder is None or self._loss is None:
            return
        loss = self._loss if self._summed else self._loss / self._batches
        self.recorder.log(loss=loss, reduce="mean")  # the mean over DDP ranks; nothing else in one process
        self._loss, self._batches = None, 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.recorder is None or self._model_loss or not logs or "loss" not in logs:
            return
        self.recorder.log(loss=float(logs["loss"]), reduce="mean")  # the model returns no loss: the Trainer's

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.recorder is None or not metrics:
            return
        scalars = {}
        for name, value in metrics.items():
            if (
                name == "epoch"
                or name.endswith(_TIMINGS)
                or isinstance(value, bool)
                or not isinstance(value, (int, float))
            ):
                continue
            scalars["val_" + name[len("eval_") :] if name.startswith("eval_") else name] = value
        if scalars:
            self.recorder.log(**scalars)  # the Trainer gathers evaluation over the ranks itself


def _config(args, model) -> dict:
    config = getattr(model, "config", None)
    return {
        "trainer": "transformers",
        "model": type(model).__name__,
        "model_config": config.to_dict() if hasattr(config, "to_dict") else None,
        "training_args": args.to_dict() if hasattr(args, "to_dict") else None,
    }
