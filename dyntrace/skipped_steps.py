"""Iterations that ran backward but no ``optimizer.step()``: a skipped step.

``torch.amp.GradScaler`` skips ``optimizer.step()`` when the gradients hold NaN or inf; the
optimizer's step hooks never run, so the Recorder would fold that iteration into the next
one. :class:`SkippedSteps` notices it at ``rec.log()`` from a cheap fingerprint of the
gradients (no sync) and confirms it with one sync, only in such a suspect iteration.
"""

from __future__ import annotations

import torch

__all__ = ["SkippedSteps"]


class SkippedSteps:
    """Watches the gradients between two ``log()`` calls."""

    def __init__(self, params):
        self._params = params
        self._step = 0  # the step count at the last log()
        self._grads = self.fingerprint()

    def skipped(self, step: int, *, may_sync: bool = True) -> bool:
        """At ``log()`` with ``step`` iterations counted: True when a backward pass ran since
        the last call, no optimizer step did, and the gradients hold NaN or inf. The caller
        then counts the iteration as step ``step + 1``. ``may_sync`` False (ranks that must
        decide together) never finds one."""
        fingerprint = self.fingerprint()
        stepped = step != self._step
        ran_backward = fingerprint != self._grads
        self._grads = fingerprint
        self._step = step
        if stepped or not ran_backward or not may_sync or not self.nonfinite():
            return False
        self._step = step + 1
        return True

    def fingerprint(self) -> tuple:
        """Which gradient tensors exist and how often each was written: cheap (no sync), and
        it changes whenever a backward pass reaches the first few trainable parameters."""
        out = []
        for p in self._params:
            if p.requires_grad:
                g = p.grad
                out.append(None if g is None else (id(g), g._version))
                if len(out) == 4:
                    break
        return tuple(out)

    def nonfinite(self) -> bool:
        grads = [p.grad for p in self._params if p.grad is not None and not p.grad.is_sparse]
        if not grads:
            return False
        with torch.no_grad():
            finite = torch.stack([torch.isfinite(g).all() for g in grads]).all()
        return not bool(finite)  # the sync, in a suspect iteration only
