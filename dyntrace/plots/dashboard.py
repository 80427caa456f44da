"""The overview of a run on one page: its most telling single panels, composed by ``ax``, and
the automatic diagnoses of :func:`dyntrace.analysis.diagnose` underneath."""

from __future__ import annotations

import os
import textwrap

from dyntrace.analysis import diagnose
from dyntrace.errors import MissingDataError
from dyntrace.plots.activations import plot_activation_std
from dyntrace.plots.gradient_flow import plot_gradient_norm_by_depth, plot_gradient_ratio
from dyntrace.plots.layout import panels
from dyntrace.plots.loss import plot_accuracy, plot_loss
from dyntrace.plots.norms import NORMS, plot_norms
from dyntrace.plots.units import BOUNDED_KINDS, plot_dead_units, plot_saturation

__all__ = ["plot_dashboard", "dashboard_panels"]


def dashboard_panels(run) -> list:
    """The panel functions the dashboard draws for ``run``, most telling first (at most 6)."""
    scalars = set(run.scalar_names)
    probes = set(run.probes)
    kinds = run.kinds("activations") if "activations" in probes else {}
    layers = run.names("activations") if "activations" in probes else []
    candidates = [
        (plot_loss, "loss" in scalars),
        (plot_gradient_norm_by_depth, "gradients" in probes),
        (plot_activation_std, bool(layers)),
        (plot_saturation, any(kinds.get(n) in BOUNDED_KINDS for n in layers)),
        (plot_dead_units, any(kinds.get(n) not in BOUNDED_KINDS for n in layers)),
        (plot_norms, bool(scalars & set(NORMS))),
        (plot_accuracy, bool(scalars & {"accuracy", "val_accuracy"})),
        (plot_gradient_ratio, "gradients" in probes),
    ]
    return [f for f, ok in candidates if ok][:6]


def _title(run) -> str:
    meta = run.meta
    optimizer = meta.get("optimizer")
    optimizer = optimizer.get("class") if isinstance(optimizer, dict) else None
    what = ", ".join(str(x) for x in (meta.get("model_class"), optimizer) if x)
    state = "" if run.closed_cleanly else " (still being written, or interrupted)"
    return (
        f"{os.path.basename(run.path)}: {run.n_steps} steps, {len(run.record_steps)} record steps"
        + (f"; {what}" if what else "")
        + state
    )


def _diagnosis_lines(found, max_lines: int) -> list[str]:
    """One line per kind of finding: its most severe (then largest) instance, and how many
    more there are (e.g. dead units in 40 layers), most severe kinds first."""
    rank = {"critical": 0, "warning": 1, "info": 2}
    groups: dict = {}
    for d in found:
        groups.setdefault(d.kind, []).append(d)
    lines = []
    for group in groups.values():
        worst = min(
            group, key=lambda d: (rank.get(d.severity, 3), -abs(d.value) if d.value == d.value else 0)
        )
        more = f" (and {len(group) - 1} more)" if len(group) > 1 else ""
        lines.append(
            (
                rank.get(worst.severity, 3),
                worst.start,
                f"{worst.severity.upper()}: {worst.message}, steps {worst.start}–{worst.end}{more}",
            )
        )
    return [text for _, _, text in sorted(lines)[:max_lines]]


def plot_dashboard(run, /, *, ax=None, diagnoses: bool = True, max_diagnoses: int = 6):
    """An overview of a run in up to six panels (loss and learning rate, gradient flow by
    depth, activation std, saturated / dead units, norms, accuracy: those the run has) and,
    with ``diagnoses``, the most severe findings of :func:`dyntrace.analysis.diagnose` as text
    under the panels (own figure only).

    ``ax``: None, or an Axes whose area is split into the panels.
    Raises MissingDataError if the run has none of the panels' data.
    """
    chosen = dashboard_panels(run)
    if not chosen:
        raise MissingDataError(
            f"{run.path}: nothing to draw: no 'loss' scalar (rec.log(loss=...)) and no activations, "
            "gradients or scalars probe data"
        )
    with panels(ax, len(chosen), ncols=min(3, len(chosen)), panel_size=(5.4, 4.0)) as (fig, axes, owns):
        for function, a in zip(chosen, axes):
            try:
                function(run, ax=a)
            except MissingDataError as exc:  # data that vanished or is not there yet
                a.text(
                    0.5,
                    0.5,
                    textwrap.fill(str(exc), 50),
                    ha="center",
                    va="center",
                    fontsize="small",
                    transform=a.transAxes,
                )
                a.set_axis_off()
        if owns:
            fig.suptitle(_title(run))
        if diagnoses and owns:  # in a caller's figure the page is theirs: no text added
            lines = _diagnosis_lines(diagnose(run), max_diagnoses)
            if lines:
                fig.supxlabel(
                    "\n".join(textwrap.shorten(line, 160) for line in lines),
                    fontsize="small",
                    ha="left",
                    x=0.01,
                )
    return fig
