"""How noisy a minibatch loss is, where the noise comes from, and the gradient noise scale
B_simple of a run.

Besides the per-step ``loss``, the figures here read what the noisy-minibatch gallery entry logs
at its record steps on the whole training set: ``loss_all`` and ``loss_std_all`` (mean and std
of the per-example losses), and, for the noise scale, ``grad_sq_small``/``grad_sq_big`` (|G|² at
two batch sizes, every step) and ``trace_sigma_exact``/``grad_sq_exact`` (from per-example
gradients). The batch size is the run's config ``batch_size``; the training-set size ``n_train``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dyntrace.analysis import decimate, ewma, gradient_noise_scale, minibatch_noise
from dyntrace.errors import MissingDataError
from dyntrace.plots.compare import run_labels
from dyntrace.plots.data import missing
from dyntrace.plots.layout import legend, single, step_label
from dyntrace.plots.theme import NEUTRAL, series_color

__all__ = [
    "plot_minibatch_noise",
    "plot_batch_loss",
    "plot_loss_by_epoch",
    "plot_sampling_noise",
    "plot_noise_scale",
    "noise_scale_of",
    "exact_noise_scale",
    "ExactNoiseScale",
    "sampling_noise",
    "relative_noise",
    "loss_at_epoch",
]

#: Scalars a run logs for the noise scale: |G|² of the mean loss over the first ``b_small``
#: examples of each minibatch and over the whole minibatch of ``b_big`` (config "noise_scale").
SMALL, BIG = "grad_sq_small", "grad_sq_big"


def _window(n: int) -> int:
    return max(5, (n // 50) | 1)


def _loss(run):
    if "loss" not in run.scalar_names:
        raise missing(run, "scalar 'loss'", "log it every step with rec.log(loss=...)")
    return run.scalar("loss")


def _sizes(run) -> tuple[int, int]:
    """(batch size, training-set size) from the run's config."""
    config = run.config
    if "batch_size" not in config:
        raise MissingDataError(f"{run.path}: no 'batch_size' in the run's config")
    batch = int(config["batch_size"])
    return batch, int(config.get("n_train", batch))


def plot_minibatch_noise(
    runs, /, *, labels=None, colors=None, ax=None, window: int | None = None, max_points: int = 2000
):
    """Relative noise of each run's per-step loss around its trend, √(local variance)/|trend|
    (:func:`dyntrace.analysis.minibatch_noise`), one line per run on a log axis.

    The first and last ``window`` points are left out: there the centred averages are cut short,
    so a curved but noiseless loss (full batch) would show a residual that is not noise.
    """
    labels = run_labels(runs, labels)
    with single(ax) as (fig, ax, owns):
        for i, (run, label) in enumerate(zip(runs, labels)):
            steps, loss = _loss(run)
            w = _window(len(loss)) if window is None else window
            noise = minibatch_noise(steps, loss, window=w)
            inner = slice(w, max(w, len(loss) - w))
            s, v = decimate(steps[inner], noise.rel_std[inner], max_points)
            ax.plot(s, v, color=colors[i] if colors else series_color(i), lw=1.4, label=label, gid=label)
        ax.set_yscale("log")
        ax.set_ylabel("loss noise: std ÷ trend")
        step_label(ax)
        ax.set_title("Loss noise around its moving-average trend")
        legend(ax, owns=owns)
    return fig


def sampling_noise(run):
    """(record steps, measured, predicted): the std of the per-step loss around its trend
    (:func:`dyntrace.analysis.minibatch_noise`) at the record steps, and the sampling noise of
    a mean over B examples drawn with replacement, σ/√B, with σ = ``loss_std_all`` (the std of
    the per-example losses at those weights). A full batch (B = n_train) has no sampling noise:
    predicted 0."""
    steps, loss = _loss(run)
    if "loss_std_all" not in run.scalar_names:
        raise missing(
            run, "scalar 'loss_std_all'", "log the std of the per-example losses of the training set"
        )
    record_steps, sigma = run.scalar("loss_std_all")
    batch, n_train = _sizes(run)
    noise = minibatch_noise(steps, loss, window=_window(len(loss)))
    # a record describes the weights before update `step + 1`, whose batch loss is logged at step + 1
    measured = np.interp(record_steps + 1, steps, np.sqrt(noise.variance), left=np.nan, right=np.nan)
    predicted = np.zeros_like(sigma) if batch >= n_train else sigma / np.sqrt(batch)
    return record_steps, measured, predicted


def relative_noise(run) -> float:
    """Median over the inner steps of the loss's noise around its trend ÷ the trend."""
    steps, loss = _loss(run)
    w = _window(len(loss))
    noise = minibatch_noise(steps, loss, window=w)
    return float(np.nanmedian(noise.rel_std[w : max(w + 1, len(loss) - w)]))


def loss_at_epoch(run, epochs: float, *, beta: float = 0.9) -> float:
    """The run's loss trend (bias-corrected EWMA of the per-step loss) after ``epochs`` epochs
    of examples (step = epochs · n_train / batch size), interpolated between steps."""
    steps, loss = _loss(run)
    batch, n_train = _sizes(run)
    return float(np.interp(epochs * n_train / batch, steps, ewma(loss, beta)))


def _epoch_axis(ax, batch: int, n_train: int):
    """A second x axis on top: epochs = examples seen ÷ n_train = steps · batch ÷ n_train."""
    top = ax.secondary_xaxis("top", functions=(lambda s: s * batch / n_train, lambda e: e * n_train / batch))
    top.set_xlabel(f"epochs (examples seen ÷ {n_train})", fontsize="small")
    return top


def plot_batch_loss(run, /, *, ax=None, color=None, beta: float = 0.9, max_points: int = 4000):
    """One run's per-step loss (thin) and its trend (dark), with the band trend ± σ/√B of the
    sampling noise its batch size predicts (:func:`sampling_noise`); epochs on a top axis."""
    color = series_color(0) if color is None else color
    steps, loss = _loss(run)
    batch, n_train = _sizes(run)
    with single(ax) as (fig, ax, owns):
        s, v = decimate(steps, loss, max_points)
        ax.plot(s, v, color=color, lw=0.8, alpha=0.55, label="loss of the update's batch", gid="raw")
        trend = minibatch_noise(steps, loss, window=_window(len(loss))).trend
        ax.plot(steps, trend, color="k", lw=1.6, label="trend (moving average)", gid="trend")
        if batch < n_train and "loss_std_all" in run.scalar_names:
            record_steps, sigma = run.scalar("loss_std_all")
            band = np.interp(steps, record_steps + 1, sigma) / np.sqrt(batch)
            ax.fill_between(
                steps,
                trend - band,
                trend + band,
                color=color,
                alpha=0.18,
                lw=0,
                label="trend ± σ/√B (sampling noise)",
                gid="band",
            )
        ax.set_ylabel("loss (cross-entropy)")
        step_label(ax)
        _epoch_axis(ax, batch, n_train)
        ax.set_title(f"batch {batch}")
        legend(ax, owns=owns)
    return fig


def plot_loss_by_epoch(runs, /, *, labels=None, colors=None, beta: float = 0.9, ax=None):
    """Each run's loss trend (bias-corrected EWMA) against epochs of examples seen
    (steps · batch ÷ n_train), log x: what one pass over the data buys at each batch size."""
    labels = run_labels(runs, labels)
    with single(ax) as (fig, ax, owns):
        for i, (run, label) in enumerate(zip(runs, labels)):
            steps, loss = _loss(run)
            batch, n_train = _sizes(run)
            ax.plot(
                steps * batch / n_train,
                ewma(loss, beta),
                color=colors[i] if colors else series_color(i),
                lw=2.0,
                label=label,
                gid=label,
            )
        ax.axvline(1, color=NEUTRAL, lw=1.0, ls=":", label="one epoch")
        ax.set_xscale("log")
        ax.set_xlabel("epochs (examples seen ÷ training-set size), log scale")
        ax.set_ylabel(f"loss trend (EWMA β = {beta:g})")
        ax.set_title("Progress per epoch of data")
        legend(ax, owns=owns)
    return fig


def plot_sampling_noise(runs, /, *, labels=None, colors=None, ax=None):
    """Measured std of each run's loss around its trend (line) against the sampling noise σ/√B
    its batch size predicts (dots; none for a full batch, which has no sampling noise), log y."""
    labels = run_labels(runs, labels)
    with single(ax) as (fig, ax, owns):
        for i, (run, label) in enumerate(zip(runs, labels)):
            color = colors[i] if colors else series_color(i)
            steps, measured, predicted = sampling_noise(run)
            ax.plot(steps, measured, color=color, lw=1.8, label=f"{label}: measured", gid=f"{label}:measured")
            if np.any(predicted > 0):
                ax.plot(
                    steps,
                    predicted,
                    ls="none",
                    marker="o",
                    ms=5,
                    mfc="white",
                    mec=color,
                    mew=1.5,
                    label=f"{label}: σ/√B",
                    gid=f"{label}:predicted",
                )
        ax.set_yscale("log")
        ax.set_ylabel("std of the loss around its trend")
        step_label(ax)
        ax.set_title("Loss noise: measured vs sampling noise σ/√B")
        legend(ax, owns=owns)
    return fig


def noise_scale_of(run, *, b_small=None, b_big=None, beta: float = 0.95):
    """(steps, NoiseScale) from the run's ``grad_sq_small`` / ``grad_sq_big`` scalars.

    Batch sizes default to the run's config ``noise_scale: {"b_small": …, "b_big": …}``.
    """
    for name in (SMALL, BIG):
        if name not in run.scalar_names:
            raise missing(
                run,
                f"scalar {name!r}",
                "log |G|² at two batch sizes with rec.log(grad_sq_small=..., grad_sq_big=...)",
            )
    sizes = run.config.get("noise_scale", {})
    b_small = sizes.get("b_small") if b_small is None else b_small
    b_big = sizes.get("b_big") if b_big is None else b_big
    if b_small is None or b_big is None:
        raise MissingDataError(
            f"{run.path}: batch sizes of the noise scale unknown; pass b_small= and b_big="
        )
    steps, small = run.scalar(SMALL)
    _, big = run.scalar(BIG)
    n = min(len(small), len(big))
    return steps[:n], gradient_noise_scale(small[:n], big[:n], b_small, b_big, beta=beta)


@dataclass(frozen=True)
class ExactNoiseScale:
    """tr Σ, |G|² and their ratio B_simple at the record steps, from per-example gradients."""

    steps: np.ndarray
    trace_sigma: np.ndarray
    grad_sq: np.ndarray
    b_simple: np.ndarray


def exact_noise_scale(run) -> ExactNoiseScale:
    """The exact noise scale at the record steps from ``trace_sigma_exact`` and ``grad_sq_exact``."""
    for name in ("trace_sigma_exact", "grad_sq_exact"):
        if name not in run.scalar_names:
            raise missing(run, f"scalar {name!r}", "log tr Σ and |G|² of the per-example gradients")
    steps, trace = run.scalar("trace_sigma_exact")
    _, grad_sq = run.scalar("grad_sq_exact")
    with np.errstate(divide="ignore", invalid="ignore"):
        return ExactNoiseScale(steps, trace, grad_sq, np.where(grad_sq > 0, trace / grad_sq, np.nan))


def plot_noise_scale(
    run, /, *, ax=None, b_small=None, b_big=None, beta: float = 0.95, marks=None, color=None
):
    """The simple gradient noise scale B_simple = tr Σ / |G|² over training (McCandlish et
    al. 2018), estimated from |G|² at two batch sizes, each EMA-averaged (factor ``beta``);
    where the run logged them, the exact values from per-example gradients as dots.

    ``marks``: {label: batch size} drawn as horizontal reference lines (e.g. the batch sizes
    compared): batches well below B_simple are dominated by gradient noise.
    """
    color = series_color(0) if color is None else color
    steps, scale = noise_scale_of(run, b_small=b_small, b_big=b_big, beta=beta)
    with single(ax) as (fig, ax, owns):
        ax.plot(
            steps,
            scale.b_simple,
            color=color,
            lw=1.8,
            label="B_simple, from |G|² at two batch sizes",
            gid="b_simple",
        )
        exact = exact_noise_scale(run) if "trace_sigma_exact" in run.scalar_names else None
        if exact is not None:
            ax.plot(
                exact.steps,
                exact.b_simple,
                ls="none",
                marker="o",
                ms=5,
                mfc="white",
                mec=color,
                mew=1.5,
                label="exact, from the per-example gradients",
                gid="exact",
            )
        for k, (label, size) in enumerate((marks or {}).items()):
            ax.axhline(size, color=NEUTRAL, lw=1.0, ls=("--", ":", "-.")[k % 3], label=label)
        values = np.concatenate([scale.b_simple[np.isfinite(scale.b_simple)], list((marks or {}).values())])
        if values.size and np.all(values > 0):
            ax.set_yscale("log")
        ax.set_ylabel("examples")
        step_label(ax)
        ax.set_title("Gradient noise scale B_simple = tr Σ / |G|²")
        legend(ax, owns=owns)
    return fig
