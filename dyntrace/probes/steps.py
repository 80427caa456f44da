"""Effective step sizes: what ``optimizer.step()`` really did to each parameter.

Δθ = θ_after − θ_before is measured around the step (the recorder's snapshot, taken on the
device on record steps only), so any optimizer works, wrappers such as Lookahead included.
Per parameter, with g the gradient the step consumed:

- η_eff = |Δθ| / |g| per coordinate with g ≠ 0: moments and a log10 histogram, the probe's
  main summary (``run.stat("steps", name, "mean")``, ``run.hist("steps", name)``); the
  coordinates with g = 0 (or no gradient at all) are counted apart in ``grad_zero``
- ``update_norm`` ‖Δθ‖₂, ``param_norm`` ‖θ_before‖₂, ``update_ratio`` ‖Δθ‖₂ / ‖θ_before‖₂
- ``grad_norm`` ‖g‖₂ and ``cos`` = cos(Δθ, −g) = −⟨Δθ, g⟩ / (‖Δθ‖₂ ‖g‖₂)

Plain SGD gives η_eff = lr on every coordinate and cos = 1; momentum, adaptive methods and
weight decay spread η_eff and turn Δθ away from −g. An optimizer with a ``synced`` attribute
(Lookahead: this step ended with a slow-weight sync, so Δθ includes the pull-back) gets a
``synced`` scalar (1 or 0) in the run's scalar log at every record step.

Cost on a record step, per parameter of n elements, besides the snapshot the recorder takes
for every probe that needs one (a copy of the model on its device, alive during the step,
turned in place into −Δθ after it and shared with the scalars probe's update norm): one
n-sized temporary (η_eff); about ten passes over n (‖θ‖ before the step, the difference,
the norms of Δθ and g and their dot, the g = 0 count, the quotient, two clean-ups of the
g = 0 quotients, the moments of η_eff) and a histogram of at most ``hist_sample`` elements.
The gradient is read after the step: torch's optimizers never modify ``.grad`` in place, so
it is the one the step used.

η_eff is measured on the stored weights: in float32, θ − lr·g is rounded to θ's precision,
so a coordinate with |lr·g| near the spacing of θ shows the rounding (SGD's η_eff spreads
around lr by up to spacing(θ)/(2|g|)); float64 weights give lr to ~1e-15.
"""

from __future__ import annotations

import math

import torch

from dyntrace.checks import check_int, check_range
from dyntrace.probes._params import ParameterTensorProbe, _finite
from dyntrace.probes.base import Probe
from dyntrace.summaries import (
    COUNT,
    DEFAULT_HIST_SAMPLE,
    HIST_COUNT,
    MAX,
    MIN,
    NONFINITE,
    ZERO,
    FieldSpec,
    device_constant,
    empty_summary,
    log10_magnitude_edges,
    on_device,
    segment_sums,
    split_summary,
    strided_sample,
    strided_view,
    summarise_tensor,
    summarise_tensors,
)

__all__ = ["StepsProbe"]

# Per-parameter extras of one record, in this order (one float64 row per parameter):
# g = 0 count, g = 0 count in the histogram sample, min η_eff over g ≠ 0, ‖Δθ‖, ‖θ‖, ‖g‖, ⟨Δθ, g⟩.
_EXTRA = ("grad_zero", "sample_zero", "min", "update_norm", "param_norm", "grad_norm", "dot")


class StepsProbe(ParameterTensorProbe, Probe):
    """Effective per-coordinate step size η_eff = |Δθ|/|g| and per-parameter update geometry.

    Options (keyword-only): ``decades=(lo, hi)`` of the log10 η_eff histogram (default
    −10.1 to 5.9: offset half a bin so that round learning rates 10^k fall mid-bin, not on an
    edge where rounding splits them), ``per_decade`` bins a decade (default 5),
    ``hist_sample`` elements binned per tensor (default 16384; the moments are exact).

    Reference: the update-to-weight ratio as a health check follows Karpathy's CS231n notes;
    per-coordinate step sizes as in Cockpit (Schneider et al., NeurIPS 2021).
    """

    name = "steps"
    needs_snapshot = True
    unit = "log10 (|Δθ|/|g|)"
    hist_description = "counts of log10 η_eff = log10(|Δθ|/|g|) over coordinates with g ≠ 0"

    def __init__(self, *, decades=(-10.1, 5.9), per_decade: int = 5, hist_sample: int = DEFAULT_HIST_SAMPLE):
        super().__init__(hist_sample=hist_sample)
        lo, hi = check_range("decades", decades)
        self._edges = log10_magnitude_edges(lo, hi, check_int("per_decade", per_decade, low=1))
        self._grads: list | None = None
        self._extra: torch.Tensor | None = None
        self._param_norms: torch.Tensor | None = None
        self._grad_norms: torch.Tensor | None = None

    def setup(self, ctx):
        layout = self.layout(ctx)
        layout.fields += [
            FieldSpec(
                "grad_zero",
                "int64",
                description="coordinates with g = 0 or no gradient (not in the η_eff summary)",
            ),
            FieldSpec("update_norm", unit="parameter units", description="‖Δθ‖₂ of this step"),
            FieldSpec("param_norm", unit="parameter units", description="‖θ‖₂ before the step"),
            FieldSpec("update_ratio", description="‖Δθ‖₂ / ‖θ‖₂ (θ before the step); inf if θ = 0"),
            FieldSpec("grad_norm", description="‖g‖₂ of the gradient the step used"),
            FieldSpec("cos", description="cos(Δθ, −g) = −⟨Δθ, g⟩ / (‖Δθ‖₂‖g‖₂); NaN if either is 0"),
        ]
        layout.attrs["formula"] = "eta_eff = |theta_after - theta_before| / |g| over coordinates with g != 0"
        return layout

    def n_bins(self):
        return self._edges[2]

    def edges_spec(self):
        return self._edges

    def before_step(self, ctx):
        # References only (no copy): the gradients the coming step consumes; and ‖θ‖ before it.
        self._grads = [p.grad for p in ctx.params]
        self._param_norms = ctx.param_norms()  # computed once a record step, shared
        self._grad_norms = ctx.grad_norms()

    def after_step(self, ctx):
        if self._grads is None or self._param_norms is None:
            raise RuntimeError("steps: no gradients read before the step")
        if not ctx.named_params:
            return
        minus = ctx.minus_update()  # −Δθ, computed once in the snapshot's buffers, shared
        with torch.no_grad():
            params = [p.detach() for p in ctx.params]
            regular = [i for i, (p, g) in enumerate(zip(params, self._grads)) if _regular(p, g)]
            rows, extras = [None] * len(params), [None] * len(params)
            if regular:  # every ordinary parameter at once: fused ops, one batched summary
                norms = self._grad_norms
                if len(regular) < len(params):
                    norms = norms.index_select(0, device_constant(tuple(regular), norms.device, torch.long))
                packed, extra = self._measure_all(
                    [minus[i] for i in regular], [self._grads[i].detach() for i in regular], norms, ctx.device
                )
                for k, i in enumerate(regular):
                    rows[i], extras[i] = packed[k], extra[k]
            for i, (name, _) in enumerate(ctx.named_params):
                if rows[i] is None:  # no gradient, sparse, complex, misshapen or empty: one by one
                    rows[i], extras[i] = self._measure(ctx, name, params[i], minus[i], self._grads[i])
        device = ctx.device
        self._packed = torch.stack([r.to(device) for r in rows])
        own = torch.stack([e.to(device) for e in extras])  # g = 0, sample g = 0, min, ‖g‖, ⟨−Δθ, g⟩
        self._extra = torch.cat(
            [own[:, :3], ctx.update_norms()[:, None], self._param_norms[:, None], own[:, 3:4], -own[:, 4:5]],
            dim=1,
        )
        self._param_norms = self._grad_norms = None
        synced = getattr(ctx.optimizer, "synced", None)
        if synced is not None:  # Lookahead and any optimizer that says when it synced
            ctx.emit_scalar("synced", torch.full((), float(bool(synced)), dtype=torch.float64, device=device))

    def _measure_all(self, minus, grads, grad_norms, device):
        """Packed η_eff summaries [T, …] and rows [T, 5] (g = 0 count, its count in the sample,
        min η_eff, ‖g‖, ⟨−Δθ, g⟩) of ordinary parameters, from −Δθ (:meth:`RecordContext.minus_update`).

        ‖g‖ from :meth:`RecordContext.grad_norms` (one fused norm a record step, shared), η_eff =
        |−Δθ/g| by one fused division (a per-record allocation the size of the parameters) and an
        in-place abs, the summaries in one batched :func:`summarise_tensors`; a dot, a zero count
        and the minimum stay per tensor.
        """
        dots = torch.stack([on_device(_dot(m, g), device) for m, g in zip(minus, grads)]).double()
        if any(g.device != device for g in grads):  # parameters on several devices (rare)
            n_zero = torch.stack([(g.numel() - torch.count_nonzero(g)).to(device) for g in grads]).double()
            sample_zero = torch.stack(
                [(strided_sample(g.reshape(-1), self.hist_sample) == 0).sum().to(device) for g in grads]
            ).double()
        else:  # every parameter at once where a fused form exists
            n_zero = _zero_counts(grads, device)
            views = [strided_view(g.reshape(-1), self.hist_sample) for g in grads]  # η's sample, same stride
            sizes = tuple(v.numel() for v in views)
            sample_zero = segment_sums(torch.cat(views).eq(0).float(), sizes, device)
        # η_eff in Δθ's buffers. Where g = 0 the quotient is +inf (Δθ ≠ 0) or NaN (Δθ = 0): made
        # +inf first, so that the minimum is over g ≠ 0, then 0, so that the g = 0 coordinates
        # add nothing to sum, sumsq, max or the log histogram (zeros are not binned); collect()
        # takes them out of count and zero. No boolean mask needed.
        etas = torch._foreach_div(minus, grads)
        torch._foreach_abs_(etas)
        mins = torch.stack(
            [on_device(e.nan_to_num_(nan=math.inf, posinf=math.inf).amin(), device) for e in etas]
        ).double()
        for e in etas:
            e.nan_to_num_(posinf=0.0)
        packed = summarise_tensors(etas, self._edges, cap=self.hist_sample, magnitude=True, device=device)
        extra = torch.stack([n_zero, sample_zero, mins, grad_norms, dots], dim=1)
        return packed, extra

    def _measure(self, ctx, name, param, minus, grad):
        """The raw packed η_eff summary and the row of :meth:`_measure_all` of one parameter,
        on its device, from its −Δθ.

        Few, large operations: the per-coordinate work is here, the small corrections of
        every parameter's summary are done together in :meth:`collect`.
        """
        unusual = grad is not None and (grad.is_sparse or grad.shape != param.shape or param.is_complex())
        if grad is None or unusual or param.numel() == 0:
            if unusual:
                ctx.warn_once(
                    (self.name, name),
                    f"steps: the gradient of {name} is sparse, complex or misshapen; η_eff not recorded",
                )
            # No gradient is g = 0 everywhere: ‖g‖ = 0, ⟨Δθ, g⟩ = 0 (so cos is NaN), and the
            # row counts them as zeros for collect() to take out again, as for any g = 0.
            missing = float(param.numel()) if grad is None else 0.0
            row = empty_summary(self._edges[2], param.device)
            row[COUNT] = row[ZERO] = missing
            zero = torch.zeros((), dtype=torch.float64, device=param.device)
            extra = torch.stack([zero + missing, zero, zero + math.inf, zero, zero])
            return row, extra
        grad = grad.detach()
        dot = _dot(minus, grad)
        n_zero = (param.numel() - torch.count_nonzero(grad)).double()
        sample_zero = (
            strided_sample(grad.reshape(-1), self.hist_sample) == 0
        ).sum()  # η's sample, same stride
        # η_eff = |−Δθ/g| (a per-record allocation; −Δθ is shared). Where g = 0 the quotient is
        # +inf (Δθ ≠ 0) or NaN (Δθ = 0): made +inf first, so that the minimum is over g ≠ 0,
        # then 0, so that the g = 0 coordinates add nothing to sum, sumsq, max or the log
        # histogram (zeros are not binned); collect() takes them out of count and zero. No
        # boolean mask needed.
        eta = minus.div(grad).abs_()
        nonzero_min = eta.nan_to_num_(nan=math.inf, posinf=math.inf).amin()
        eta.nan_to_num_(posinf=0.0)
        packed = summarise_tensor(eta, self._edges, cap=self.hist_sample, magnitude=True)
        return packed, torch.stack(
            [n_zero, sample_zero.double(), nonzero_min.double(), _norm(grad).double(), dot.double()]
        )

    def collect(self, ctx):
        if self._packed is None:
            return {}
        packed, extra = self._packed, self._extra
        self._packed = self._extra = None
        n_zero = extra[:, 0]
        packed[:, COUNT] -= n_zero  # coordinates with g ≠ 0
        packed[:, ZERO] -= n_zero  # g ≠ 0 but Δθ = 0
        packed[:, NONFINITE] = 0.0  # non-finite η_eff were zeroed; check() counts them exactly
        packed[:, HIST_COUNT] -= extra[:, 1]  # the sample's g ≠ 0 coordinates
        packed[:, MIN] = extra[:, 2]  # min over g ≠ 0 (+inf if none)
        packed[:, MAX] = torch.where(packed[:, COUNT] > 0, packed[:, MAX], -math.inf)
        fields = split_summary(packed)
        update, param, grad = extra[:, 3], extra[:, 4], extra[:, 5]
        fields.update(
            grad_zero=n_zero,
            update_norm=update,
            param_norm=param,
            update_ratio=update / param,
            grad_norm=grad,
            cos=-extra[:, 6] / (update * grad),
        )
        return fields

    def check(self, ctx, host):
        """Exact η_eff moments for tensors with a non-finite gradient or update (rare).

        The device pass maps non-finite η_eff to 0; a non-finite ‖g‖ or ‖Δθ‖ shows that this
        happened, and only then is η_eff recomputed here (with host syncs), in a diverging
        run. The recorder releases the snapshot (now −Δθ) after this call, so −Δθ is still there.
        """
        grads, self._grads = self._grads, None
        if "sum" not in host:
            return host
        bad = [
            i
            for i in range(len(host["sum"]))
            if not (
                _finite(host["grad_norm"][i]) and _finite(host["update_norm"][i]) and _finite(host["sum"][i])
            )
        ]
        if not bad or grads is None:
            return host
        minus = ctx.minus_update()  # −Δθ, alive until the recorder releases it after this call
        with torch.no_grad():
            for i in bad:
                param, grad = ctx.params[i].detach(), grads[i]
                if grad is None or grad.is_sparse or grad.shape != param.shape:
                    continue
                g = grad.detach().reshape(-1)
                eta = (minus[i].reshape(-1) / g).abs()[g != 0]
                finite = torch.isfinite(eta)
                kept = eta[finite].double()
                host["grad_zero"][i] = int((g == 0).sum())
                host["nonfinite"][i] = int(eta.numel() - finite.sum())
                host["count"][i] = kept.numel()
                host["sum"][i] = float(kept.sum()) if kept.numel() else 0.0
                host["sumsq"][i] = float(kept.dot(kept)) if kept.numel() else 0.0
                host["min"][i] = float(kept.min()) if kept.numel() else math.inf
                host["max"][i] = float(kept.max()) if kept.numel() else -math.inf
                host["zero"][i] = int((kept == 0).sum())
        return host

    def options(self):
        return {**super().options(), "decades": list(self._edges[:2]), "bins": self._edges[2]}


def _regular(param: torch.Tensor, grad) -> bool:
    """A parameter whose η_eff the batched path measures: a dense real gradient of its shape."""
    return (
        grad is not None
        and not grad.is_sparse
        and grad.shape == param.shape
        and param.numel() > 0
        and param.is_floating_point()
        and not param.is_complex()
        and grad.dtype == param.dtype
    )


def _norm(x: torch.Tensor) -> torch.Tensor:
    """‖x‖₂ in x's own precision (float32 for half types, whose range a norm can exceed).

    torch's CPU reductions sum in cascades (relative error near 1e-7 for float32), and a
    float64 reduction of a float32 tensor costs about eight times as much on a CPU.
    """
    return torch.linalg.vector_norm(x, dtype=torch.float32 if x.element_size() < 4 else None)


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """⟨x, y⟩ over all elements, in float32 at least."""
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    x, y = x.reshape(-1), y.reshape(-1)
    return torch.dot(x if x.dtype == dtype else x.to(dtype), y if y.dtype == dtype else y.to(dtype))


def _zero_counts(tensors: list, device) -> torch.Tensor:
    """Elements exactly 0 of each tensor, float64 [T]: one fused count of the nonzero ones
    (``_foreach_norm`` of order 0, exact in float32 below 2²⁴ elements) where every tensor is
    float32/float64 and smaller, else one ``count_nonzero`` each."""
    sizes = tuple(float(t.numel()) for t in tensors)
    if all(t.dtype in (torch.float32, torch.float64) and t.numel() < 1 << 24 for t in tensors):
        nonzero = torch.stack(torch._foreach_norm(tensors, 0)).double()
    else:
        nonzero = torch.stack([torch.count_nonzero(t) for t in tensors]).double()
    return device_constant(sizes, device, torch.float64) - nonzero
