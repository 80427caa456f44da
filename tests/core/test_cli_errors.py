"""Bad input to the command line: one clear line on stderr, a non-zero exit, no traceback."""

import subprocess
import sys

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


def test_info_reports_a_good_run(good_run):
    result = CliRunner().invoke(main, ["info", str(good_run)])
    assert result.exit_code == 0, result.output
    assert "3 record steps" in result.output
    json_result = CliRunner().invoke(main, ["info", str(good_run), "--json"])
    import json

    info = json.loads(json_result.output)
    assert info["steps"] == 6 and info["records"] == 3 and info["layers"] == ["1"]


@pytest.mark.parametrize("case", ["missing", "not hdf5", "foreign", "truncated", "newer"])
def test_bad_input_gets_one_line_and_nonzero_exit(tmp_path, good_run, bad_run_files, case):
    path, message = bad_run_files(tmp_path, good_run)[case]
    result = subprocess.run([sys.executable, "-m", "dyntrace.cli", "info", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_open_run_raises_a_dyntrace_error(tmp_path, good_run, bad_run_files):
    for path, message in bad_run_files(tmp_path, good_run).values():
        with pytest.raises(dyntrace.DyntraceError, match=message):
            dyntrace.open_run(path)
