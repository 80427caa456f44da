"""Curvature during training: sharpness against the stability threshold, the Hessian trace, and
the gradient noise scale against the batch size in use."""

from __future__ import annotations

import numpy as np

from dyntrace.analysis.curvature import TRACE, TRACE_SE, noise_scale_of_run, sharpness_of
from dyntrace.errors import MissingDataError
from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, single, step_label
from dyntrace.plots.theme import NEUTRAL, series_color

__all__ = ["plot_sharpness", "plot_hessian_trace", "plot_batch_noise_scale", "noise_scale_missing"]

_THRESHOLD_LABEL = {
    "hessian": "threshold 2/η ((2+2β)/η with momentum)",
    "preconditioned": "threshold (2+2β₁)/((1−β₁)η)",
}
_VALUE_LABEL = {
    "hessian": "sharpness λ_max(H)",
    "preconditioned": "λ_max(P⁻¹H), Adam's preconditioned sharpness",
}


def plot_sharpness(
    run, /, *, ax=None, preconditioned: bool | None = None, label: str | None = None, color=None
):
    """The top Hessian eigenvalue over training against the threshold the optimizer is stable
    below (Cohen et al. 2021): 2/η for gradient descent, (2 + 2β)/η with heavy-ball momentum;
    for Adam the preconditioned sharpness λ_max(P⁻¹H) against (2 + 2β₁)/((1 − β₁)η) (Cohen et
    al. 2022). Recorded by the ``curvature`` probe.

    Args:
        run: a run recorded with ``CurvatureProbe``.
        ax: the Axes to draw on (default: a new figure).
        preconditioned: draw λ_max(P⁻¹H) (True), λ_max(H) (False), or the preconditioned one
            where the run has it (None, default).
        label: legend label of the curve (default: what it is); the threshold is drawn dashed
            in the same colour.
        color: the curve's colour (default: the first series colour).
    """
    steps, values, threshold, kind = sharpness_of(run, preconditioned=preconditioned)
    color = series_color(0) if color is None else color
    with single(ax) as (fig, ax, owns):
        ax.plot(
            steps,
            values,
            color=color,
            lw=1.6,
            label=label or _VALUE_LABEL[kind],
            gid=f"sharpness:{label or kind}",
        )
        if np.isfinite(threshold).any():
            ax.plot(
                steps,
                threshold,
                color=color,
                lw=1.1,
                ls="--",
                alpha=0.9,
                drawstyle="steps-post",
                label=f"{label}: threshold" if label else _THRESHOLD_LABEL[kind],
                gid=f"threshold:{label or kind}",
            )
        ax.set_ylabel(_VALUE_LABEL[kind])
        step_label(ax)
        ax.set_title(
            "Preconditioned sharpness against its stability threshold"
            if kind == "preconditioned"
            else "Sharpness against the stability threshold"
        )
        legend(ax, owns=owns)
    return fig


def plot_hessian_trace(run, /, *, ax=None, color=None):
    """The Hessian trace tr H over training (Hutchinson's estimate; band: ± 2 standard errors
    of the mean over the probe's Rademacher vectors). Recorded by the ``curvature`` probe.

    Args:
        run: a run recorded with ``CurvatureProbe(..., trace_samples > 0)``.
        ax: the Axes to draw on (default: a new figure).
        color: the curve's colour (default: the first series colour).
    """
    if TRACE not in run.scalar_names:
        raise missing(
            run,
            f"scalar {TRACE!r}",
            "recorded by the 'curvature' probe (CurvatureProbe(loss_fn=..., trace_samples=10))",
        )
    steps, trace = run.scalar(TRACE)
    color = series_color(0) if color is None else color
    with single(ax) as (fig, ax, owns):
        if TRACE_SE in run.scalar_names:
            se_steps, se = run.scalar(TRACE_SE)
            if np.array_equal(se_steps, steps):
                ax.fill_between(
                    steps,
                    trace - 2 * se,
                    trace + 2 * se,
                    color=color,
                    alpha=0.2,
                    lw=0,
                    label="± 2 standard errors",
                )
        ax.plot(steps, trace, color=color, lw=1.6, label="tr H (Hutchinson)", gid="trace")
        ax.set_ylabel("Hessian trace tr H")
        step_label(ax)
        ax.set_title("Hessian trace over training")
        legend(ax, owns=owns)
    return fig


def plot_batch_noise_scale(run, /, *, ax=None, beta: float = 0.98):
    """The gradient noise scale B_simple = tr Σ / |G|² (McCandlish et al. 2018) over training
    against the batch size in use: well below B_simple a step is dominated by gradient noise
    (a larger batch would cut the number of steps almost in proportion); well above it, extra
    examples buy little. From the ``noise_scale`` probe (micro-batches, data-parallel ranks) or
    the ``curvature`` probe (its measurement batch against the training batch).

    Args:
        run: a run with gradient norms at two batch sizes.
        ax: the Axes to draw on (default: a new figure).
        beta: EMA factor over records of the two unbiased estimates before dividing (default
            0.98). Gaps in the curve: the averaged |G|² estimate is ≤ 0 there (the gradient is
            lost in the noise; B_simple is beyond what the records resolve).
    """
    steps, scale, batch = noise_scale_of_run(run, beta=beta)
    with single(ax) as (fig, ax, owns):
        ax.plot(
            steps,
            scale.b_simple,
            color=series_color(0),
            lw=1.8,
            label="noise scale B_simple = tr Σ / |G|²",
            gid="b_simple",
        )
        ax.plot(
            steps,
            batch,
            color=NEUTRAL,
            lw=1.2,
            ls="--",
            drawstyle="steps-post",
            label="batch size in use",
            gid="batch",
        )
        values = np.concatenate([scale.b_simple[np.isfinite(scale.b_simple)], batch])
        if values.size and np.all(values > 0):
            ax.set_yscale("log")
        ax.set_ylabel("examples")
        step_label(ax)
        ax.set_title("Gradient noise scale against the batch size")
        legend(ax, owns=owns)
    return fig


def noise_scale_missing(run) -> str | None:
    """Why ``run`` has no gradient noise scale to draw (one line), or None: the data has two
    sources (the ``noise_scale`` probe's records, the ``curvature`` probe's scalars)."""
    try:
        noise_scale_of_run(run)
    except MissingDataError as exc:
        return str(exc).removeprefix(f"{run.path}: ")
    return None
