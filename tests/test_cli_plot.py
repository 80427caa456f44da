"""``dyntrace plot`` and ``dyntrace compare``: valid image files, --only, notes for what a file
cannot support, and one clear line (no traceback) for bad input."""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET

import matplotlib.image
import pytest
from click.testing import CliRunner
from plots._runs import record_run, with_landscapes

from dyntrace.cli import main
from dyntrace.plots import COMPARISONS, FIGURES

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_runs")
    return {
        "full": with_landscapes(record_run(folder / "full.h5", steps=40, every=5)),
        "sgd": record_run(folder / "sgd.h5", steps=40, every=5, optimizer="sgd", probes=None, seed=1),
        "scalars": record_run(folder / "scalars.h5", steps=10, probes=[]),
        "empty": record_run(folder / "empty.h5", steps=3, probes=[], log=False),
    }


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_plot_writes_every_figure_the_file_supports_beside_it(files, tmp_path):
    run = tmp_path / "my run.h5"
    shutil.copy(files["full"], run)
    result = invoke("plot", run, "--dpi", 40)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "my run_plots"
    assert result.stdout.splitlines() == [str(folder / f"{name}.png") for name in FIGURES]
    assert result.stderr == ""
    for name in FIGURES:
        path = folder / f"{name}.png"
        assert path.read_bytes()[:8] == PNG
        image = matplotlib.image.imread(path)  # decodes the whole PNG
        assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def test_only_draws_the_named_figures_in_svg_and_pdf(files, tmp_path):
    result = invoke(
        "plot", files["full"], "-o", tmp_path / "svg", "--format", "svg", "--only", "loss", "--only", "norms"
    )
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "svg")) == ["loss.svg", "norms.svg"]
    root = ET.parse(tmp_path / "svg" / "loss.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    result = invoke(
        "plot",
        files["full"],
        "-o",
        tmp_path / "pdf",
        "--format",
        "pdf",
        "--only",
        "gradient_flow,activation_heatmaps",
    )
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "pdf")) == ["activation_heatmaps.pdf", "gradient_flow.pdf"]
    data = (tmp_path / "pdf" / "gradient_flow.pdf").read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-64:]


def test_an_unknown_figure_name_is_a_usage_error_listing_the_valid_ones(files, tmp_path):
    result = invoke("plot", files["full"], "-o", tmp_path, "--only", "loss,nope")
    assert result.exit_code == 2
    assert "unknown figure 'nope'; valid: " + ", ".join(FIGURES) in result.output
    assert "Traceback" not in result.output and not os.listdir(tmp_path)


def test_figures_a_file_cannot_support_are_named_in_one_short_note(files, tmp_path):
    result = invoke("plot", files["scalars"], "-o", tmp_path)
    assert result.exit_code == 0, result.output
    written = [os.path.basename(p) for p in result.stdout.splitlines()]
    assert written == ["dashboard.png", "loss.png", "accuracy.png"]
    skipped = [n for n in FIGURES if f"{n}.png" not in written]
    assert result.stderr.splitlines() == [
        f"note: {len(skipped)} figures need data this run lacks ({', '.join(skipped)}); --only NAME says why"
    ]


def test_figures_asked_for_by_name_get_one_note_each_saying_why(files, tmp_path):
    asked = ["loss", "norms", "activation_heatmaps", "step_sizes"]
    result = invoke("plot", files["scalars"], "-o", tmp_path, "--only", ",".join(asked))
    assert result.exit_code == 0, result.output
    assert [os.path.basename(p) for p in result.stdout.splitlines()] == ["loss.png"]
    notes = result.stderr.splitlines()
    assert [line.split(":")[0] for line in notes] == ["note"] * 3
    for name, line in zip(asked[1:], notes):
        assert line.startswith(f"note: skipped {name}: no ")
    assert "scalar" in notes[0] and "'activations' probe" in notes[1] and "'steps' probe" in notes[2]


def test_a_file_with_nothing_to_draw_exits_nonzero(files, tmp_path):
    result = invoke("plot", files["empty"], "-o", tmp_path)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("Error: ") and "none of the figures" in result.stderr


@pytest.mark.parametrize("case", ["missing", "not hdf5", "truncated", "newer"])
@pytest.mark.parametrize("command", ["plot", "compare"])
def test_bad_input_gets_one_clear_line_and_a_nonzero_exit(files, tmp_path, bad_run_files, case, command):
    path, message = bad_run_files(tmp_path, files["scalars"])[case]
    args = ["plot", path] if command == "plot" else ["compare", files["scalars"], path]
    result = invoke(*args, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "out").exists()


def test_compare_overlays_runs_into_valid_files(files, tmp_path):
    result = invoke("compare", files["full"], files["sgd"], "--labels", "adam,sgd", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(tmp_path / f"{name}.png") for name in COMPARISONS]
    for name in COMPARISONS:
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG


def test_compare_skips_with_a_note_what_no_run_has(files, tmp_path):
    result = invoke("compare", files["sgd"], files["scalars"], "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "note: skipped step_sizes: " in result.stderr and "'steps'" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["activation_std.png", "gradient_norms.png", "loss.png"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--labels", "a"], "1 labels for 2 runs"),
        (["--labels", "a,"], "1 labels for 2 runs"),
    ],
)
def test_compare_usage_errors(files, tmp_path, args, message):
    result = invoke("compare", files["full"], files["sgd"], *args, "-o", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_compare_needs_two_runs(files, tmp_path):
    result = invoke("compare", files["full"], "-o", tmp_path)
    assert result.exit_code == 2 and "at least two run files" in result.output
