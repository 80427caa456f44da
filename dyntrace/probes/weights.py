"""Per-parameter weight statistics: moments, norm and a value histogram.

Read before ``optimizer.step()``, i.e. the weights the record step's forward pass used. The
histogram is symmetric around 0; its range is fixed from the first record (1.5 × the
largest |w| then), so a time × value heatmap needs no re-binning; weights that later grow
past it land in the overflow bins.
"""

from __future__ import annotations

import math

import torch

from dyntrace.probes._params import ParameterTensorProbe
from dyntrace.probes.base import Probe
from dyntrace.summaries import DEFAULT_HIST_SAMPLE

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
        self._limit: float | None = None

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
            # Once per run: one host sync fixes the histogram range for good.
            with torch.no_grad():
                largest = max((float(p.detach().abs().max()) for p in ctx.params if p.numel()), default=1.0)
            self._limit = _nice_ceiling(1.5 * largest)
        self._summarise(ctx)

    def options(self):
        return {**super().options(), "bins": self.bins}


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above ``value`` (a readable axis limit)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for mantissa in (1, 2, 2.5, 5, 10):
        if mantissa * power >= value:
            return mantissa * power
    return 10 * power
