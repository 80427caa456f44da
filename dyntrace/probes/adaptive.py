"""Adaptive learning rates read from the optimizer's state, right after ``optimizer.step()``.

Per parameter, by the family of its optimizer (the ``kind`` column of the probe):

- ``adam`` (Adam, AdamW, NAdam, RAdam, SparseAdam and any optimizer with ``betas``/``eps``
  and torch's state names): ψ = 1/(√v̂ + ε) per coordinate with v̂ = v/(1 − β₂ᵗ), v the state's
  ``exp_avg_sq`` (``max_exp_avg_sq`` with AMSGrad) and t its ``step``; the learning rate is
  not in ψ (the update is lr·m̂·ψ). Also ρ_t = ρ∞ − 2tβ₂ᵗ/(1 − β₂ᵗ), ρ∞ = 2/(1 − β₂) − 1, and
  r_t = √[(ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t)] (NaN where ρ_t ≤ 4), recomputed from
  ``step`` and ``betas`` as ``torch.optim.RAdam`` does (Liu et al., ICLR 2020; REFERENCES §2)
- ``adagrad``: the accumulated G (state ``sum``) and the rate ψ = lr_t/(√G + ε), with
  lr_t = lr/(1 + (t − 1)·lr_decay) as torch's Adagrad
- ``rmsprop``: the running average v (state ``square_avg``, minus ``grad_avg``² when centered)
  and the rate ψ = lr/(√v + ε)
- ``adamax``: the infinity-norm accumulator u (state ``exp_inf``, u_t = max(β₂u, |g| + ε)) and
  ψ = 1/u (the update is lr/(1 − β₁ᵗ)·m·ψ)
- ``adafactor`` (``torch.optim.Adafactor``): the second-moment estimate V̂, rebuilt from the
  factored row and column statistics (``row_var``, ``col_var``; ``variance`` for vectors) as
  the optimizer does, and ψ = 1/√max(V̂, ε₁²); the accumulator columns summarise V̂

ψ gets moments and a log10 histogram (the probe's main summary: ``run.stat("adaptive",
name, "mean")``, ``"std"``, ``run.hist("adaptive", name)``; the coefficient of variation is
std/mean), the accumulator its sum, min and max. Parameters of an optimizer without such
state (SGD, Adadelta, ASGD, Rprop, LBFGS, …) are skipped: their columns stay empty and the probe's group
carries a ``note`` attribute saying so. A wrapper (Lookahead) is looked through to the
optimizer it holds in ``.optimizer``; the two share ``param_groups``.

Cost on a record step, per parameter of n elements: one n-sized temporary (ψ), about ten
passes over n (four for ψ, four for its moments, two for the accumulator's sum and extremes)
and a histogram of at most ``hist_sample`` elements; no snapshot. No host sync: a ``step`` kept
on the device (capturable or fused Adam) travels with the summaries; ρ_t and r_t are computed on
the host afterwards.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dyntrace.checks import check_int, check_range
from dyntrace.probes._params import ParameterTensorProbe
from dyntrace.probes.base import Probe
from dyntrace.summaries import DEFAULT_HIST_SAMPLE, FieldSpec, log10_magnitude_edges, on_device

__all__ = [
    "AdaptiveProbe",
    "FAMILIES",
    "inner_optimizer",
    "optimizer_family",
    "radam_rho",
    "radam_rectification",
]

#: Families of adaptive state the probe reads, and the state tensor holding the accumulator.
FAMILIES = {
    "adam": "exp_avg_sq",
    "adagrad": "sum",
    "rmsprop": "square_avg",
    "adamax": "exp_inf",
    "adafactor": "row_var or variance",
}
#: Thresholds on ρ_t: torch's RAdam (and the authors' code) rectify when ρ_t > 5, the paper when ρ_t > 4.
TORCH_THRESHOLD = 5.0
PAPER_THRESHOLD = 4.0

_ADAM_CLASSES = tuple(
    getattr(torch.optim, n)
    for n in ("Adam", "AdamW", "NAdam", "RAdam", "SparseAdam")
    if hasattr(torch.optim, n)
)


def inner_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer that keeps the state: follows ``.optimizer`` through wrappers (Lookahead)."""
    seen = {id(optimizer)}
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
        if id(optimizer) in seen:
            break
        seen.add(id(optimizer))
    return optimizer


def optimizer_family(optimizer: torch.optim.Optimizer, group: dict) -> str:
    """'adam', 'adagrad', 'rmsprop', 'adamax', 'adafactor' or 'none' for one parameter group.

    Decided from the class (torch's optimizers) or, for other optimizers, from the group's
    hyperparameters: state is created lazily at the first step, so it cannot be read at setup.
    """
    if isinstance(optimizer, _ADAM_CLASSES):
        return "adam"
    if isinstance(optimizer, torch.optim.Adagrad):
        return "adagrad"
    if isinstance(optimizer, torch.optim.RMSprop):
        return "rmsprop"
    if isinstance(optimizer, torch.optim.Adamax):
        return "adamax"
    if type(optimizer).__name__ == "Adafactor" and type(optimizer).__module__.startswith("torch.optim"):
        return "adafactor"
    if type(optimizer).__module__.startswith("torch.optim"):
        return "none"  # SGD, Adadelta, ASGD, Rprop, LBFGS: no per-coordinate adaptive rate
    if "betas" in group and "eps" in group:
        return "adam"
    if "lr_decay" in group and "eps" in group:
        return "adagrad"
    if "alpha" in group and "eps" in group and "centered" in group:
        return "rmsprop"
    return "none"


def radam_rho(t, beta2):
    """ρ_t = ρ∞ − 2tβ₂ᵗ/(1 − β₂ᵗ) with ρ∞ = 2/(1 − β₂) − 1, element-wise on arrays (ρ₁ = 1).

    1 − β₂ᵗ is taken as −expm1(t·ln β₂) so that it keeps its digits at small t.
    """
    t = np.asarray(t, dtype=np.float64)
    beta2 = np.asarray(beta2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_b = np.log(beta2)
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        return rho_inf - 2.0 * t * np.exp(t * log_b) / -np.expm1(t * log_b)


def radam_rectification(rho, beta2):
    """r_t = √[(ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t)], NaN where ρ_t ≤ 4."""
    rho = np.asarray(rho, dtype=np.float64)
    rho_inf = 2.0 / (1.0 - np.asarray(beta2, dtype=np.float64)) - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho))
    return np.where(rho > PAPER_THRESHOLD, r, np.nan)


class AdaptiveProbe(ParameterTensorProbe, Probe):
    """The adaptive learning rate ψ of every parameter, from the optimizer's state.

    Options (keyword-only): ``decades=(lo, hi)`` of the log10 ψ histogram (default −6 to 10:
    Adam's ψ is at most 1/ε = 1e8), ``per_decade`` bins a decade (default 5), ``hist_sample``
    elements binned per tensor (default 16384; the moments are exact).
    """

    name = "adaptive"
    centred = True  # ψ clusters tightly around its mean late in training: keep Var[ψ] exact
    unit = "log10 ψ"
    hist_description = "counts of log10 ψ, the per-coordinate adaptive learning rate"

    def __init__(self, *, decades=(-6.0, 10.0), per_decade: int = 5, hist_sample: int = DEFAULT_HIST_SAMPLE):
        super().__init__(hist_sample=hist_sample)
        lo, hi = check_range("decades", decades)
        self._edges = log10_magnitude_edges(lo, hi, check_int("per_decade", per_decade, low=1))
        self._kinds: list[str] = []
        self._index: dict[int, int] = {}
        self._radam = False
        self._inner = None
        self._groups: dict[int, dict] = {}
        self._acc: torch.Tensor | None = None
        self._steps: list = []  # per parameter: the state's step (a tensor or a number), or NaN
        self._beta2: list[float] = []

    # -- layout ----------------------------------------------------------------------------

    def setup(self, ctx):
        inner = inner_optimizer(ctx.optimizer)
        family = {
            id(p): optimizer_family(inner, group) for group in inner.param_groups for p in group["params"]
        }
        self._kinds = [family.get(id(p), "none") for p in ctx.params]
        self._index = {id(p): i for i, p in enumerate(ctx.params)}
        self._radam = isinstance(inner, torch.optim.RAdam) or type(inner).__name__ == "RAdam"
        layout = self.layout(ctx)
        layout.fields += [
            FieldSpec(
                "acc_sum", description="Σ of the accumulator (exp_avg_sq, sum or square_avg) over coordinates"
            ),
            FieldSpec("acc_min", reduce="min", description="smallest accumulator element"),
            FieldSpec("acc_max", reduce="max", description="largest accumulator element"),
            FieldSpec(
                "state_step",
                unit="optimizer steps",
                reduce="max",
                description="the optimizer state's step t; NaN if none",
            ),
            FieldSpec(
                "beta2", reduce="max", description="β₂ of the parameter's group (adam kind); NaN otherwise"
            ),
            FieldSpec("rho", reduce="max", description="ρ_t = ρ∞ − 2tβ₂ᵗ/(1−β₂ᵗ) (adam kind); NaN otherwise"),
            FieldSpec(
                "r", reduce="max", description="RAdam's rectification r_t (adam kind, ρ_t > 4); NaN otherwise"
            ),
            FieldSpec(
                "rectified",
                "int8",
                reduce="max",
                description=(
                    "RAdam only: 1 if this step was rectified (ρ_t > 5, torch), 0 if not; "
                    "-1 for other optimizers"
                ),
            ),
            FieldSpec(
                "rectified_paper",
                "int8",
                reduce="max",
                description="RAdam only: 1 if ρ_t > 4 (the paper's rule), 0 if not; -1 for other optimizers",
            ),
        ]
        layout.labels["kind"] = list(self._kinds)
        layout.attrs["optimizer"] = type(inner).__name__
        layout.attrs["psi"] = (
            "adam: 1/(sqrt(v/(1-beta2^t)) + eps); adagrad: lr_t/(sqrt(G) + eps); rmsprop: lr/(sqrt(v) + eps)"
        )
        skipped = [name for name, kind in zip(ctx.param_names, self._kinds) if kind == "none"]
        if skipped:
            what = (
                "every parameter"
                if len(skipped) == len(self._kinds)
                else (
                    f"{len(skipped)} of {len(self._kinds)} parameters "
                    f"({', '.join(skipped[:5])}{', …' if len(skipped) > 5 else ''})"
                )
            )
            layout.attrs["note"] = (
                f"{type(inner).__name__} keeps no adaptive state (exp_avg_sq, sum or square_avg) for {what}: "
                "not recorded (empty columns)"
            )
        return layout

    def n_bins(self):
        return self._edges[2]

    def edges_spec(self):
        return self._edges

    # -- recording -------------------------------------------------------------------------

    def after_step(self, ctx):
        if all(kind == "none" for kind in self._kinds):
            return  # nothing to read: no records at all (the note says why)
        self._inner = inner_optimizer(ctx.optimizer)
        self._groups = {id(p): group for group in self._inner.param_groups for p in group["params"]}
        with torch.no_grad():
            self._summarise(ctx)  # ψ of every parameter, through tensor_of
            self._read_accumulators(ctx)

    def _state(self, param):
        """(kind, state, group) of a parameter, or None if it has no adaptive state yet."""
        index = self._index.get(id(param))
        kind = self._kinds[index] if index is not None else "none"
        if kind == "none":
            return None
        state = self._inner.state.get(param) if self._inner is not None else None
        group = self._groups.get(id(param))
        if not state or group is None:
            return None
        if kind == "adafactor":
            if "variance" not in state and "row_var" not in state:
                return None
        elif FAMILIES[kind] not in state:
            return None
        if kind == "adam" and "step" not in state:
            return None  # no bias correction without the step count
        if kind == "adagrad" and group.get("lr_decay") and "step" not in state:
            return None
        return kind, state, group

    def _read_accumulators(self, ctx):
        bins_device = self._packed.device if self._packed is not None else ctx.device
        rows, steps, beta2 = [], [], []
        nan = float("nan")
        for i, param in enumerate(ctx.params):
            found = self._state(param)
            if found is None:
                rows.append(_empty_accumulator(bins_device))
                steps.append(nan)
                beta2.append(nan)
                continue
            kind, state, group = found
            acc = _adafactor_variance(state, group) if kind == "adafactor" else state[FAMILIES[kind]]
            lo, hi = torch.aminmax(acc.reshape(-1))
            # summed in the state's precision (a float64 reduction of float32 costs ~10x on a CPU)
            rows.append(on_device(torch.stack([acc.sum(), lo, hi]).double(), bins_device))
            steps.append(state.get("step", nan))  # read with the record's transfer, never here
            beta2.append(float(group["betas"][1]) if kind == "adam" else nan)
        self._acc = torch.stack(rows)
        self._steps, self._beta2 = steps, beta2

    def tensor_of(self, param):
        found = self._state(param)
        if found is None:
            return None
        kind, state, group = found
        eps = group["eps"]
        step = state.get("step")
        if kind == "adam":
            v = (
                state["max_exp_avg_sq"]
                if group.get("amsgrad") and "max_exp_avg_sq" in state
                else state["exp_avg_sq"]
            )
            beta2 = group["betas"][1]
            if isinstance(step, torch.Tensor):  # on the device (capturable, fused) or a CPU scalar:
                scale = (1 - beta2 ** step.double()).sqrt()  # used as it is, no sync
            else:
                scale = math.sqrt(1 - beta2 ** float(step))
            # as torch's Adam: denom = √v / √(1 − β₂ᵗ) + ε; per-record allocation: ψ
            return v.sqrt().div_(scale).add_(eps).reciprocal_()  # (optimizer state: no graph to detach)
        if kind == "adamax":
            return state["exp_inf"].detach().reciprocal()  # eps is inside exp_inf already
        if kind == "adafactor":
            eps1 = group["eps"][0] if group["eps"][0] is not None else torch.finfo(param.dtype).eps
            return _adafactor_variance(state, group).clamp_(min=eps1 * eps1).rsqrt_()
        lr = group["lr"]  # a number, or a tensor (capturable optimizers): used as it is
        if kind == "adagrad":
            decay = group.get("lr_decay", 0.0)
            if decay:
                t = step.double() if isinstance(step, torch.Tensor) else step
                lr = lr / (1 + (t - 1) * decay)
            return state["sum"].detach().sqrt().add_(eps).reciprocal_().mul_(lr)
        v = state["square_avg"].detach()
        if group.get("centered") and "grad_avg" in state:
            v = v.addcmul(state["grad_avg"], state["grad_avg"], value=-1)
        return v.sqrt().add_(eps).reciprocal_().mul_(lr)

    def collect(self, ctx):
        fields = super().collect(ctx)
        if not fields:
            return fields
        acc, self._acc = self._acc, None
        fields.update(acc_sum=acc[:, 0], acc_min=acc[:, 1], acc_max=acc[:, 2])
        fields["state_step"] = _steps_tensor(self._steps, acc.device)
        return fields

    def check(self, ctx, host):
        """Exact moments where ψ is not finite (the base class), then ρ_t, r_t on the host."""
        host = super().check(ctx, host)
        steps = np.asarray(host["state_step"], dtype=np.float64)
        beta2 = np.asarray(self._beta2, dtype=np.float64)
        adam = np.array([kind == "adam" for kind in self._kinds]) & np.isfinite(beta2) & (steps >= 1)
        rho = np.where(adam, radam_rho(np.where(adam, steps, 1.0), np.where(adam, beta2, 0.5)), np.nan)
        r = np.where(adam, radam_rectification(np.where(adam, rho, 0.0), np.where(adam, beta2, 0.5)), np.nan)
        radam = adam & self._radam
        host["state_step"] = steps
        host["beta2"] = beta2
        host["rho"] = rho
        host["r"] = r
        host["rectified"] = np.where(radam, rho > TORCH_THRESHOLD, -1).astype(np.int8)
        host["rectified_paper"] = np.where(radam, rho > PAPER_THRESHOLD, -1).astype(np.int8)
        return host

    def options(self):
        return {**super().options(), "decades": list(self._edges[:2]), "bins": self._edges[2]}


def _empty_accumulator(device) -> torch.Tensor:
    """[sum, min, max] of no elements: 0, +inf, −inf (filled on the device, no copy from the host)."""
    out = torch.zeros(3, dtype=torch.float64, device=device)
    out[1], out[2] = math.inf, -math.inf
    return out


def _adafactor_variance(state, group) -> torch.Tensor:
    """Adafactor's second-moment estimate V̂ as ``torch.optim.Adafactor`` rebuilds it: the
    outer product of the row and column statistics over the mean row statistic (factored,
    ≥ 2-D parameters), or the kept ``variance`` (vectors). A new tensor (per-record allocation)."""
    if state.get("row_var") is not None and state.get("col_var") is not None:
        row, col = state["row_var"].detach(), state["col_var"].detach()
        eps1 = group["eps"][0] if group["eps"][0] is not None else torch.finfo(row.dtype).eps
        return (row @ col).div_(row.mean(dim=-2, keepdim=True).clamp(min=eps1))
    return state["variance"].detach().clone()


def _steps_tensor(steps: list, device) -> torch.Tensor:
    """The state's step of every parameter as one float64 vector, for the record's transfer.

    Torch keeps ``step`` as a CPU scalar tensor (a number in old optimizers), or on the
    device for capturable/fused optimizers. The vector stays on the CPU when every step is
    there — the transfer then reads it without touching the GPU — and goes to ``device``
    only when some step already lives on it.
    """
    on_device = any(isinstance(s, torch.Tensor) and s.device.type != "cpu" for s in steps)
    where = device if on_device else torch.device("cpu")
    return torch.stack(
        [
            s.detach().to(where, torch.float64).reshape(())
            if isinstance(s, torch.Tensor)
            else torch.full((), float(s), dtype=torch.float64, device=where)
            for s in steps
        ]
    )
