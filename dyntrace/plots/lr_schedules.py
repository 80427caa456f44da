"""Learning-rate schedules and what they do to a run: the recorded learning rate of several
runs on one axis, each run's loss with its learning rate on a twin axis, and the loss noise
near the end of each run.

The Recorder logs ``lr/<group>`` when it changes (at the step whose update used it); the
helpers here hold it to every step.
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Patch

from dyntrace.analysis import decimate, ewma, minibatch_noise
from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, log_if_wide, single, step_label
from dyntrace.plots.loss import auto_beta
from dyntrace.plots.theme import NEUTRAL, series_color

__all__ = [
    "lr_at_steps",
    "late_noise",
    "late_mean",
    "plot_lr_schedules",
    "plot_loss_with_lr",
    "plot_late_noise",
    "plot_heldout_vs_reference",
    "plot_final_values",
]

_HOW = "the Recorder logs lr/<group> by itself; record the run with dyntrace.Recorder"


def _hold(change_steps, change_values, steps) -> np.ndarray:
    """Values of a series logged only when it changes, held (forward-filled) to ``steps``;
    NaN before its first logged step."""
    change_steps = np.asarray(change_steps)
    change_values = np.asarray(change_values, dtype=np.float64)
    steps = np.asarray(steps)
    if change_steps.size == 0:
        return np.full(steps.shape, np.nan)
    index = np.searchsorted(change_steps, steps, side="right") - 1
    return np.where(index >= 0, change_values[np.clip(index, 0, None)], np.nan)


def lr_at_steps(run, steps=None, *, group: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(steps, learning rate of param group ``group`` used by the update of each step).

    ``lr/<group>`` is logged only at the steps where it changed; it is held to every step
    1 … ``run.n_steps`` (or to ``steps`` if given). Raises MissingDataError without it.
    """
    name = f"lr/{group}"
    if name not in run.scalar_names:
        raise missing(run, f"scalar {name!r}", _HOW)
    change_steps, values = run.scalar(name)
    if steps is None:
        steps = np.arange(1, max(run.n_steps, int(change_steps[-1])) + 1)
    steps = np.asarray(steps)
    return steps, _hold(change_steps, values, steps)


def late_noise(run, name: str = "loss", *, last: float = 0.25, window: int | None = None) -> float:
    """Standard deviation of the per-step scalar ``name`` around its trend over the last
    ``last`` fraction of its steps: √(mean local variance) from
    :func:`dyntrace.analysis.minibatch_noise` (loss units). NaN if too few finite points."""
    if name not in run.scalar_names:
        raise missing(run, f"scalar {name!r}", "log it every step with rec.log(...)")
    if not 0 < last <= 1:
        raise ValueError(f"last: expected a fraction in (0, 1], got {last!r}")
    steps, values = run.scalar(name)
    if len(values) < 10:
        return float("nan")
    noise = minibatch_noise(steps, values, window=window)
    tail = noise.variance[int(len(values) * (1 - last)) :]
    tail = tail[np.isfinite(tail)]
    return float(np.sqrt(np.mean(tail))) if tail.size else float("nan")


def plot_lr_schedules(
    runs, /, *, labels=None, colors=None, ax=None, marks=None, group: int = 0, log: bool | None = None
):
    """The learning rate of each run over its steps (as recorded: a step function held to the
    last step), one colour per run. ``log``: y axis scale (None: log when the rates span
    decades; a schedule annealed to ~0 then squeezes the others, so False may read better).

    ``marks``: optional ``{label: (steps, values)}``, values computed elsewhere (e.g. each
    schedule's formula at a few steps), drawn as open circles over the recorded curve.
    """
    runs = list(runs)
    labels = _labels(runs, labels)
    with single(ax, figsize=(8, 4.6)) as (fig, ax, owns):
        values = []
        for i, (run, label) in enumerate(zip(runs, labels)):
            steps, lr = lr_at_steps(run, group=group)
            color = colors[i] if colors is not None else series_color(i)
            ax.plot(steps, lr, color=color, lw=1.6, drawstyle="steps-post", label=label, gid=label)
            values.append(lr)
            if marks and label in marks:
                ms, mv = marks[label]
                ax.plot(
                    ms, mv, ls="none", marker="o", ms=6, mfc="none", mec=color, mew=1.4, gid=f"{label}:marks"
                )
        if marks:
            ax.plot([], [], ls="none", marker="o", ms=6, mfc="none", mec="k", label="formula at chosen steps")
        if log is None:
            log_if_wide(ax, np.concatenate(values), decades=1.0)
        elif log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, np.nanmax(np.concatenate(values)) * 1.08)
        ax.set_ylabel("learning rate")
        step_label(ax)
        ax.set_title("Learning rate per step, as recorded")
        legend(ax, owns=owns)
    return fig


def plot_loss_with_lr(
    run,
    /,
    *,
    ax=None,
    loss: str = "loss",
    heldout: str | None = "val_loss",
    beta=None,
    ylim=None,
    log_loss: bool = False,
    group: int = 0,
    lr_ylim=None,
    log_lr: bool | None = None,
):
    """One run: the per-step minibatch ``loss`` (faint) and its bias-corrected EWMA, the
    ``heldout`` loss (a scalar logged every step, e.g. the loss on a fixed validation set;
    None to skip), and the learning rate on a twin axis (grey, dashed).

    ``ylim``/``lr_ylim``: shared limits when several runs are drawn side by side;
    ``log_loss``: log y for the loss; ``log_lr``: log y for the rate (None: when it spans decades).
    """
    if loss not in run.scalar_names:
        raise missing(run, f"scalar {loss!r}", "log it every step with rec.log(loss=...)")
    steps, values = run.scalar(loss)
    beta = auto_beta(len(values)) if beta is None else beta
    with single(ax) as (fig, ax, owns):
        s, v = decimate(steps, values, 4000)
        ax.plot(
            s,
            v,
            color=series_color(0),
            alpha=0.25,
            lw=0.7,
            label=f"{loss} (minibatch, per step)",
            gid=f"{loss}:raw",
        )
        ax.plot(
            steps,
            ewma(values, beta),
            color=series_color(0),
            lw=1.8,
            label=f"{loss}, EWMA β={beta:g}",
            gid=f"{loss}:ewma",
        )
        if heldout is not None and heldout in run.scalar_names:
            hs, hv = run.scalar(heldout)
            ax.plot(hs, hv, color=series_color(1), lw=1.2, label=f"{heldout} (per step)", gid=heldout)
        if log_loss:
            ax.set_yscale("log")
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_ylabel("loss")
        step_label(ax)
        twin = ax.twinx()
        twin.grid(False)
        lr_steps, lr = lr_at_steps(run, group=group)
        (line,) = twin.plot(
            lr_steps,
            lr,
            color=NEUTRAL,
            lw=1.6,
            ls="--",
            drawstyle="steps-post",
            label="learning rate",
            gid="lr",
        )
        if log_lr is None:
            log_if_wide(twin, lr, decades=1.0)
        elif log_lr:
            twin.set_yscale("log")
        if lr_ylim is not None:
            twin.set_ylim(*lr_ylim)
        twin.set_ylabel("learning rate", color="dimgray")
        twin.tick_params(axis="y", colors="dimgray")
        ax.set_title(f"{loss} and learning rate")
        handles, labels = ax.get_legend_handles_labels()
        if owns:
            legend(ax, owns=owns, handles=handles + [line], labels=labels + [line.get_label()])
    return fig


def plot_late_noise(
    runs,
    /,
    *,
    labels=None,
    colors=None,
    ax=None,
    names=("loss", "val_loss"),
    name_labels=None,
    last: float = 0.25,
):
    """Noise of per-step scalars around their trend over the last ``last`` of each run
    (:func:`late_noise`): grouped bars, one group per run, one bar per scalar in ``names``
    (legend: ``name_labels``, default the names), log y axis. The first run is the reference
    (its values drawn as dotted lines)."""
    runs = list(runs)
    labels = _labels(runs, labels)
    names = list(names)
    name_labels = list(name_labels) if name_labels is not None else names
    if len(name_labels) != len(names):
        raise ValueError(f"name_labels: {len(name_labels)} given for {len(names)} names")
    with single(ax, figsize=(8, 4.2)) as (fig, ax, owns):
        width = 0.8 / len(names)
        x = np.arange(len(runs))
        hatches = ("", "//", "..", "xx")
        for j, name in enumerate(names):
            noise = np.array([late_noise(run, name, last=last) for run in runs])
            ax.bar(
                x + (j - (len(names) - 1) / 2) * width,
                noise,
                width=width * 0.95,
                color=list(colors) if colors is not None else [series_color(i) for i in range(len(runs))],
                alpha=1.0 if j == 0 else 0.55,
                hatch=hatches[j % len(hatches)],
                edgecolor="white" if j == 0 else "k",
                lw=0.5,
                label=name,
                gid=f"noise:{name}",
            )
            if np.isfinite(noise[0]):
                ax.axhline(noise[0], color="k", ls=":", lw=0.8, gid=f"reference:{name}")
        ax.set_yscale("log")
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_ylabel("std around the trend (loss units)")
        ax.set_title(f"Loss noise over the last {last:.0%} of the steps")
        handles = [
            Patch(
                facecolor="0.35",
                alpha=1.0 if j == 0 else 0.55,
                hatch=hatches[j % len(hatches)],
                edgecolor="white" if j == 0 else "k",
            )
            for j in range(len(names))
        ]
        legend(ax, owns=owns, handles=handles, labels=name_labels)
    return fig


def late_mean(run, name: str = "val_loss", *, last: float = 0.1) -> float:
    """Mean of a per-step scalar over the last ``last`` of its values (NaN if there are none)."""
    if name not in run.scalar_names:
        raise missing(run, f"scalar {name!r}", "log it every step with rec.log(...)")
    _, values = run.scalar(name)
    tail = values[int(len(values) * (1 - last)) :]
    tail = tail[np.isfinite(tail)]
    return float(tail.mean()) if tail.size else float("nan")


def plot_heldout_vs_reference(
    run,
    reference,
    /,
    *,
    name: str = "val_loss",
    ax=None,
    color=None,
    label=None,
    reference_label: str = "reference",
    ylim=None,
):
    """One run's per-step ``name`` (e.g. the validation loss after every step) in its colour
    over a reference run's (grey, underneath), linear y: how a schedule's end compares with a
    constant rate's. ``ylim``: shared limits when panels sit side by side."""
    for r in (run, reference):
        if name not in r.scalar_names:
            raise missing(r, f"scalar {name!r}", "log it every step with rec.log(...)")
    with single(ax) as (fig, ax, owns):
        rs, rv = reference.scalar(name)
        ax.plot(rs, rv, color=NEUTRAL, lw=1.0, alpha=0.8, label=reference_label, gid="reference")
        s, v = run.scalar(name)
        ax.plot(
            s, v, color=color if color is not None else series_color(0), lw=1.3, label=label or name, gid=name
        )
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_ylabel(name.replace("val_loss", "validation loss"))
        step_label(ax)
        legend(ax, owns=owns)
    return fig


def plot_final_values(
    runs,
    /,
    *,
    labels=None,
    colors=None,
    name: str = "val_loss",
    last: float = 0.1,
    ax=None,
    reference: int = 0,
):
    """Mean of a per-step scalar over the last ``last`` of each run (bars) with its step-to-step
    noise there (:func:`late_noise`, error bars); run ``reference``'s mean as a dotted line."""
    runs = list(runs)
    labels = _labels(runs, labels)
    with single(ax) as (fig, ax, owns):
        means = np.array([late_mean(r, name, last=last) for r in runs])
        noise = np.array([late_noise(r, name, last=last) for r in runs])
        x = np.arange(len(runs))
        ax.bar(
            x,
            means,
            yerr=noise,
            capsize=4,
            color=list(colors) if colors is not None else [series_color(i) for i in range(len(runs))],
            edgecolor="k",
            lw=0.5,
            gid=f"final:{name}",
        )
        if np.isfinite(means[reference]):
            ax.axhline(means[reference], color="k", ls=":", lw=1.0, gid="reference")
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_ylabel(f"mean over the last {last:.0%} of the steps")
        ax.set_title(f"{name.replace('val_loss', 'Validation loss')} at the end")
    return fig


def _labels(runs, labels):
    if labels is None:
        return [r.path for r in runs]
    labels = list(labels)
    if len(labels) != len(runs):
        raise ValueError(f"labels: {len(labels)} given for {len(runs)} runs")
    return labels
