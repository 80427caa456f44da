"""Bad input to the command line: one clear line on stderr, a non-zero exit, no traceback."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import dyntrace
from dyntrace.cli import main


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "good.h5"
    model = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with dyntrace.Recorder(model, opt, path, every=2) as rec:
        for _ in range(6):
            opt.zero_grad()
            loss = model(torch.randn(5, 3)).pow(2).mean()
            loss.backward()
            opt.step()
            rec.log(loss=loss)
    return path


def _bad_files(tmp_path, good_run):
    text = tmp_path / "notes.txt"
    text.write_text("not a run\n")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    truncated = tmp_path / "truncated.h5"
    data = good_run.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    newer = tmp_path / "newer.h5"
    newer.write_bytes(data)
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = 99
    return {
        "missing": (tmp_path / "nope.h5", "no such file"),
        "not hdf5": (text, "not an HDF5 file"),
        "foreign": (foreign, "not a dyntrace run"),
        "truncated": (truncated, "truncated"),
        "newer": (newer, "newer than this dyntrace reads"),
    }


def test_info_reports_a_good_run(good_run):
    result = CliRunner().invoke(main, ["info", str(good_run)])
    assert result.exit_code == 0, result.output
    assert "3 record steps" in result.output
    json_result = CliRunner().invoke(main, ["info", str(good_run), "--json"])
    import json

    info = json.loads(json_result.output)
    assert info["steps"] == 6 and info["records"] == 3 and info["layers"] == ["1"]


@pytest.mark.parametrize("case", ["missing", "not hdf5", "foreign", "truncated", "newer"])
def test_bad_input_gets_one_line_and_nonzero_exit(tmp_path, good_run, case):
    path, message = _bad_files(tmp_path, good_run)[case]
    result = subprocess.run([sys.executable, "-m", "dyntrace.cli", "info", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_open_run_raises_a_dyntrace_error(tmp_path, good_run):
    for path, message in _bad_files(tmp_path, good_run).values():
        with pytest.raises(dyntrace.DyntraceError, match=message):
            dyntrace.open_run(path)
