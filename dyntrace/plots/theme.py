"""The look of dyntrace figures: a seaborn theme as a context manager, and fixed colours.

Nothing here touches matplotlib's global settings at import; :func:`theme` changes them only
inside its ``with`` block and restores them on exit. Colours are colour-blind safe: the
seaborn "colorblind" palette (Okabe–Ito-like) for a few series, perceptually uniform colormaps
(viridis for time, plasma for depth) beyond that.
"""

from __future__ import annotations

from contextlib import contextmanager

import matplotlib as mpl
import seaborn as sns

__all__ = ["theme", "PALETTE", "NEUTRAL", "TIME_CMAP", "DEPTH_CMAP", "HEAT_CMAP", "layer_color", "layer_colors", "series_color"]

#: Distinct colours for up to eight series (seaborn "colorblind" without its grey).
PALETTE = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#56b4e9", "#fbafe4")
#: Grey for context series (the learning rate, plateau shading, reference lines).
NEUTRAL = "#949494"
#: Colormap for "when" (one line per record step), for "which layer" past len(PALETTE) layers,
#: and for histogram heatmaps (dark = rare, so the empty bins, left white, stand apart).
TIME_CMAP = "viridis"
DEPTH_CMAP = "plasma"
HEAT_CMAP = "viridis"


@contextmanager
def theme(*, context: str = "notebook", font_scale: float = 0.9):
    """Apply dyntrace's seaborn style (whitegrid, ``context``) inside a ``with`` block.

    matplotlib's rcParams are restored on exit, whatever happens inside. ``context`` is a
    seaborn context ("paper", "notebook", "talk", "poster").
    """
    rc = {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context(context, font_scale=font_scale),
        "axes.prop_cycle": mpl.cycler(color=PALETTE),
        "image.cmap": HEAT_CMAP,
        "axes.titleweight": "bold",
        "figure.dpi": 100,
        "legend.frameon": True,
        "legend.framealpha": 0.85,
    }
    with mpl.rc_context(rc):
        yield


def layer_colors(n_layers: int) -> list:
    """One colour per layer, input side first: the palette for ≤ 8 layers, else plasma by depth.

    The same ``n_layers`` always gives the same colours, so layer k has one colour in every
    figure of a run.
    """
    if n_layers <= len(PALETTE):
        return list(PALETTE[:n_layers])
    cmap = mpl.colormaps[DEPTH_CMAP]
    return [cmap(0.9 * i / (n_layers - 1)) for i in range(n_layers)]  # 0.9: skip the pale end


def layer_color(index: int, n_layers: int):
    """The colour of layer ``index`` (0-based, input side first) of ``n_layers``."""
    if not 0 <= index < n_layers:
        raise ValueError(f"layer index {index} out of range for {n_layers} layers")
    return layer_colors(n_layers)[index]


def series_color(i: int):
    """The i-th colour of the palette (cycling), for non-layer series (runs, norms)."""
    return PALETTE[i % len(PALETTE)]
