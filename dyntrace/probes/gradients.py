"""Per-parameter gradient statistics: moments, L2 norm, log10 |g| histogram, zeros, non-finite.

Read at the optimizer's step pre-hook, after every backward pass of the step, so gradient
accumulation and several parameter groups need nothing special. Norm = √sumsq.
"""

from __future__ import annotations

from dyntrace.checks import check_int, check_range
from dyntrace.probes._params import ParameterTensorProbe
from dyntrace.probes.base import Probe
from dyntrace.summaries import DEFAULT_HIST_SAMPLE, log10_magnitude_edges

__all__ = ["GradientsProbe"]


class GradientsProbe(ParameterTensorProbe, Probe):
    """Gradient of every parameter on record steps; parameters without a gradient count 0.

    Options: ``decades=(lo, hi)`` of the log10 |g| histogram (default −12 to 4), ``per_decade``
    bins a decade (default 5), ``hist_sample`` elements binned per tensor (moments are exact).
    """

    name = "gradients"
    unit = "log10 |g|"
    hist_description = "counts of log10 |gradient|"

    def __init__(self, *, decades=(-12.0, 4.0), per_decade: int = 5, hist_sample: int = DEFAULT_HIST_SAMPLE):
        super().__init__(hist_sample=hist_sample)
        lo, hi = check_range("decades", decades)
        self._edges = log10_magnitude_edges(lo, hi, check_int("per_decade", per_decade, low=1))

    def setup(self, ctx):
        return self.layout(ctx)

    def n_bins(self):
        return self._edges[2]

    def edges_spec(self):
        return self._edges

    def tensor_of(self, param):
        return param.grad

    def shared_norms(self, ctx):
        return ctx.grad_norms()

    def before_step(self, ctx):
        self._summarise(ctx)

    def options(self):
        return {**super().options(), "decades": list(self._edges[:2]), "bins": self._edges[2]}
