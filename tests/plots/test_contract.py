"""The contract every registered figure keeps (STYLE habits 6, 7, 10), and the theme's."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from dyntrace.errors import MissingDataError
from dyntrace.plots import FIGURES, PALETTE, layer_color, layer_colors, theme
from dyntrace.plots.units import BOUNDED_KINDS


@pytest.fixture(params=list(FIGURES))
def spec(request):
    return FIGURES[request.param]


def _drawn(fig):
    return sum(len(ax.lines) + len(ax.collections) + len(ax.patches) + len(ax.images) for ax in fig.axes)


def test_draws_a_new_figure_without_touching_global_state(runs, spec):
    run = runs["full"]
    assert spec.missing(run) is None
    rc, backend, fignums = dict(matplotlib.rcParams), matplotlib.get_backend(), plt.get_fignums()
    fig = spec.function(run)
    assert isinstance(fig, Figure) and _drawn(fig) > 0
    assert dict(matplotlib.rcParams) == rc and matplotlib.get_backend() == backend
    assert plt.get_fignums() == fignums  # no plt.figure / plt.gca: nothing registered with pyplot


def test_draws_into_a_given_axes(runs, spec):
    fig = Figure()
    ax = fig.add_subplot()
    assert spec.function(runs["full"], ax=ax) is fig
    assert _drawn(fig) > 0


def test_a_run_without_its_data_raises_missing_data_naming_file_and_source(runs, spec):
    run = runs["empty"]
    with pytest.raises(MissingDataError) as info:
        spec.function(run)
    message = str(info.value)
    assert run.path in message
    assert "probe" in message or "rec.log" in message, message
    if spec.probes or spec.scalars:
        assert spec.missing(run) is not None


def test_importing_the_plots_changes_no_matplotlib_setting_and_loads_no_torch():
    code = (
        "import matplotlib as mpl, sys\n"
        "rc, backend = dict(mpl.rcParams), mpl.rcParams._get_backend_or_none()\n"
        "import dyntrace.plots, dyntrace.commands.plot, dyntrace.commands.compare\n"
        "assert dict(mpl.rcParams) == rc and mpl.rcParams._get_backend_or_none() == backend\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )  # (pyplot itself is imported, by seaborn; the backend check above is what matters)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_theme_restores_rcparams_even_when_drawing_fails():
    before = dict(matplotlib.rcParams)
    with pytest.raises(RuntimeError):
        with theme():
            assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] == list(PALETTE)
            raise RuntimeError("boom")
    assert dict(matplotlib.rcParams) == before


def test_layer_colors_are_fixed_per_layer_count_and_distinct():
    assert layer_colors(3) == list(PALETTE[:3]) and layer_color(2, 3) == PALETTE[2]
    many = layer_colors(100)
    assert many == layer_colors(100) and len({tuple(c) for c in many}) == 100
    assert layer_color(99, 100) == many[99]
    with pytest.raises(ValueError, match="out of range"):
        layer_color(3, 3)


def test_bounded_kinds_are_the_activation_probes():
    from dyntrace.probes.activations import BOUNDS

    assert set(BOUNDED_KINDS) == set(BOUNDS)
