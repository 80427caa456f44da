"""Per-parameter weight statistics: moments, norm and a value histogram.

Read before ``optimizer.step()``, i.e. the weights the record step's forward pass used. The
histogram's range follows the weights: at every record each parameter's histogram spans
[−h, h] with h the largest |w| rounded up to a readable number (1, 2, 2.5, 5 × 10ᵏ), stored
per record as ``hist_lo``/``hist_hi``; the ``bins`` equal bins fill it. So weights that grow
(or shrink) over training are always binned in range, with full resolution at every record;
the reader's :meth:`~dyntrace.io.reader.Run.hist` gives the edges of each record, and the
figures re-bin them onto one grid for a time × value heatmap.
"""

from __future__ import annotations

import numpy as np

from dyntrace.checks import check_int
from dyntrace.probes._params import ParameterTensorProbe
from dyntrace.probes.base import Probe
from dyntrace.summaries import DEFAULT_HIST_SAMPLE, FieldSpec

__all__ = ["WeightsProbe"]


class WeightsProbe(ParameterTensorProbe, Probe):
    """Weights of every parameter on record steps, with a value histogram whose range follows them.

    h = nice_ceiling(max |w|) per parameter and record; bins cover [−h, h].

    Args:
        bins: bins of the value histogram (default: 64).
        hist_sample: elements binned per tensor (default: 16384; the moments are exact).
    """

    name = "weights"
    magnitude = False
    hist_description = "counts of weight values in equal bins on [hist_lo, hist_hi] of the record"

    def __init__(self, *, bins: int = 64, hist_sample: int = DEFAULT_HIST_SAMPLE):
        super().__init__(hist_sample=hist_sample)
        self.bins = check_int("bins", bins, low=2)

    def setup(self, ctx):
        layout = self.layout(ctx)
        for spec in layout.fields:
            if spec.name == "edges":  # the unit grid; a record's edges are lo + (hi − lo) · edges
                layout.fields[layout.fields.index(spec)] = FieldSpec(
                    "edges",
                    "float64",
                    (self.bins + 1,),
                    static=True,
                    description="bin edges as fractions of [hist_lo, hist_hi]: edges = lo + (hi - lo) * this",
                )
        layout.fields += [
            FieldSpec("hist_lo", reduce="min", description="lower end of this record's histogram range (−h)"),
            FieldSpec("hist_hi", reduce="max", description="upper end of this record's histogram range (h)"),
        ]
        layout.attrs["hist_range"] = "per_record"
        return layout

    def n_bins(self):
        return self.bins

    def edges_spec(self):
        return (None, None, self.bins)  # [−h, h] per parameter, decided by the data (no sync)

    def tensor_of(self, param):
        return param

    def shared_norms(self, ctx):
        return ctx.param_norms()

    def before_step(self, ctx):
        self._summarise(ctx)

    def collect(self, ctx):
        limit = self._limit
        fields = super().collect(ctx)
        if fields:  # the range each row was binned in (from its own min and max)
            fields["hist_lo"], fields["hist_hi"] = -limit, limit
        return fields

    def static(self, ctx):
        unit = np.linspace(0.0, 1.0, self.bins + 1)  # known on the host: no transfer needed
        return {"edges": np.broadcast_to(unit, (len(ctx.named_params), self.bins + 1))}

    def options(self):
        return {**super().options(), "bins": self.bins}
