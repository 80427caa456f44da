"""Adaptive learning rates from the 'adaptive' probe: ψ per coordinate over training, RAdam's
ρ_t and r_t against their formulas, and the measured Var[ψ] against the analytic curve
(Liu et al., ICLR 2020; REFERENCES §2).
"""

from __future__ import annotations

import numpy as np

from dyntrace.analysis import moments, psi_variance_approx, psi_variance_exact, rectification, rho_t
from dyntrace.plots.data import missing
from dyntrace.plots.heatmap import hist_heatmaps, select
from dyntrace.plots.layout import legend, log_if_wide, single
from dyntrace.plots.theme import NEUTRAL, series_color

__all__ = ["plot_adaptive_lr", "plot_rectification", "plot_psi_variance", "adam_parameter"]

_HOW = (
    "record it with Recorder(..., probes=[..., 'adaptive']) and an Adam-family, Adamax, Adafactor, "
    "AdaGrad or RMSprop optimizer"
)
_READS = (
    "the 'adaptive' probe reads Adam's exp_avg_sq, Adamax's exp_inf, Adafactor's factored second moments, "
    "AdaGrad's sum and RMSprop's square_avg"
)


def _adaptive_names(run, kinds=("adam", "adagrad", "rmsprop", "adamax", "adafactor")) -> list[str]:
    """Tensors of the 'adaptive' probe with state of one of ``kinds``; MissingDataError if none."""
    if "adaptive" not in run.probes or len(run.steps("adaptive")) == 0:
        optimizer = run.meta.get("optimizer")
        name = optimizer.get("class") if isinstance(optimizer, dict) else None
        if "adaptive" in run.probes and name:  # recorded, but the optimizer has nothing to read
            raise missing(run, f"'adaptive' probe records ({name} keeps no adaptive state)", _READS)
        raise missing(run, "'adaptive' probe records", _HOW)
    kinds_of = run.kinds("adaptive")
    names = [n for n in run.names("adaptive") if kinds_of.get(n) in kinds]
    if not names:
        raise missing(run, f"parameters with {' or '.join(kinds)} state in the 'adaptive' probe", _HOW)
    return names


def adam_parameter(run, param=None) -> str:
    """``param`` checked to be an Adam-family tensor of the run, or the first such tensor."""
    names = _adaptive_names(run, ("adam",))
    if param is None:
        return names[0]
    if param not in names:
        raise missing(run, f"Adam-family state for {param!r} (has: {', '.join(names)})", _HOW)
    return param


def plot_adaptive_lr(run, /, *, ax=None, params=None, max_params: int = 8, max_windows: int = 400):
    """Distribution of the adaptive learning rate ψ of each parameter over training: one
    time × ψ heatmap per tensor (log y, log colour). ψ = 1/(√v̂ + ε) for Adam-family state,
    lr/(√G + ε) for AdaGrad, lr/(√v + ε) for RMSprop. ``params``: names or indices (default:
    at most ``max_params`` of the tensors with adaptive state, evenly spread).
    """
    available = _adaptive_names(run)
    if params is None:
        names = [
            available[i]
            for i in np.unique(
                np.linspace(0, len(available) - 1, min(max_params, len(available))).round().astype(int)
            )
        ]
    else:
        names = select(run, "adaptive", params, max_params)
    order = run.names("adaptive")
    optimizer = run.meta.get("optimizer")
    what = f" ({optimizer['class']})" if isinstance(optimizer, dict) and optimizer.get("class") else ""
    return hist_heatmaps(
        run,
        "adaptive",
        names,
        ax=ax,
        title=f"Adaptive learning rate ψ per coordinate over training{what}",
        ylabel="ψ",
        max_windows=max_windows,
        panel_titles=[f"{order.index(n) + 1}: {n}" for n in names],
    )


def _beta2(run, param) -> float:
    _, beta2 = run.field("adaptive", "beta2", param)
    beta2 = beta2[np.isfinite(beta2)]
    if beta2.size == 0:
        raise missing(run, f"β₂ of {param!r}", _HOW)
    if np.ptp(beta2) > 0:
        raise ValueError(
            f"{run.path}: β₂ of {param!r} changes during the run; the analytic curves assume one value"
        )
    return float(beta2[0])


def _curve_t(steps, log_x: bool) -> np.ndarray:
    last = max(int(np.max(steps)), 2)
    if log_x:
        return np.unique(np.geomspace(1, last, 400).round())
    return np.arange(1, last + 1, max(1, last // 800), dtype=np.float64)


def plot_rectification(run, /, *, ax=None, param=None):
    """RAdam's ρ_t (left axis, log) and rectification term r_t (right axis) at the record
    steps, read from the file (markers), over the formulas of :mod:`dyntrace.analysis.radam`
    (lines), with the thresholds ρ_t = 4 (the paper) and ρ_t = 5 (torch's RAdam). For a RAdam
    run, the first rectified step is marked.

    ``param``: an Adam-family tensor (default: the first); ρ_t depends on its state's step
    and its group's β₂. Raises MissingDataError without Adam-family 'adaptive' records.
    """
    param = adam_parameter(run, param)
    steps, rho = run.field("adaptive", "rho", param)
    _, r = run.field("adaptive", "r", param)
    _, state_step = run.field("adaptive", "state_step", param)
    _, rectified = run.field("adaptive", "rectified", param)
    beta2 = _beta2(run, param)
    with single(ax, figsize=(8, 4.6)) as (fig, ax, owns):
        log_x = log_if_wide(ax, state_step, axis="x", decades=2.0)
        t = _curve_t(state_step, log_x)
        rho_color, r_color = series_color(0), series_color(1)
        ax.plot(t, rho_t(t, beta2), color=rho_color, lw=1.2, alpha=0.6, gid="rho:formula")
        ax.plot(
            state_step, rho, ls="none", marker="o", ms=4, color=rho_color, label="ρ_t (recorded)", gid="rho"
        )
        ax.axhline(4.0, color=NEUTRAL, ls=":", lw=1.0, label="ρ_t = 4 (paper)", gid="threshold:paper")
        ax.axhline(5.0, color=NEUTRAL, ls="--", lw=1.0, label="ρ_t = 5 (torch)", gid="threshold:torch")
        ax.set_yscale("log")
        ax.set_ylabel("ρ_t", color=rho_color)
        twin = ax.twinx()
        twin.grid(False)
        twin.plot(t, rectification(t, beta2), color=r_color, lw=1.2, alpha=0.6, gid="r:formula")
        twin.plot(state_step, r, ls="none", marker="s", ms=4, color=r_color, label="r_t (recorded)", gid="r")
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("r_t", color=r_color)
        first = state_step[rectified == 1]
        if first.size:
            ax.axvline(
                first.min(),
                color=r_color,
                alpha=0.5,
                lw=1.0,
                label=f"rectified from step {first.min():g}",
                gid="first_rectified",
            )
        ax.set_xlabel("optimizer step t (the state's step)")
        ax.set_title(f"RAdam rectification: ρ_t and r_t ({param}, β₂ = {beta2:g})")
        handles, labels = ax.get_legend_handles_labels()
        more_h, more_l = twin.get_legend_handles_labels()
        legend(ax, owns=owns, handles=handles + more_h, labels=labels + more_l)
    return fig


def psi_variance(run, param) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(state steps, recorded ρ_t, Var[ψ] over the coordinates of ``param``) per record."""
    steps, count = run.field("adaptive", "count", param)
    _, total = run.field("adaptive", "sum", param)
    _, total_sq = run.field("adaptive", "sumsq", param)
    _, state_step = run.field("adaptive", "state_step", param)
    _, rho = run.field("adaptive", "rho", param)
    _, std = moments(count, total, total_sq)
    return state_step, rho, std**2


def plot_psi_variance(run, /, *, ax=None, param=None, sigma=None):
    """Var[ψ] over the coordinates of an Adam-family tensor at each record (markers) against
    the analytic variance for g ~ N(0, σ²): exact σ⁻²[ρ/(ρ−2) − (ρ/2)(Γ((ρ−1)/2)/Γ(ρ/2))²]
    (solid) and the first-order ρ/(2(ρ−2)(ρ−4)σ²) behind r_t (dashed), at ρ_t of the run's
    β₂. Log axes.

    ``sigma``: the gradient scale σ; default: √(mean v̂) at the last record, read from the
    recorded accumulator (v̂ → E[g²] = σ² for zero-mean gradients). The analytic curves hold
    for i.i.d. gradients of one scale (the paper's setup); coordinates of different scales
    add spread to the measurement.
    """
    param = adam_parameter(run, param)
    state_step, rho, measured = psi_variance(run, param)
    beta2 = _beta2(run, param)
    if sigma is None:
        sigma, how = _sigma_from_state(run, param, beta2), "σ from mean v̂ at the last record"
    else:
        sigma, how = float(sigma), "σ given"
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma: expected a positive gradient scale, got {sigma!r}")
    with single(ax, figsize=(8, 4.6)) as (fig, ax, owns):
        log_x = log_if_wide(ax, state_step, axis="x", decades=2.0)
        t = _curve_t(state_step, log_x)
        curve_rho = rho_t(t, beta2)
        exact = psi_variance_exact(curve_rho, sigma)
        approx = psi_variance_approx(curve_rho, sigma)
        ax.plot(
            t,
            np.where(np.isfinite(exact), exact, np.nan),
            color=series_color(0),
            lw=1.5,
            label="exact (scaled inv-χ², ρ_t)",
            gid="exact",
        )
        ax.plot(
            t, approx, color=series_color(0), ls="--", lw=1.2, label="first order (behind r_t)", gid="approx"
        )
        ax.plot(
            state_step,
            measured,
            ls="none",
            marker="o",
            ms=4,
            color=series_color(1),
            label=f"measured over {param}",
            gid="measured",
        )
        ax.set_yscale("log")
        ax.set_ylabel("Var[ψ]")
        ax.set_xlabel("optimizer step t (the state's step)")
        ax.set_title(
            f"Variance of Adam's adaptive learning rate ψ: measured vs analytic (β₂ = {beta2:g}, {how} = {sigma:.3g})"
        )
        legend(ax, owns=owns)
    return fig


def _sigma_from_state(run, param, beta2) -> float:
    _, count = run.field("adaptive", "count", param)
    _, acc_sum = run.field("adaptive", "acc_sum", param)
    _, state_step = run.field("adaptive", "state_step", param)
    n = min(len(count), len(acc_sum), len(state_step))
    last = n - 1
    if last < 0 or count[last] <= 0:
        raise missing(run, f"accumulator records of {param!r}", _HOW)
    v_hat = acc_sum[last] / count[last] / (1.0 - beta2 ** state_step[last])
    return float(np.sqrt(v_hat))
