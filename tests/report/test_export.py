"""``dyntrace export --tensorboard``: TensorBoard's own loader reads back the reader's numbers; the
reading side (report and export) never imports torch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from plots._runs import record_run

import dyntrace
from dyntrace.cli import main

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard is in the test extras"
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    path = record_run(folder / "run.h5", steps=20, every=5)
    result = CliRunner().invoke(main, ["export", str(path), "--tensorboard", str(folder / "tb")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{folder / 'tb' / 'run'}: ")
    events = event_accumulator.EventAccumulator(
        str(folder / "tb" / "run"), size_guidance={"scalars": 0, "histograms": 0}
    )
    events.Reload()
    with dyntrace.open_run(path) as run:
        yield run, events, folder


def test_every_scalar_at_every_step(exported):
    run, events, _ = exported
    assert sorted(events.Tags()["scalars"]) == sorted(run.scalar_names)
    for name in run.scalar_names:
        steps, values = run.scalar(name)
        logged = events.Scalars(name)
        assert [e.step for e in logged] == steps.tolist()
        np.testing.assert_array_equal(
            [e.value for e in logged], values.astype(np.float32)
        )  # simple_value is float32
    assert len(events.Scalars("loss")) == 20


@pytest.mark.parametrize(
    "probe, name", [("gradients", "0.weight"), ("weights", "2.bias"), ("activations", "3")]
)
def test_histograms_are_the_readers_bins_at_the_record_steps(exported, probe, name):
    run, events, _ = exported
    hist = run.hist(probe, name)
    logged = events.Histograms(f"{probe}/{name}")
    assert [e.step for e in logged] == hist.steps.tolist() == [1, 6, 11, 16]
    for r, event in enumerate(logged):
        value = event.histogram_value
        below = hist.underflow[r] + (hist.zeros[r] if hist.scale == "log10_abs" else 0)
        above = hist.overflow[r]
        inner = slice(1 if below else 0, -1 if above else None)
        np.testing.assert_array_equal(value.bucket[inner], hist.counts[r])
        edges = hist.edges if hist.edges.ndim == 1 else hist.edges[r]  # weights: the range follows the data
        np.testing.assert_allclose(value.bucket_limit[inner], edges[1:])
        assert (value.bucket[0] if below else 0) == below and (value.bucket[-1] if above else 0) == above
        assert value.num == hist.sampled[r] == sum(value.bucket)
    description = events.SummaryMetadata(f"{probe}/{name}").summary_description
    assert ("log10 |x|" in description) == (probe == "gradients")


def test_exporting_again_replaces_the_event_file(exported):
    run, _, folder = exported
    result = CliRunner().invoke(
        main, ["export", run.path, "--tensorboard", str(folder / "tb"), "--no-histograms"]
    )
    assert result.exit_code == 0 and result.output.rstrip().endswith(", 0 histograms")
    (only,) = os.listdir(folder / "tb" / "run")
    assert only.startswith("events.out.tfevents.")


def test_report_and_export_never_import_torch(exported, tmp_path):
    run, _, _ = exported
    scalars = record_run(tmp_path / "scalars.h5", steps=10, probes=[])  # a report with few figures: quick
    code = textwrap.dedent(f"""
        import sys
        import matplotlib
        matplotlib.use("Agg")
        from dyntrace.report import build_report
        from dyntrace.export.tensorboard import to_tensorboard
        to_tensorboard({run.path!r}, {str(tmp_path / "tb")!r})
        build_report([{str(scalars)!r}], dpi=30)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_clear_error_without_tensorboard(exported, tmp_path):
    run, _, _ = exported
    code = (
        "import sys; sys.modules['tensorboard'] = None\n"
        "from dyntrace.export.tensorboard import to_tensorboard\n"
        "from dyntrace.errors import DyntraceError\n"
        f"try:\n    to_tensorboard({run.path!r}, {str(tmp_path)!r})\n"
        "except DyntraceError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'dyntrace[tensorboard]'" in out
