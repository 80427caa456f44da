"""Shared machinery of probes that summarise one tensor per parameter (gradients, weights)."""

from __future__ import annotations

import numpy as np
import torch

from dyntrace.checks import check_int
from dyntrace.stats import Ratio
from dyntrace.summaries import (
    DEFAULT_HIST_SAMPLE,
    FieldSpec,
    ProbeLayout,
    edges_tensor,
    split_summary,
    summarise_tensors,
    tensor_fields,
)

__all__ = ["ParameterTensorProbe"]


class ParameterTensorProbe:
    """Summaries of one tensor per parameter, packed into a [T, 8 + bins + 2] matrix.

    Subclasses choose the tensor (``tensor_of``), the histogram (``edges``, ``magnitude``)
    and when to read it (``before_step``/``after_step`` call :meth:`_summarise`).
    """

    magnitude = True
    centred = False  # sums around the sample mean: for values clustered far from 0
    unit = ""
    hist_description = ""

    def __init__(self, *, hist_sample: int = DEFAULT_HIST_SAMPLE):
        self.hist_sample = check_int("hist_sample", hist_sample, low=1)
        self._packed: torch.Tensor | None = None
        self._limit: torch.Tensor | None = None  # h of each row's [−h, h], for data-decided ranges

    def layout(self, ctx) -> ProbeLayout:
        bins = self.n_bins()
        return ProbeLayout(
            names=ctx.param_names,
            fields=tensor_fields(bins, unit=self.unit, hist_description=self.hist_description)
            + [FieldSpec("edges", "float64", (bins + 1,), static=True, unit=self.unit)],
            labels={"role": ctx.param_roles()},
            stats=[
                Ratio(
                    "frac_nonfinite",
                    ("nonfinite",),
                    ("count", "nonfinite"),
                    "non-finite elements of the whole tensor",
                )
            ],
            attrs={
                "nonfinite_scope": "tensor",
                "hist_sample": self.hist_sample,
                "hist_scale": "log10_abs" if self.magnitude else "value",
            },
        )

    def n_bins(self) -> int:
        raise NotImplementedError

    def edges_spec(self) -> tuple[float, float, int]:
        """(lo, hi, bins) of the histogram; may be fixed only at the first record."""
        raise NotImplementedError

    def tensor_of(self, param: torch.nn.Parameter) -> torch.Tensor | None:
        raise NotImplementedError

    def _summarise(self, ctx) -> None:
        tensors = []
        for name, param in ctx.named_params:
            tensor = self.tensor_of(param)
            if tensor is not None and tensor.is_sparse:
                ctx.warn_once((self.name, name), f"{self.name}: {name} is sparse; not recorded")
                tensor = None
            tensors.append(tensor)
        self._packed = self._limit = None
        if tensors:
            edges = self.edges_spec()
            packed = summarise_tensors(
                tensors,
                edges,
                cap=self.hist_sample,
                magnitude=self.magnitude,
                centred=self.centred,
                device=ctx.device,
                norms=self.shared_norms(ctx),
                with_limit=edges[0] is None,
            )
            # data-decided ranges: the [T] limits h of [−h, h] come with the rows
            self._packed, self._limit = packed if edges[0] is None else (packed, None)

    def shared_norms(self, ctx) -> torch.Tensor | None:
        """‖t‖₂ of each summarised tensor if the record step computes them once for every
        probe (the gradients', the weights' before the step): their squares are the sums of
        squares, no pass of this probe's own. None: summed here."""
        return None

    def collect(self, ctx) -> dict[str, torch.Tensor]:
        if self._packed is None:
            return {}
        fields = split_summary(self._packed)
        self._packed = None
        return fields

    def static(self, ctx) -> dict:
        lo, hi, bins = self.edges_spec()
        if isinstance(lo, torch.Tensor) or isinstance(hi, torch.Tensor):  # decided on the device
            edges = edges_tensor(lo, hi, bins, ctx.device)
            return {"edges": edges.expand(len(ctx.named_params), -1) if edges.dim() == 1 else edges}
        edges = np.linspace(lo, hi, bins + 1)  # known on the host: no transfer needed
        return {"edges": np.broadcast_to(edges, (len(ctx.named_params), bins + 1))}

    def check(self, ctx, host: dict) -> dict:
        """Count non-finite elements exactly and take moments over the finite ones.

        A tensor whose sum is finite has no NaN or inf, so only tensors with a non-finite sum
        get a second pass (and a sync): rare by nature, a diverging run.
        """
        if "sum" not in host:
            return host
        bad = [i for i, total in enumerate(host["sum"]) if not _finite(total)]
        host["nonfinite"][:] = 0  # a finite sum means every element is finite
        for i in bad:
            tensor = self.tensor_of(ctx.named_params[i][1])
            if tensor is None:
                continue
            flat = tensor.detach().reshape(-1)
            finite = torch.isfinite(flat)
            kept = flat[finite].double()
            host["nonfinite"][i] = int(flat.numel() - finite.sum())
            host["count"][i] = kept.numel()
            host["sum"][i] = float(kept.sum()) if kept.numel() else 0.0
            host["sumsq"][i] = float(kept.dot(kept)) if kept.numel() else 0.0
            host["min"][i] = float(kept.min()) if kept.numel() else float("inf")
            host["max"][i] = float(kept.max()) if kept.numel() else float("-inf")
        return host

    def options(self) -> dict:
        return {"hist_sample": self.hist_sample}


def _finite(value) -> bool:
    return value == value and abs(value) != float("inf")
