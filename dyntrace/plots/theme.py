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

__all__ = [
    "theme",
    "PALETTE",
    "WIDE_PALETTE",
    "METHOD_COLORS",
    "NEUTRAL",
    "TIME_CMAP",
    "DEPTH_CMAP",
    "HEAT_CMAP",
    "layer_color",
    "layer_colors",
    "series_color",
    "method_color",
    "method_colors",
]

#: Distinct colours for up to eight series (seaborn "colorblind" without its grey).
PALETTE = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#56b4e9", "#fbafe4")
#: Twelve colours that stay apart from each other (no pale member), for figures with more
#: than eight series. Dark and mid tones of the Okabe–Ito / Tol "muted" families.
WIDE_PALETTE = (
    "#222222",
    "#0173b2",
    "#d55e00",
    "#029e73",
    "#cc3311",
    "#882255",
    "#e69f00",
    "#56b4e9",
    "#a6761d",
    "#7570b3",
    "#e7298a",
    "#117733",
)
#: One colour per optimizer or method, the same in every figure of the gallery and of
#: ``dyntrace compare``: a student who learns "Adam is vermillion" in one figure can read the
#: next one without its legend. Keys are lower-case; :func:`method_color` normalises names.
METHOD_COLORS = {
    # optimizers
    "sgd": "#222222",
    "momentum": "#0173b2",
    "nesterov": "#56b4e9",
    "adagrad": "#029e73",
    "rmsprop": "#a6761d",
    "adam": "#d55e00",
    "adamw": "#e69f00",
    "radam": "#7570b3",
    "lookahead": "#e7298a",
    "adam+warmup": "#56b4e9",  # sky blue: apart from Adam's vermillion, with which it is always drawn
    "lbfgs": "#117733",
    # normalisation
    "none": "#222222",
    "batchnorm": "#0173b2",
    "layernorm": "#d55e00",
    "groupnorm": "#029e73",
    "instancenorm": "#7570b3",
    # activations
    "sigmoid": "#0173b2",
    "tanh": "#029e73",
    "relu": "#d55e00",
    "leakyrelu": "#882255",  # wine: apart from ReLU's vermillion when the two are compared
    "elu": "#a6761d",
    "gelu": "#7570b3",
    "silu": "#e7298a",
    "swish": "#e7298a",
    "softsign": "#56b4e9",
    "linear": "#222222",
    # learning-rate schedules
    "constant": "#222222",
    "step": "#0173b2",
    "exponential": "#029e73",
    "staircase": "#e69f00",
    "inversetime": "#882255",
    "k/√t": "#a6761d",
    "warmup+cosine": "#d55e00",
    # regularisers (the overfitting figure)
    "weightdecay": "#029e73",
    "dropout": "#cc78bc",
    "earlystopping": "#0173b2",
    # data splits: training blue, validation orange, in every figure with both
    "train": "#0173b2",
    "validation": "#de8f05",
}
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


def series_color(i: int, n: int | None = None):
    """The i-th colour for non-layer series (runs, norms): the palette for up to eight series
    (``n`` the number of series, if known), :data:`WIDE_PALETTE` beyond; cycles past it."""
    colors = PALETTE if n is None or n <= len(PALETTE) else WIDE_PALETTE
    return colors[i % len(colors)]


def method_color(name: str, fallback: int = 0):
    """The fixed colour of an optimizer or method (``"Adam"``, ``"nesterov"``, ``"BatchNorm"``).

    Case, spaces, dashes and underscores are ignored (``"Leaky ReLU"`` → ``"leakyrelu"``).
    An unknown name gets ``WIDE_PALETTE[fallback]`` (cycling), so callers pass the series index.
    """
    key = "".join(ch for ch in str(name).lower() if ch not in " -_")
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    return WIDE_PALETTE[fallback % len(WIDE_PALETTE)]


def method_colors(names) -> list:
    """The fixed colours of several methods drawn together (:func:`method_color`), each
    distinct: a name without a fixed colour, or whose colour another name of the list already
    has, gets the first :data:`WIDE_PALETTE` colour not yet used."""
    names = list(names)
    fixed = [METHOD_COLORS.get("".join(ch for ch in str(n).lower() if ch not in " -_")) for n in names]
    used, out = set(), []
    for color in fixed:
        if color is None or color in used:
            color = next(
                (c for c in WIDE_PALETTE if c not in used and c not in fixed),
                WIDE_PALETTE[len(out) % len(WIDE_PALETTE)],
            )
        used.add(color)
        out.append(color)
    return out
