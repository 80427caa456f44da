"""Per-parameter weight statistics: moments, norm and a value histogram.

Read before ``optimizer.step()``, i.e. the weights the record step's forward pass used. The
histogram is symmetric around 0; its range is fixed from the first record (1.5 × the
largest |w| then), so a time × value heatmap needs no re-binning; weights that later grow
past it land in the overflow bins.
"""

from __future__ import annotations

import torch

from dyntrace.probes._params import ParameterTensorProbe
from dyntrace.probes.base import Probe
from dyntrace.summaries import DEFAULT_HIST_SAMPLE, nice_ceiling

__all__ = ["WeightsProbe"]


class WeightsProbe(ParameterTensorProbe, Probe):
    """Weights of every parameter on record steps. Options: ``bins`` (default 64), ``hist_sample``."""

    name = "weights"
    magnitude = False
    hist_description = "counts of weight values"

    def __init__(self, *, bins: int = 64, hist_sample: int = DEFAULT_HIST_SAMPLE):
        super().__init__(hist_sample=hist_sample)
        if bins < 2:
            raise ValueError(f"Invalid bins: {bins} (expected >= 2)")
        self.bins = bins
        self._limit: torch.Tensor | None = None

    def setup(self, ctx):
        return self.layout(ctx)

    def n_bins(self):
        return self.bins

    def edges_spec(self):
        return (-self._limit, self._limit, self.bins)

    def tensor_of(self, param):
        return param

    def before_step(self, ctx):
        if self._limit is None:
            # Once per run, decided on the device (no sync): 1.5 × the largest |w| then.
            with torch.no_grad():
                tops = [p.detach().abs().amax().double() for p in ctx.params if p.numel()]
                largest = torch.stack([t.to(ctx.device) for t in tops]).amax() if tops else torch.ones((), device=ctx.device)
            self._limit = nice_ceiling(1.5 * largest)
        self._summarise(ctx)

    def options(self):
        return {**super().options(), "bins": self.bins}
