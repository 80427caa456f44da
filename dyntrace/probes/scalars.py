"""Whole-model scalars on record steps: gradient norm, parameter norm, update norm, distance.

- ``grad_norm``   ‖g‖₂ over all parameters, after backward
- ``param_norm``  ‖θ‖₂ after the step
- ``update_norm`` ‖θ_after − θ_before‖₂ of this step
- ``dist_init``   ‖θ − θ₀‖₂, the distance travelled from the first recorded weights

They go to the run's scalar log next to the loss. (The loss, every logged scalar and each
param group's learning rate are logged on every step by the recorder itself.)
"""

from __future__ import annotations

import torch

from dyntrace.probes.base import Probe

__all__ = ["ScalarsProbe"]


def _global_norm(tensors, device) -> torch.Tensor:
    """‖(t₁, t₂, …)‖₂: per-tensor norms in the tensors' precision (a float64 norm copies the
    tensor on the CPU), combined in float64 on ``device`` (where the result goes when there is
    no tensor)."""
    norms = [torch.linalg.vector_norm(t.detach()).double() for t in tensors if t is not None]
    if not norms:
        return torch.zeros((), dtype=torch.float64, device=device)
    device = norms[0].device
    return torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))


class ScalarsProbe(Probe):
    """Global norms on record steps. Option ``distance_from_init`` keeps a copy of θ₀ (model-sized)."""

    name = "scalars"
    needs_snapshot = True

    def __init__(self, *, distance_from_init: bool = True):
        self.distance_from_init = distance_from_init
        self._initial: list[torch.Tensor] | None = None

    def before_step(self, ctx):
        ctx.emit_scalar("grad_norm", _global_norm((p.grad for p in ctx.params if p.grad is not None and not p.grad.is_sparse), ctx.device))
        if self.distance_from_init and self._initial is None:
            self._initial = [t.clone() for t in ctx.snapshot]  # once per run: a model-sized copy

    def after_step(self, ctx):
        with torch.no_grad():
            params = [p.detach() for p in ctx.params]
            ctx.emit_scalar("param_norm", _global_norm(params, ctx.device))
            ctx.emit_scalar("update_norm", _global_norm((p - s for p, s in zip(params, ctx.snapshot)), ctx.device))
            if self._initial is not None:
                ctx.emit_scalar("dist_init", _global_norm((p - s for p, s in zip(params, self._initial)), ctx.device))

    def options(self):
        return {"distance_from_init": self.distance_from_init}
