"""Figures of a recorded run. No torch; importing this changes no matplotlib setting.

Every figure is ``plot_<subject>(run, /, *, ax=None, ...) -> Figure``: it reads the run,
calls :mod:`dyntrace.analysis`, and draws, on ``ax`` if given (multi-panel figures split the
area of one Axes or take one Axes per panel), else on a new figure drawn in
:func:`theme`. A run without the data a figure needs raises
:class:`dyntrace.errors.MissingDataError` naming the file, the series and the probe.

``FIGURES`` maps each figure's name (``dyntrace plot --only NAME``) to its function and what
the run must hold; a new figure is one module plus one line here. ``COMPARISONS`` maps the
names of the figures ``dyntrace compare`` writes to functions ``(runs, /, *, labels, ax)``.
Landscape figures take a result object, not a run, and are drawn by ``dyntrace landscape``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dyntrace.plots.activations import (
    plot_activation_heatmaps,
    plot_activation_histograms,
    plot_activation_std,
)
from dyntrace.plots.adaptive import plot_adaptive_lr, plot_psi_variance, plot_rectification
from dyntrace.plots.compare import (
    plot_compare_activation_std,
    plot_compare_gradient_norms,
    plot_compare_loss,
)
from dyntrace.plots.curvature import (
    noise_scale_missing,
    plot_batch_noise_scale,
    plot_hessian_trace,
    plot_sharpness,
)
from dyntrace.plots.dashboard import plot_dashboard
from dyntrace.plots.gradient_flow import plot_gradient_flow, plot_gradient_norm_by_depth, plot_gradient_ratio
from dyntrace.plots.landscape import LANDSCAPE_SOURCE, plot_landscapes
from dyntrace.plots.loss import plot_accuracy, plot_loss
from dyntrace.plots.norms import NORMS, plot_norms
from dyntrace.plots.parameters import plot_gradient_heatmaps, plot_weight_heatmaps
from dyntrace.plots.steps import plot_step_sizes, plot_step_sizes_compare, plot_update_ratios
from dyntrace.plots.theme import PALETTE, layer_color, layer_colors, theme
from dyntrace.plots.units import plot_dead_units, plot_saturation

__all__ = [
    "FIGURES",
    "COMPARISONS",
    "FigureSpec",
    "theme",
    "PALETTE",
    "layer_color",
    "layer_colors",
    "plot_dashboard",
    "plot_loss",
    "plot_accuracy",
    "plot_norms",
    "plot_activation_heatmaps",
    "plot_activation_histograms",
    "plot_activation_std",
    "plot_saturation",
    "plot_dead_units",
    "plot_gradient_flow",
    "plot_gradient_norm_by_depth",
    "plot_gradient_ratio",
    "plot_gradient_heatmaps",
    "plot_weight_heatmaps",
    "plot_step_sizes",
    "plot_update_ratios",
    "plot_adaptive_lr",
    "plot_rectification",
    "plot_psi_variance",
    "plot_landscapes",
    "plot_sharpness",
    "plot_hessian_trace",
    "plot_batch_noise_scale",
    "plot_compare_loss",
    "plot_compare_activation_std",
    "plot_compare_gradient_norms",
    "plot_step_sizes_compare",
]


@dataclass(frozen=True)
class FigureSpec:
    """A registered figure: its function and what a run must hold to draw it.

    ``probes``: every one of these probes must have recorded; ``scalars``: at least one of
    these scalars must be logged (empty: none needed); ``landscapes``: the file must hold
    stored landscapes; ``needs``: for data that has more than one source, a function
    ``run -> str | None`` saying why the run cannot support the figure (None: it can).
    """

    name: str
    function: Callable
    probes: tuple[str, ...] = ()
    scalars: tuple[str, ...] = ()
    landscapes: bool = False
    description: str = ""
    needs: Callable | None = None

    def missing(self, run) -> str | None:
        """Why ``run`` cannot support this figure (one line), or None if it has the data."""
        lacking = [p for p in self.probes if p not in run.probes]
        if lacking:
            return (
                f"no {', '.join(repr(p) for p in lacking)} probe data "
                f"(record with Recorder(..., probes=[..., {lacking[0]!r}]))"
            )
        if self.scalars and not set(self.scalars) & set(run.scalar_names):
            prefix = self.scalars[0].split("/", 1)[0] if "/" in self.scalars[0] else None  # "curvature/trace"
            source = (
                f"recorded by the {prefix!r} probe"
                if prefix
                else "logged with rec.log(...) or by the 'scalars' probe"
            )
            return f"no scalar {' or '.join(repr(s) for s in self.scalars)} ({source})"
        if self.landscapes and not run.landscape_names:
            return LANDSCAPE_SOURCE
        if self.needs is not None:
            return self.needs(run)
        return None


_SPECS = [
    FigureSpec(
        "dashboard", plot_dashboard, description="overview: the most telling panels and the diagnoses"
    ),
    FigureSpec(
        "loss", plot_loss, scalars=("loss",), description="loss, EWMA, val_loss, plateaus, learning rate"
    ),
    FigureSpec(
        "accuracy",
        plot_accuracy,
        scalars=("accuracy", "val_accuracy"),
        description="accuracy and val_accuracy",
    ),
    FigureSpec(
        "norms",
        plot_norms,
        scalars=tuple(NORMS),
        description="gradient, parameter, update norms, distance from init",
    ),
    FigureSpec(
        "activation_heatmaps",
        plot_activation_heatmaps,
        probes=("activations",),
        description="activation distributions over time per layer",
    ),
    FigureSpec(
        "activation_histograms",
        plot_activation_histograms,
        probes=("activations",),
        description="activation histograms per layer at the last record",
    ),
    FigureSpec(
        "activation_std",
        plot_activation_std,
        probes=("activations",),
        description="activation std per layer over time",
    ),
    FigureSpec(
        "saturation",
        plot_saturation,
        probes=("activations",),
        description="saturated fraction of bounded activations per layer",
    ),
    FigureSpec(
        "dead_units", plot_dead_units, probes=("activations",), description="dead-unit fraction per layer"
    ),
    FigureSpec(
        "gradient_flow",
        plot_gradient_flow,
        probes=("gradients",),
        description="gradient norm by depth over time; first/last ratio",
    ),
    FigureSpec(
        "gradient_heatmaps",
        plot_gradient_heatmaps,
        probes=("gradients",),
        description="|g| distributions over time per parameter",
    ),
    FigureSpec(
        "weight_heatmaps",
        plot_weight_heatmaps,
        probes=("weights",),
        description="weight distributions over time per parameter",
    ),
    FigureSpec(
        "step_sizes",
        plot_step_sizes,
        probes=("steps",),
        description="effective step size |Δθ|/|g| over time per parameter",
    ),
    FigureSpec(
        "update_ratios",
        plot_update_ratios,
        probes=("steps",),
        description="update-to-weight ratio per parameter",
    ),
    FigureSpec(
        "adaptive_lr",
        plot_adaptive_lr,
        probes=("adaptive",),
        description="adaptive learning rate ψ over time per parameter",
    ),
    FigureSpec(
        "rectification",
        plot_rectification,
        probes=("adaptive",),
        description="RAdam's ρ_t and r_t against their formulas",
    ),
    FigureSpec(
        "psi_variance",
        plot_psi_variance,
        probes=("adaptive",),
        description="measured Var[ψ] against the analytic curve",
    ),
    FigureSpec(
        "landscapes",
        plot_landscapes,
        landscapes=True,
        description="stored loss landscapes: planes as contours (with the trajectory), lines",
    ),
    FigureSpec(
        "sharpness",
        plot_sharpness,
        scalars=("curvature/sharpness", "curvature/precond_sharpness"),
        description="top Hessian eigenvalue (Adam: of P⁻¹H) against the stability threshold",
    ),
    FigureSpec(
        "hessian_trace",
        plot_hessian_trace,
        scalars=("curvature/trace",),
        description="Hessian trace (Hutchinson) over training",
    ),
    FigureSpec(
        "batch_noise_scale",
        plot_batch_noise_scale,
        needs=noise_scale_missing,
        description="gradient noise scale B_simple against the batch size in use",
    ),
]

#: Figure name → FigureSpec, in the order ``dyntrace plot`` writes them.
FIGURES: dict[str, FigureSpec] = {spec.name: spec for spec in _SPECS}

#: Comparison name → function of several runs, in the order ``dyntrace compare`` writes them.
COMPARISONS: dict[str, Callable] = {
    "loss": plot_compare_loss,
    "activation_std": plot_compare_activation_std,
    "gradient_norms": plot_compare_gradient_norms,
    "step_sizes": plot_step_sizes_compare,
}
