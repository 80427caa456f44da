"""Squared gradient norms at two batch sizes, for the gradient noise scale, with no extra pass.

The simple noise scale B_simple = tr Σ / |G|² (McCandlish et al. 2018) follows from |G_B|² at
two batch sizes B_small < B_big: E|G_B|² = |G|² + tr Σ / B (appendix A; estimator in
:mod:`dyntrace.analysis.curvature`). A training loop already holds two such gradients when
it accumulates gradients over micro-batches or averages them over data-parallel ranks:

- ``sq_small``: |G_small|² of the record step's first micro-batch on this rank. A
  post-accumulate-grad hook on every parameter reads the gradient after the first backward
  (the first contribution c₁); with k contributions the micro-batch's own mean-loss gradient
  is k·c₁ when the loop divides each micro-batch's loss by k (the usual), and the whole
  batch's is k times what the loop holds when it does not: either way the two norms keep the
  same scale, which B_simple divides away.
- ``sq_big``: |G_big|² of the whole step's gradient: single process, the accumulated gradient
  at the end of the last backward (before any clipping); under DistributedDataParallel, the
  averaged gradient read before ``optimizer.step()`` (after the all-reduce, so after the loop's
  clipping, if any: clip after reading, or record without clipping, for an unbiased |G_big|²).
- ``b_small``: examples in the first micro-batch (dim 0 of the first tensor the model receives,
  or the ``batch_size`` option); ``b_big`` = b_small · k · ranks.
- ``ranks``: 1. The probe is sharded: under DDP every rank's values are summed into rank 0's
  file (the recorder's SUM reduction), so averages are field / ``ranks``; the per-rank |G_small|²
  are W independent estimates at the same batch size.

A record step with one micro-batch in a single process has one batch size only and writes
no row. Gradients scaled by a GradScaler are not unscaled here: with mixed precision, read
the noise scale from a run without loss scaling.
"""

from __future__ import annotations

import numpy as np
import torch

from dyntrace.checks import check_int
from dyntrace.probes.base import Probe
from dyntrace.probes.curvature import _batch_dim, _dot
from dyntrace.summaries import FieldSpec, ProbeLayout

__all__ = ["NoiseScaleProbe"]

FIELDS = ("sq_small", "sq_big", "b_small", "b_big", "ranks")


class NoiseScaleProbe(Probe):
    """|G|² of one micro-batch and of the whole step's batch on record steps.

    Args:
        batch_size: examples in a micro-batch (default: dim 0 of the first tensor the model
            receives on the record step's first forward pass).
    """

    name = "noise_scale"
    sharded = True  # each rank's first micro-batch is its own: summed over the ranks

    def __init__(self, *, batch_size: int | None = None):
        check_int("batch_size", batch_size, low=1, optional=True)
        self.batch_size = batch_size
        self._world = 1
        self._ddp = False
        self._active = False
        self._first: dict[int, torch.Tensor] = {}
        self._last: dict[int, torch.Tensor] = {}
        self._count: dict[int, int] = {}
        self._micro = 0
        self._fields: dict[str, torch.Tensor] = {}

    def setup(self, ctx):
        """One column ("model") of five summed fields, and the world size (static); None (nothing
        recorded) under torch.distributed without a DistributedDataParallel model."""
        ddp = torch.nn.parallel.DistributedDataParallel
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self._ddp = distributed and isinstance(ctx.model, ddp)
        if distributed and not self._ddp:
            # FSDP or hand-made reductions: what .grad holds (a shard? this rank's own?) is unknown
            ctx.warn_once(
                self.name,
                "noise_scale: under torch.distributed only a DistributedDataParallel model is supported; not recorded",
            )
            return None
        self._world = torch.distributed.get_world_size(ctx.model.process_group) if self._ddp else 1
        self._active = True
        return ProbeLayout(
            names=["model"],
            fields=[
                FieldSpec(
                    "sq_small",
                    description="|G|² of the first micro-batch's mean-loss gradient (k·c₁), summed over ranks",
                ),
                FieldSpec(
                    "sq_big",
                    description="|G|² of the step's whole (accumulated, reduced) gradient, summed over ranks",
                ),
                FieldSpec(
                    "b_small",
                    unit="examples",
                    description="examples in the first micro-batch, summed over ranks",
                ),
                FieldSpec(
                    "b_big",
                    unit="examples",
                    description="examples in the step's batch (b_small · k · world size), summed over ranks",
                ),
                FieldSpec("ranks", description="ranks that contributed (divide the other fields by it)"),
                FieldSpec(
                    "world_size",
                    "int64",
                    static=True,
                    description="data-parallel ranks of the run (1: one process)",
                ),
            ],
            attrs={"estimator": "McCandlish et al. 2018, appendix A: E|G_B|^2 = |G|^2 + tr(Sigma)/B"},
        )

    def attach(self, ctx):
        """On record steps: a post-accumulate-grad hook per parameter and a root forward pre-hook."""
        if not self._active:
            return []
        self._first, self._last, self._count, self._micro, self._fields = {}, {}, {}, 0, {}
        handles = [ctx.module.register_forward_pre_hook(self._see_inputs, with_kwargs=True)]
        for i, p in enumerate(ctx.params):
            if p.requires_grad:
                handles.append(p.register_post_accumulate_grad_hook(self._accumulated(i)))
        return handles

    def _see_inputs(self, module, args, kwargs):
        if torch.is_grad_enabled() and not self._micro:
            self._micro = _batch_dim(args, kwargs)

    def _accumulated(self, index: int):
        def hook(param):
            grad = param.grad
            if grad is None or grad.is_sparse:
                return
            count = self._count.get(index, 0) + 1
            self._count[index] = count
            sq = _dot([grad.detach()], [grad.detach()])  # no sync: a 0-d tensor on the device
            if count == 1:
                self._first[index] = sq
            if not self._ddp:
                self._last[index] = sq  # the accumulated gradient after this backward

        return hook

    def before_step(self, ctx):
        """Combine: k = contributions per parameter; nothing if there is one batch size only."""
        if not self._first:
            return
        k = max(self._count.values())
        b_small = self.batch_size or self._micro
        if b_small <= 0 or k * self._world < 2:
            return
        device = next(iter(self._first.values())).device
        with torch.no_grad():
            small = torch.stack(list(self._first.values())).sum() * float(k * k)
            if self._ddp:
                grads = [p.grad.detach() for p in ctx.params if p.grad is not None and not p.grad.is_sparse]
                big = _dot(grads, grads)
            else:
                big = torch.stack(list(self._last.values())).sum()
        values = {
            "sq_small": small,
            "sq_big": big,
            "b_small": b_small,
            "b_big": b_small * k * self._world,
            "ranks": 1,
        }
        self._fields = {
            name: (
                v.to(device, torch.float64)
                if isinstance(v, torch.Tensor)
                else torch.full((), float(v), dtype=torch.float64, device=device)
            ).reshape(1)
            for name, v in values.items()
        }

    def collect(self, ctx):
        fields, self._fields = self._fields, {}
        self._first, self._last = {}, {}
        return fields

    def static(self, ctx):
        """The world size: {"world_size": [1]} (a host array)."""
        return {"world_size": np.array([self._world], dtype=np.int64)}

    def options(self):
        return {"batch_size": self.batch_size}
