"""How noisy a minibatch loss is, and the gradient noise scale B_simple of a run."""

from __future__ import annotations

import numpy as np

from dyntrace.analysis import decimate, gradient_noise_scale, minibatch_noise
from dyntrace.errors import MissingDataError
from dyntrace.plots._data import missing
from dyntrace.plots._layout import legend, single, step_label
from dyntrace.plots.compare import run_labels
from dyntrace.plots.theme import NEUTRAL, series_color

__all__ = ["plot_minibatch_noise", "plot_noise_scale", "noise_scale_of"]

#: Scalars a run logs for the noise scale: |G|² of the mean loss over the first ``b_small``
#: examples of each minibatch and over the whole minibatch of ``b_big`` (config "noise_scale").
SMALL, BIG = "grad_sq_small", "grad_sq_big"


def plot_minibatch_noise(runs, /, *, labels=None, ax=None, window: int | None = None, max_points: int = 2000):
    """Relative noise of each run's per-step loss around its trend, √(local variance)/|trend|
    (:func:`dyntrace.analysis.minibatch_noise`), one line per run on a log axis.

    The first and last ``window`` points are left out: there the centred averages are cut short,
    so a curved but noiseless loss (full batch) would show a residual that is not noise.
    """
    labels = run_labels(runs, labels)
    with single(ax) as (fig, ax, owns):
        for i, (run, label) in enumerate(zip(runs, labels)):
            if "loss" not in run.scalar_names:
                raise missing(run, "scalar 'loss'", "log it every step with rec.log(loss=...)")
            steps, loss = run.scalar("loss")
            w = max(5, (len(loss) // 50) | 1) if window is None else window
            noise = minibatch_noise(steps, loss, window=w)
            inner = slice(w, max(w, len(loss) - w))
            s, v = decimate(steps[inner], noise.rel_std[inner], max_points)
            ax.plot(s, v, color=series_color(i), lw=1.4, label=label, gid=label)
        ax.set_yscale("log")
        ax.set_ylabel("loss noise: std / trend")
        step_label(ax)
        ax.set_title("Loss noise around its moving-average trend")
        legend(ax, owns=owns)
    return fig


def noise_scale_of(run, *, b_small=None, b_big=None, beta: float = 0.95):
    """(steps, NoiseScale) from the run's ``grad_sq_small`` / ``grad_sq_big`` scalars.

    Batch sizes default to the run's config ``noise_scale: {"b_small": …, "b_big": …}``.
    """
    for name in (SMALL, BIG):
        if name not in run.scalar_names:
            raise missing(run, f"scalar {name!r}", "log |G|² at two batch sizes with rec.log(grad_sq_small=..., grad_sq_big=...)")
    sizes = run.config.get("noise_scale", {})
    b_small = sizes.get("b_small") if b_small is None else b_small
    b_big = sizes.get("b_big") if b_big is None else b_big
    if b_small is None or b_big is None:
        raise MissingDataError(f"{run.path}: batch sizes of the noise scale unknown; pass b_small= and b_big=")
    steps, small = run.scalar(SMALL)
    _, big = run.scalar(BIG)
    n = min(len(small), len(big))
    return steps[:n], gradient_noise_scale(small[:n], big[:n], b_small, b_big, beta=beta)


def plot_noise_scale(run, /, *, ax=None, b_small=None, b_big=None, beta: float = 0.95, marks=None):
    """The simple gradient noise scale B_simple = tr Σ / |G|² over training (McCandlish et
    al. 2018), estimated from |G|² at two batch sizes, each EMA-averaged (factor ``beta``).

    ``marks``: {label: batch size} drawn as horizontal reference lines (e.g. the batch sizes
    compared): batches well below B_simple are dominated by gradient noise.
    """
    steps, scale = noise_scale_of(run, b_small=b_small, b_big=b_big, beta=beta)
    with single(ax) as (fig, ax, owns):
        ax.plot(steps, scale.b_simple, color=series_color(0), lw=1.8, label="B_simple = tr Σ / |G|²", gid="b_simple")
        for k, (label, size) in enumerate((marks or {}).items()):
            ax.axhline(size, color=NEUTRAL, lw=1.0, ls=("--", ":", "-.")[k % 3], label=label)
        values = np.concatenate([scale.b_simple[np.isfinite(scale.b_simple)], list((marks or {}).values())])
        if values.size and np.all(values > 0):
            ax.set_yscale("log")
        ax.set_ylabel("examples")
        step_label(ax)
        ax.set_title("Gradient noise scale B_simple")
        legend(ax, owns=owns)
    return fig
