"""Whole-model scalars on record steps: gradient norm, parameter norm, update norm, distance.

- ``grad_norm``   ‖g‖₂ over all parameters, once the gradients are final
- ``param_norm``  ‖θ‖₂ after the step
- ``update_norm`` ‖θ_after − θ_before‖₂ of this step
- ``dist_init``   ‖θ − θ₀‖₂, the distance travelled from the first recorded weights (opt-in:
  it keeps a copy of θ₀, model-sized, and costs two more passes over the weights a record)

They go to the run's scalar log next to the loss. (The loss, every logged scalar and each
param group's learning rate are logged on every step by the recorder itself.) Every norm is
one fused ``torch._foreach_norm`` over all tensors, whatever the number of parameters; the
update is the recorder's snapshot turned in place into −Δθ (no allocation), shared with the
steps probe.
"""

from __future__ import annotations

import torch

from dyntrace.checks import check_bool
from dyntrace.probes.base import Probe, tensor_norms

__all__ = ["ScalarsProbe"]


def _global_norm(tensors: list, device) -> torch.Tensor:
    """‖(t₁, t₂, …)‖₂ as a float64 0-d tensor on ``device`` (0 when there is no tensor): the
    per-tensor norms of :func:`~dyntrace.probes.base.tensor_norms`, combined in float64."""
    return torch.linalg.vector_norm(tensor_norms([t for t in tensors if t is not None], device))


class ScalarsProbe(Probe):
    """Global norms on record steps.

    Args:
        distance_from_init: also record ``dist_init`` = ‖θ − θ₀‖₂; keeps a copy of the first
            recorded weights on their device (default: False).
    """

    name = "scalars"
    needs_snapshot = True

    def __init__(self, *, distance_from_init: bool = False):
        self.distance_from_init = check_bool("distance_from_init", distance_from_init)
        self._initial: list[torch.Tensor] | None = None

    def before_step(self, ctx):
        # from the per-parameter ‖g‖ computed once a record step (shared with the gradients probe)
        ctx.emit_scalar("grad_norm", torch.linalg.vector_norm(ctx.grad_norms()))
        if self.distance_from_init and self._initial is None:
            self._initial = [t.clone() for t in ctx.snapshot]  # once per run: a model-sized copy

    def after_step(self, ctx):
        with torch.no_grad():
            params = ctx.params  # (no graph under no_grad: no detach of each)
            ctx.emit_scalar("param_norm", _global_norm(params, ctx.device))
            # from −Δθ, computed once in the snapshot's buffers and shared with the steps probe
            ctx.emit_scalar("update_norm", torch.linalg.vector_norm(ctx.update_norms()))
            if params and self._initial is not None:
                ctx.emit_scalar(
                    "dist_init", _global_norm(torch._foreach_sub(params, self._initial), ctx.device)
                )

    def options(self):
        return {"distance_from_init": self.distance_from_init}
