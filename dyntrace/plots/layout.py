"""Where a figure function draws: its own figure, the caller's axes, or panels cut from them.

Every ``plot_*`` function takes ``ax=None``: with None it makes its own figure (inside the
dyntrace theme); with an Axes it draws there (a multi-panel figure splits that axes' area into
its panels); a multi-panel figure also takes a sequence of Axes, one per panel.

New figures are plain ``matplotlib.figure.Figure`` objects, not registered with pyplot (no
global state; nothing to close): save them with ``fig.savefig``; Jupyter shows them inline.

This module is the shared layout surface of the figure modules (its ``__all__``): panels,
legends and colour keys, axis labels, and the names of layers shortened the same way in every
figure. Reading for figures is in :mod:`dyntrace.plots.data`, the time × value heatmaps in
:mod:`dyntrace.plots.heatmap`. They are internal to ``dyntrace.plots``: stable for its figure
modules, not promised to users.
"""

from __future__ import annotations

import math
import re
from contextlib import ExitStack, contextmanager

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure

from dyntrace.plots.theme import layer_colors, theme

__all__ = [
    "single",
    "panels",
    "legend",
    "log_if_wide",
    "step_label",
    "root_figure",
    "layer_labels",
    "layer_key",
    "short_names",
    "unit_word",
    "panel_title",
    "title_chars",
    "plain_name",
]

STEP_LABEL = "step (optimizer steps)"
#: How the usual scalar names read in a figure (labels are for people, not for code).
PLAIN_NAMES = {
    "loss": "training loss",
    "val_loss": "validation loss",
    "test_loss": "test loss",
    "accuracy": "training accuracy",
    "train_accuracy": "training accuracy",
    "val_accuracy": "validation accuracy",
    "test_accuracy": "test accuracy",
}


def plain_name(name: str) -> str:
    """A scalar's name in plain words (``val_loss`` → "validation loss"); other names unchanged."""
    return PLAIN_NAMES.get(name, name)


def root_figure(ax: Axes):
    return ax.get_figure(root=True)


@contextmanager
def single(ax, *, figsize=(7.5, 4.2)):
    """Yield (figure, axes, owns) for a one-panel figure; ``owns`` is True for a new figure.

    A new figure is made and drawn inside :func:`dyntrace.plots.theme`; the caller's axes are
    drawn on in the caller's style.
    """
    with ExitStack() as stack:
        if ax is None:
            stack.enter_context(theme())
            fig = Figure(figsize=figsize, layout="constrained")
            ax = fig.add_subplot()
            yield fig, ax, True
        else:
            if not isinstance(ax, Axes):
                raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
            yield root_figure(ax), ax, False


@contextmanager
def panels(ax, n: int, *, ncols: int, panel_size=(3.2, 2.6), sharex=False, sharey=False):
    """Yield (figure, [n axes], owns) for a figure of ``n`` panels in rows of ``ncols``.

    ``ax`` None: a new figure; an Axes: its area is split into the panels (it is hidden);
    a sequence of at least ``n`` Axes: the first ``n`` are used.
    """
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    with ExitStack() as stack:
        if ax is None:
            stack.enter_context(theme())
            fig = Figure(
                figsize=(panel_size[0] * ncols + 0.8, panel_size[1] * nrows + 0.6), layout="constrained"
            )
            grid = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey).ravel()
            for extra in grid[n:]:
                extra.remove()
            yield fig, list(grid[:n]), True
        elif isinstance(ax, Axes) and n == 1:
            yield root_figure(ax), [ax], False
        elif isinstance(ax, Axes):
            parent = ax.get_figure(root=False)
            spec = ax.get_subplotspec()
            ax.set_axis_off()
            if spec is not None:
                sub = spec.subgridspec(nrows, ncols)
                axes = [parent.add_subplot(sub[i // ncols, i % ncols]) for i in range(n)]
            else:  # an axes placed by hand: inset panels in its area
                w, h = 1.0 / ncols, 1.0 / nrows
                axes = [
                    ax.inset_axes(
                        [(i % ncols) * w + 0.08 * w, 1 - (i // ncols + 1) * h + 0.12 * h, 0.8 * w, 0.72 * h]
                    )
                    for i in range(n)
                ]
            yield root_figure(ax), axes, False
        else:
            axes = list(ax)
            if len(axes) < n or not all(isinstance(a, Axes) for a in axes):
                raise ValueError(
                    f"ax: expected an Axes or a sequence of at least {n} Axes, got {len(axes)} items"
                )
            yield root_figure(axes[0]), axes[:n], False


def legend(ax, *, owns: bool, handles=None, labels=None, title=None):
    """A legend that does not cover data.

    In a figure the function owns: below the axes, outside. In a caller's axes: ``loc="best"``
    for up to three short entries, else below the axes (the layout makes room for it), in two
    columns when the labels are short enough to sit side by side within the axes' width.
    """
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    longest = max((len(str(label)) for label in labels), default=0)
    ncols = min(3, len(handles))
    if owns:  # as many columns as fit across the page
        fig = root_figure(ax)
        while ncols > 1 and ncols * (longest * _LEGEND_CHAR_INCHES + 0.7) > fig.get_figwidth():
            ncols -= 1
        return fig.legend(handles, labels, loc="outside lower center", ncols=ncols, title=title)
    if len(handles) <= 3 and longest <= _BEST_LABEL_CHARS:
        return ax.legend(handles, labels, loc="best", fontsize="small", title=title)
    # below the axes, no wider than them (long labels would stick out of the page)
    ncols = 2 if longest <= _TWO_COLUMN_CHARS and len(handles) > 1 else 1
    return ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncols=ncols,
        fontsize="small",
        title=title,
    )


#: Width of one character of legend text (the theme's legend font), inches.
_LEGEND_CHAR_INCHES = 0.075
#: Longest label a legend inside a caller's axes may have (longer ones go below the axes).
_BEST_LABEL_CHARS = 28
#: Longest label that still fits two legend columns under a dashboard-sized axes.
_TWO_COLUMN_CHARS = 36


def log_if_wide(ax, values, *, axis="y", decades: float = 1.5) -> bool:
    """Use a log scale on ``axis`` when the positive finite ``values`` span ≥ ``decades``.

    Not for data with negative values; exact zeros (a dead layer's gradient) do not prevent
    it (a log axis leaves them out).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if np.any(v < 0):
        return False
    v = v[v > 0]
    if v.size == 0:
        return False
    if np.log10(v.max() / v.min()) >= decades:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        return True
    return False


def step_label(ax):
    ax.set_xlabel(STEP_LABEL)


_INDEX = re.compile(r"\d+")


def _render(parts: list[str], keep: set) -> str:
    """The kept components in order, dots between neighbours, '…' for each run left out."""
    out, gap = "", False
    for i, part in enumerate(parts):
        if i not in keep:
            gap = True
            continue
        out += ("…" if gap else "." if out else "") + part
        gap = False
    return out + ("…" if gap else "")


def _elide(parts: list[str], max_chars: int, must: frozenset = frozenset()) -> str:
    """A dotted path of at most ``max_chars`` characters where it can be: the last component
    (with the one before it when the last is as short as ``weight``), the indices with the
    component naming them (``layer.3``), the first component if there is room, and ``must``;
    then as many components before the last as fit; the others become '…'."""
    whole = ".".join(parts)
    if len(whole) <= max_chars or len(parts) == 1:
        return whole if len(whole) <= max_chars else _cut(whole, max_chars)
    n = len(parts)
    leaf = {n - 1} | ({n - 2} if len(parts[-1]) <= 6 else set())
    indices = {i for i, p in enumerate(parts) if _INDEX.fullmatch(p)}
    named = indices | {i - 1 for i in indices if i > 0}
    tiers = [{0} | leaf | named, leaf | named, leaf | indices, leaf]
    keep = next((t | must for t in tiers if len(_render(parts, t | must)) <= max_chars), None)
    if keep is None:  # the leaf alone is long: a little over the budget rather than cut
        text = _render(parts, leaf | must)
        return text if len(text) <= 1.3 * max_chars else _cut(text, round(1.3 * max_chars))
    for i in range(n - 2, -1, -1):  # context before the last component, as far as it fits
        if i in keep:
            continue
        if len(_render(parts, keep | {i})) > max_chars:
            break
        keep = keep | {i}
    return _render(parts, keep)


def _cut(text: str, max_chars: int) -> str:
    """``text`` cut in the middle to ``max_chars`` characters."""
    if len(text) <= max_chars:
        return text
    head = (max_chars - 1) // 2
    return text[:head] + "…" + text[len(text) - (max_chars - 1 - head) :]


def short_names(names: list[str], *, max_chars: int = 28) -> list[str]:
    """Readable short forms of module or parameter paths, in order.

    The leading components every name shares are dropped (``bert.`` of a BERT), then a name
    longer than ``max_chars`` keeps its first and last components and its indices with the
    component naming them, and as much context before the last component as fits, the rest
    elided: ``bert.encoder.layer.3.attention.output.LayerNorm`` →
    ``encoder.layer.3…output.LayerNorm``. A name the elision would make equal to another's
    keeps more of itself (or all of it).
    """
    split = [n.split(".") for n in names]
    common = 0
    if len(split) > 1:
        shortest = min(len(p) for p in split)
        while common < shortest - 1 and len({tuple(p[: common + 1]) for p in split}) == 1:
            common += 1
    rest = [p[common:] for p in split]
    must = [frozenset()] * len(rest)
    out = [_elide(p, max_chars) for p in rest]
    for _ in range(4):  # names the elision made equal keep the components that tell them apart
        groups: dict = {}
        for i, text in enumerate(out):
            groups.setdefault(text, []).append(i)
        clashes = [g for g in groups.values() if len(g) > 1]
        if not clashes:
            return out
        for group in clashes:
            for i in group:
                k = _first_difference(rest[i], [rest[j] for j in group if j != i])
                if k is not None:
                    must[i] = must[i] | {len(rest[i]) - k}
                out[i] = _elide(rest[i], max_chars + 8, must[i])
    return [o if out.count(o) == 1 else ".".join(p) for o, p in zip(out, rest)]


def _first_difference(parts: list[str], others: list[list[str]]) -> int | None:
    """The smallest k such that the k-th component from the end of ``parts`` differs from
    that of some other name (None if there is none)."""
    for k in range(1, len(parts) + 1):
        if any(len(o) < k or o[-k] != parts[-k] for o in others):
            return k
    return None


#: Width of one character of a panel title (bold, "medium" in the dyntrace theme), inches.
_TITLE_CHAR_INCHES = 0.092


def title_chars(panel_width: float) -> int:
    """How many title characters fit over a panel ``panel_width`` inches wide, with room to
    spare between neighbouring panels."""
    return max(12, int((panel_width - 0.45) / _TITLE_CHAR_INCHES))


def panel_title(label: str, max_chars: int) -> str:
    """``label`` on one line if it fits in ``max_chars``, else on two: its "(kind)" on the
    second, or a long path broken at the dot (or '…') nearest its middle."""
    if len(label) <= max_chars:
        return label
    if " (" in label:
        head, _, tail = label.rpartition(" (")
        if len(head) <= max_chars:
            return f"{head}\n({tail}"
    cuts = [i for i, c in enumerate(label) if c in ".…" and 0 < i < len(label) - 1]
    if not cuts:
        return label
    cut = min(cuts, key=lambda i: abs(i - len(label) / 2))
    return f"{label[:cut]}\n{label[cut:]}" if label[cut] == "…" else f"{label[: cut + 1]}\n{label[cut + 1 :]}"


def unit_word(axis) -> str:
    """'features' for a unit axis that is the last dim, 'channels' for dim 1 of (N, C, …)."""
    return "features" if axis == -1 else "channels" if isinstance(axis, int) and axis < -1 else "units"


def layer_labels(run, probe: str, names: list[str], *, max_chars: int = 30, units: bool = False) -> list[str]:
    """ "path (kind)" for tensors of ``probe`` ("path" alone for a call site, ``attn/softmax#0``,
    which names its function), the paths shortened together with every other
    tensor of the probe (:func:`short_names`), so a label reads the same in every figure;
    with ``units``, also the number of units and what they are: "mlp.act (gelu, 128 features)"."""
    order = run.names(probe)
    short = dict(zip(order, short_names(order, max_chars=max_chars)))
    kinds = run.kinds(probe)
    counts, axes = {}, {}
    if units and "units" in run.fields(probe):
        counts = dict(zip(order, run.field(probe, "units")[1]))
        axes = run.unit_axes(probe)
    labels = []
    for n in names:
        extra = [kinds[n]] if n in kinds and f"{kinds[n]}#" not in n else []  # a call site names its function
        if counts.get(n):
            extra.append(f"{int(counts[n])} {unit_word(axes.get(n))}")
        labels.append(short.get(n, n) + (f" ({', '.join(extra)})" if extra else ""))
    return labels


def layer_key(ax, *, owns: bool, handles, labels, colors, n_total: int, title="layer"):
    """Say which colour is which layer: a legend for up to 8 lines, else a colourbar of depth.

    ``colors`` are the drawn lines' colours, taken from ``layer_colors(n_total)``; the
    colourbar shows that whole scale (layer 1 to ``n_total``), so it stays right when only
    some layers are drawn.
    """
    if len(handles) <= 8:
        return legend(ax, owns=owns, handles=handles, labels=labels, title=None)
    mappable = ScalarMappable(norm=Normalize(0.5, n_total + 0.5), cmap=ListedColormap(layer_colors(n_total)))
    bar = root_figure(ax).colorbar(mappable, ax=ax, pad=0.02, fraction=0.05)
    bar.set_label(f"{title} (1 = input side, {n_total} in all)")
    return bar
