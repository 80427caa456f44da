"""Bad input to the command line: one clear line on stderr, a non-zero exit, no traceback."""

import os
import shutil
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
    result = subprocess.run(
        [sys.executable, "-m", "dyntrace.cli", "info", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_open_run_raises_a_dyntrace_error(tmp_path, good_run, bad_run_files):
    for path, message in bad_run_files(tmp_path, good_run).values():
        with pytest.raises(dyntrace.DyntraceError, match=message):
            dyntrace.open_run(path)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "dyntrace.cli", *map(str, args)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("command", ["info", "plot", "compare", "landscape"])
def test_a_directory_gets_one_line(tmp_path, good_run, command):
    args = [command, tmp_path] + ([good_run] if command == "compare" else [])
    result = _cli(*args)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path}: is a directory, not a run file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_gets_one_line(tmp_path, good_run):
    path = tmp_path / "locked.h5"
    shutil.copyfile(good_run, path)
    path.chmod(0)
    result = _cli("info", path)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"Error: {path}: cannot read (Permission denied)"
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["plot", "RUN", "--dpi", "5"], "Invalid value for '--dpi': 5 is not in the range 10<=x<=1200."),
        (["info", "RUN", "--bogus"], "No such option '--bogus'"),
        (["landscape", "RUN", "--resolution", "1000000"], "1000000 is not in the range 2<=x<=1001."),
        (["train", "--device", "cuda:7", "--steps", "1"], "Invalid device: 'cuda:7'"),
        (["train", "--width", "1000000000", "--steps", "1"], "Invalid width: 1000000000 (at most 16384)"),
        (["train", "--depth", "1000000", "--steps", "1"], "Invalid depth: 1000000 (at most 256)"),
    ],
)
def test_bad_options_get_one_line(good_run, tmp_path, args, message):
    result = _cli(
        *[good_run if a == "RUN" else a for a in args],
        *(["-o", tmp_path / "t.h5"] if args[0] == "train" else []),
    )
    lines = result.stderr.strip().splitlines()
    assert (
        result.returncode in (1, 2)
        and len(lines) == 1
        and message in lines[0]
        and "Traceback" not in result.stderr
    )


def test_a_config_file_out_of_bounds_gets_one_line(tmp_path):
    config = tmp_path / "c.json"
    config.write_text('{"landscape": {"plane": {"resolution": 1000000}}, "steps": 1}')
    result = _cli("train", "--config", config, "-o", tmp_path / "t.h5")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: Invalid landscape plane.resolution: 1000000 (at most 1001 a side)"
    ]


def test_an_unexpected_exception_is_one_line_that_says_it_is_a_bug(good_run, monkeypatch):
    from dyntrace.io import reader

    monkeypatch.setattr(reader.Run, "info", lambda self: 1 / 0)
    result = CliRunner().invoke(main, ["info", str(good_run)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [
        "Error: internal error: ZeroDivisionError: division by zero (a bug in dyntrace; please report it; "
        "DYNTRACE_TRACEBACK=1 shows where)"
    ]
