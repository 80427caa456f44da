"""Figures of models with long module paths (transformers' BERT, 2 and 12 layers): every name
shortened readably, no title clipped or overlapping, no layout warning.

The figures are drawn on an Agg canvas with every warning an error (constrained layout warns,
and gives up, when legends or titles leave an axes no room), then the drawn text is measured:
titles, axis labels and legends inside the figure and clear of each other and of other axes.
Set ``DYNTRACE_FIGURES=folder`` to keep the PNGs for a look.
"""

from __future__ import annotations

import itertools
import os
import warnings

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.legend import Legend

import dyntrace
from dyntrace.plots import (
    plot_activation_heatmaps,
    plot_activation_histograms,
    plot_activation_std,
    plot_dashboard,
    plot_dead_units,
    plot_gradient_flow,
    plot_gradient_heatmaps,
    plot_saturation,
    plot_weight_heatmaps,
)
from dyntrace.plots.layout import layer_labels, short_names

FIGURES = (
    plot_dashboard,
    plot_activation_heatmaps,
    plot_activation_histograms,
    plot_activation_std,
    plot_saturation,
    plot_dead_units,
    plot_gradient_flow,
    plot_gradient_heatmaps,
    plot_weight_heatmaps,
)


def _record_bert(path, layers):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    config = transformers.BertConfig(
        num_hidden_layers=layers,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=64,
        max_position_embeddings=8,
        num_labels=3,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 64, (16, 8), generator=g), torch.randint(0, 3, (16,), generator=g)
    with dyntrace.Recorder(model, opt, path, every=2) as rec:
        for _ in range(8):
            i = torch.randint(0, 16, (4,), generator=g)
            opt.zero_grad()
            out = model(x[i], labels=y[i])
            out.loss.backward()
            opt.step()
            rec.log(loss=out.loss, accuracy=(out.logits.argmax(1) == y[i]).float().mean())
    return path


@pytest.fixture(scope="module")
def berts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert_runs")
    runs = {f"bert{n}": dyntrace.open_run(_record_bert(folder / f"bert{n}.h5", n)) for n in (2, 12)}
    yield runs
    for run in runs.values():
        run.close()


def _boxes(fig, renderer):
    """(owner, what, bbox) of the text blocks that must stay clear of each other."""
    out = []
    for text, what in ((fig._suptitle, "suptitle"), (fig._supxlabel, "supxlabel")):
        if text is not None and text.get_text():
            out.append(("figure", what, text.get_window_extent(renderer)))
    for legend in fig.legends:
        out.append(("figure", "legend", legend.get_window_extent(renderer)))
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison and not ax.get_title():
            continue
        for text, what in ((ax.title, "title"), (ax.xaxis.label, "xlabel"), (ax.yaxis.label, "ylabel")):
            if text.get_text() and text.get_visible():
                out.append((i, what, text.get_window_extent(renderer)))
        for child in ax.get_children():
            if isinstance(child, Legend):
                out.append((i, "legend", child.get_window_extent(renderer)))
    return out


def assert_clean_layout(fig, name):
    """Drawn without a warning, every text block inside the figure, none overlapping another
    (nor another axes' data area)."""
    canvas = FigureCanvasAgg(fig)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied …" is a UserWarning
        canvas.draw()
    renderer = canvas.get_renderer()
    page = fig.bbox
    boxes = _boxes(fig, renderer)
    for owner, what, box in boxes:
        assert (
            box.x0 >= page.x0 - 1
            and box.x1 <= page.x1 + 1
            and box.y0 >= page.y0 - 1
            and box.y1 <= page.y1 + 1
        ), (name, owner, what, box, page)
    for (o1, w1, b1), (o2, w2, b2) in itertools.combinations(boxes, 2):
        if o1 == o2 and "figure" != o1:
            continue
        overlap = min(b1.x1, b2.x1) - max(b1.x0, b2.x0), min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
        assert min(overlap) <= 1, (name, (o1, w1), (o2, w2))
    for i, ax in enumerate(fig.axes):
        for owner, what, box in boxes:
            if owner == i or what not in ("title", "legend") or not ax.get_visible() or not ax.axison:
                continue
            if ax.get_label() == "<colorbar>" and what == "legend":
                continue
            area = ax.bbox
            overlap = min(box.x1, area.x1) - max(box.x0, area.x0), min(box.y1, area.y1) - max(box.y0, area.y0)
            twin = (
                owner != "figure" and fig.axes[owner].bbox.bounds == area.bounds
            )  # a twin axes shares its place
            assert twin or min(overlap) <= 1, (name, owner, what, "over the axes", i)
    folder = os.environ.get("DYNTRACE_FIGURES")
    if folder:
        os.makedirs(folder, exist_ok=True)
        fig.savefig(os.path.join(folder, f"{name}.png"), dpi=90)


#: The dashboard, activation and gradient figures of both models; the other per-layer figures
#: (their panels are in the dashboard too) of the 12-layer one.
CASES = [(which, f) for which in ("bert2", "bert12") for f in FIGURES[:4] + FIGURES[6:8]] + [
    ("bert12", f) for f in (plot_saturation, plot_dead_units, plot_weight_heatmaps)
]


@pytest.mark.parametrize("which, function", CASES, ids=[f"{w}-{f.__name__}" for w, f in CASES])
def test_figures_of_a_bert_have_no_clipped_or_overlapping_text(berts, which, function):
    run = berts[which]
    fig = function(run)
    assert_clean_layout(fig, f"{which}_{function.__name__}")


def test_bert_names_are_shortened_readably_and_stay_distinct(berts):
    run = berts["bert12"]
    names = run.names("activations")
    assert (
        len(names) == 1 + 12 * 4 + 1
    )  # embeddings' LayerNorm; per layer 2 LayerNorms, GELU, softmax; pooler
    short = short_names(names, max_chars=28)
    assert len(set(short)) == len(names)
    full = dict(zip(names, short))
    assert full["bert.embeddings.LayerNorm"] == "embeddings.LayerNorm"  # the shared "bert." dropped
    assert full["bert.encoder.layer.11.attention.self/softmax#0"] == "…layer.11…self/softmax#0"
    assert full["bert.encoder.layer.3.output.LayerNorm"] == "encoder.layer.3.output.LayerNorm"
    assert layer_labels(
        run, "activations", ["bert.encoder.layer.3.intermediate.intermediate_act_fn"], units=True
    ) == ["…layer.3…intermediate_act_fn (gelu, 64 features)"]
    for text in short:  # every short name keeps its layer index
        assert "layer" not in text or any(f".{k}" in text or f"{k}." in text for k in range(12))


def test_heatmap_panels_are_titled_path_and_kind_in_forward_order(berts):
    run = berts["bert2"]
    fig = plot_activation_heatmaps(run, max_layers=20)
    titles = [ax.get_title().replace("\n", " ") for ax in fig.axes if ax.get_label() != "<colorbar>"]
    # forward order: the embeddings' LayerNorm, then layer 0's softmax (a functional call site,
    # stored after every module column) before layer 0's LayerNorms and GELU
    assert titles[:5] == [
        "embeddings.LayerNorm (layernorm)",
        "…layer.0…self/softmax#0",
        "encoder.layer.0.attention …LayerNorm (layernorm)",
        "…layer.0…intermediate_act_fn (gelu)",
        "encoder.layer.0.output. LayerNorm (layernorm)",
    ]


def test_a_layer_never_seen_is_drawn_as_an_empty_panel_not_a_crash(tmp_path):
    torch = pytest.importorskip("torch")
    from click.testing import CliRunner
    from torch import nn

    from dyntrace.cli import main

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act, self.never = nn.Linear(3, 3), nn.ReLU(), nn.Tanh()

        def forward(self, x):
            return self.act(self.fc(x))

    model = Unused()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match="never ran no forward pass"):
        with dyntrace.Recorder(model, opt, tmp_path / "unused.h5", every=1) as rec:
            for _ in range(3):
                opt.zero_grad()
                loss = model(torch.randn(4, 3)).sum()
                loss.backward()
                opt.step()
                rec.log(loss=loss)
    with dyntrace.open_run(tmp_path / "unused.h5") as run:
        assert np.isnan(run.hist("activations", "never").edges).all()
        fig = plot_activation_heatmaps(run)
        (panel,) = [ax for ax in fig.axes if ax.get_title().startswith("never")]
        assert [t.get_text() for t in panel.texts] == ["no values recorded"]
        assert_clean_layout(fig, "never_seen")
    figures = "dashboard,activation_heatmaps,activation_histograms,activation_std"
    result = CliRunner().invoke(
        main,
        [
            "plot",
            str(tmp_path / "unused.h5"),
            "-o",
            str(tmp_path / "figures"),
            "--dpi",
            "30",
            "--only",
            figures,
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(
        f"{f}.png" for f in figures.split(",")
    )
