"""What an augmentation did to the first training images of a run, drawn from the run's file.

An augmentation run stores, in its config under ``examples``, a few images of its first
minibatch before and after the augmentation with the labels they were trained on: ``images``
and ``augmented`` (lists of flat pixel lists), ``image_shape``, ``label_a``, ``label_b`` and
``lam`` (the training target is λ·one-hot(a) + (1 − λ)·one-hot(b); λ = 1 for one label), and
optionally ``changed`` (0/1 per pixel: where a hole or a pasted box is, outlined in red).
"""

from __future__ import annotations

import numpy as np

from dyntrace.plots.data import missing
from dyntrace.plots.layout import panels

__all__ = ["examples", "target_text", "plot_augmented_examples"]

_HOW = "store the first minibatch's examples in the run's config under 'examples'"


def examples(run) -> dict:
    """The stored examples of an augmentation run (see the module docstring)."""
    stored = run.config.get("examples")
    if not stored:
        raise missing(run, "example images in the config", _HOW)
    return stored


def target_text(label_a: int, label_b: int, lam: float) -> str:
    """The training target in words: "3" or "0.62·3 + 0.38·8"."""
    if lam >= 1 - 1e-9 or label_a == label_b:
        return f"{label_a}"
    return f"{lam:.2f}·{label_a} + {1 - lam:.2f}·{label_b}"


def _upsampled(mask, k: int = 20):
    """The mask on a k-times finer grid, so its contour follows the pixel edges."""
    return np.kron(mask, np.ones((k, k)))


def plot_augmented_examples(
    run, /, *, count: int = 3, ax=None, title: str | None = None, original: bool = False
):
    """The first ``count`` stored images of a run as the network saw them (``original``: before
    the augmentation), each titled with its training target; grey scale, white = 0."""
    stored = examples(run)
    shape = tuple(stored["image_shape"])[-2:]
    key = "images" if original else "augmented"
    count = min(count, len(stored[key]))
    with panels(ax, count, ncols=count, panel_size=(1.3, 1.5)) as (fig, axes, owns):
        for i, a in enumerate(axes):
            a.imshow(
                np.asarray(stored[key][i]).reshape(shape),
                cmap="gray_r",
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            if not original and "changed" in stored:
                mask = np.pad(
                    np.asarray(stored["changed"][i], dtype=float).reshape(shape), 1
                )  # closed at the border
                a.contour(
                    _upsampled(mask),
                    levels=[0.5],
                    colors="red",
                    linewidths=1.5,
                    extent=(-1.5, shape[1] + 0.5, -1.5, shape[0] + 0.5),
                    origin="upper",
                )
                a.set_xlim(-0.5, shape[1] - 0.5)
                a.set_ylim(shape[0] - 0.5, -0.5)
            a.set_xticks([])
            a.set_yticks([])
            a.grid(False)
            lam = 1.0 if original else float(stored["lam"])
            a.set_title(target_text(stored["label_a"][i], stored["label_b"][i], lam), fontsize="small")
        if owns and title:
            fig.suptitle(title)
    return fig
