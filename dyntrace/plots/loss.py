"""Loss and accuracy curves: the per-step values (faint), their bias-corrected EWMA, the
validation values, plateaus shaded, and the learning rate on a twin axis."""

from __future__ import annotations

import re

import numpy as np

from dyntrace.analysis import decimate, ewma, find_plateaus
from dyntrace.plots.data import missing, scalar_or_none
from dyntrace.plots.layout import legend, log_if_wide, plain_name, single, step_label
from dyntrace.plots.theme import NEUTRAL, PALETTE

__all__ = ["plot_loss", "plot_accuracy", "auto_beta", "lr_names"]

_LR = re.compile(r"^lr/(\d+)$")


def auto_beta(n: int) -> float:
    """EWMA factor averaging over about 1 % of a series of ``n`` points (10 to 200 points)."""
    window = min(200.0, max(10.0, n / 100))
    return round(1.0 - 1.0 / window, 4)


def lr_names(run) -> list[str]:
    """The run's learning-rate scalars (``lr/0``, ``lr/1``, … one per param group), in order."""
    return sorted((n for n in run.scalar_names if _LR.match(n)), key=lambda n: int(_LR.match(n).group(1)))


def _curve(ax, steps, values, *, color, label, beta, max_points):
    """Raw values faint, their EWMA solid; both thinned by min/max decimation."""
    raw_s, raw_v = decimate(steps, values, max_points)
    ax.plot(raw_s, raw_v, color=color, alpha=0.3, lw=0.8, label=f"{label} (per step)", gid=f"{label}:raw")
    smooth = ewma(values, beta, bias_correction=True)
    sm_s, sm_v = decimate(steps, smooth, max_points)
    ax.plot(
        sm_s,
        sm_v,
        color=color,
        lw=2.0,
        label=f"{label}, EWMA β={beta:g} (bias-corrected)",
        gid=f"{label}:ewma",
    )
    return smooth


def _validation(ax, run, name, *, color):
    series = scalar_or_none(run, name)
    if series is None:
        return None
    steps, values = series
    marker = "o" if len(values) <= 60 else None  # markers only while they stay apart
    ax.plot(
        steps,
        values,
        color=color,
        lw=1.5,
        marker=marker,
        ms=3.5,
        label=plain_name(name),
        gid=f"{name}:points",
    )
    return values


def plot_loss(
    run,
    /,
    *,
    ax=None,
    beta: float | None = None,
    plateaus: bool = True,
    lr: bool = True,
    max_points: int = 4000,
):
    """Training loss per step (faint), its EWMA with bias correction, ``val_loss`` if logged,
    plateaus shaded (escape marked by a dashed line) and the learning rate on a twin axis.

    ``beta``: EWMA factor (default :func:`auto_beta`, about 1 % of the run). The learning
    rate (scalars ``lr/0``, ``lr/1``, … logged when they change) is drawn as a step function
    held to the last step. A log y axis is used when the loss spans decades. ``max_points``:
    per line, after min/max decimation (spikes stay).
    Raises MissingDataError without a ``loss`` scalar.
    """
    if "loss" not in run.scalar_names:
        raise missing(run, "scalar 'loss'", "log it every step with rec.log(loss=...)")
    steps, loss = run.scalar("loss")
    beta = auto_beta(len(loss)) if beta is None else beta
    with single(ax) as (fig, ax, owns):
        smooth = _curve(ax, steps, loss, color=PALETTE[0], label="loss", beta=beta, max_points=max_points)
        val = _validation(ax, run, "val_loss", color=PALETTE[1])
        log_if_wide(ax, np.concatenate([smooth, val if val is not None else []]))
        if plateaus:
            finite = np.isfinite(loss)
            for i, p in enumerate(find_plateaus(steps[finite], loss[finite]) if finite.sum() > 10 else []):
                ax.axvspan(
                    p.start,
                    p.end,
                    color=NEUTRAL,
                    alpha=0.18,
                    lw=0,
                    label="plateau" if i == 0 else None,
                    gid="plateau",
                )
                if p.escape is not None:
                    ax.axvline(
                        p.escape,
                        color=NEUTRAL,
                        ls="--",
                        lw=1.2,
                        label="plateau escape" if i == 0 else None,
                        gid="escape",
                    )
        ax.set_ylabel("loss")
        step_label(ax)
        handles, labels = ax.get_legend_handles_labels()
        names = lr_names(run) if lr else []
        if names:
            twin = ax.twinx()
            twin.grid(False)
            end = max(int(steps[-1]) if len(steps) else 0, run.n_steps)
            values = []
            for k, name in enumerate(names):
                s, v = run.scalar(name)
                xs, ys = np.append(s, max(end, s[-1])), np.append(v, v[-1])  # held to the last step
                label = "learning rate" if len(names) == 1 else f"learning rate, group {name.split('/')[1]}"
                (line,) = twin.plot(
                    xs,
                    ys,
                    drawstyle="steps-post",
                    color=NEUTRAL,
                    lw=1.6,
                    ls=("-", "--", ":", "-.")[k % 4],
                    label=label,
                    gid=name,
                )
                handles.append(line)
                labels.append(label)
                values.append(v)
            log_if_wide(twin, np.concatenate(values), decades=1.0)
            twin.set_ylabel("learning rate", color="dimgray")
            twin.tick_params(axis="y", colors="dimgray")
        ax.set_title("Training loss" + (" and learning rate" if names else ""))
        legend(ax, owns=owns, handles=handles, labels=labels)
    return fig


def plot_accuracy(run, /, *, ax=None, beta: float | None = None, max_points: int = 4000):
    """Training accuracy per step (faint) and its bias-corrected EWMA, ``val_accuracy`` if
    logged. Raises MissingDataError if the run logged neither ``accuracy`` nor ``val_accuracy``.
    """
    have = [n for n in ("accuracy", "val_accuracy") if n in run.scalar_names]
    if not have:
        raise missing(run, "scalar 'accuracy' or 'val_accuracy'", "log it with rec.log(accuracy=...)")
    with single(ax) as (fig, ax, owns):
        values = []
        if "accuracy" in have:
            steps, acc = run.scalar("accuracy")
            beta_ = auto_beta(len(acc)) if beta is None else beta
            values.append(
                _curve(ax, steps, acc, color=PALETTE[0], label="accuracy", beta=beta_, max_points=max_points)
            )
        val = _validation(ax, run, "val_accuracy", color=PALETTE[1])
        if val is not None:
            values.append(val)
        top = np.nanmax(np.concatenate(values)) if values else 1.0
        if np.isfinite(top) and top <= 1.0:  # a fraction: show the whole [0, 1] scale
            ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("accuracy")
        step_label(ax)
        ax.set_title("Accuracy")
        legend(ax, owns=owns)
    return fig
