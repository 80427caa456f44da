"""The damage the issue found, one case each: a clear RunFileError (or a note), never a hang,
a traceback or a figure of wrong numbers. (The fuzz test covers the same ground at random.)"""

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import dyntrace
from dyntrace.errors import RunFileError
from dyntrace.io.hdf5 import lookup3

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("damaged") / "good.h5"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with dyntrace.Recorder(model, opt, path, every=2, trajectory=2) as rec:
        for _ in range(40):
            opt.zero_grad()
            loss = model(torch.randn(5, 3)).pow(2).mean()
            loss.backward()
            opt.step()
            rec.log(loss=loss)
    return path


def edited(source, target, edit, *, legacy=False):
    """A copy of ``source`` changed by ``edit(f)``; ``legacy`` first removes /committed and the
    checksums (as in a file written before they existed), so the rules are what catches it."""
    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as f:
        if legacy:
            del f["committed"]
            del f.attrs["checksums"]
        edit(f)
    return target


def test_the_undamaged_file_reads_and_verifies(run_file):
    with dyntrace.open_run(run_file) as run:
        run.verify()
        assert (
            run.closed_cleanly
            and run.notes == []
            and run.steps("gradients").tolist() == list(range(1, 41, 2))
        )


def test_a_plain_hdf5_file_with_the_root_attributes_only(tmp_path):
    path = tmp_path / "bare.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "dyntrace-run"
        f.attrs["schema_version"] = 1
    with pytest.raises(RunFileError, match=r"no /closed \(not a complete run file\)"):
        dyntrace.open_run(path)


@pytest.mark.parametrize("value", ["abc", np.array([1, 2]), float("nan"), 1.5, True])
def test_a_schema_version_that_is_not_an_integer(run_file, tmp_path, value):
    path = edited(run_file, tmp_path / "v.h5", lambda f: f.attrs.__setitem__("schema_version", value))
    with pytest.raises(RunFileError, match=r"invalid schema version .* \(expected an integer\)"):
        dyntrace.open_run(path)


def test_config_that_is_not_json(run_file, tmp_path):
    def edit(f):
        f.attrs["config"] = "{not json"

    with pytest.raises(RunFileError, match="the config attribute is not valid JSON"):
        dyntrace.open_run(edited(run_file, tmp_path / "legacy.h5", edit, legacy=True))
    with pytest.raises(RunFileError, match="structure or attributes of / do not match their stored checksum"):
        dyntrace.open_run(edited(run_file, tmp_path / "checked.h5", edit))


@pytest.mark.parametrize(
    "value, message",
    [
        (np.array([b"yes"]), "has type"),
        (np.zeros(0, np.int8), "has shape"),
        (np.array([7], np.int8), "is 7 .expected 0, 1 or 2."),
    ],
)
def test_a_closed_flag_that_is_not_0_1_or_2(run_file, tmp_path, value, message):
    def edit(f):
        del f["closed"]
        f["closed"] = value

    with pytest.raises(RunFileError, match=message):
        dyntrace.open_run(edited(run_file, tmp_path / "closed.h5", edit, legacy=True))


def test_two_to_the_forty_scalar_rows_in_a_small_file(run_file, tmp_path):
    def edit(f):
        for column in ("step", "key", "value"):
            f[f"scalars/{column}"].resize((2**40,))

    path = edited(run_file, tmp_path / "huge.h5", edit, legacy=True)
    assert os.path.getsize(path) < 200_000
    with pytest.raises(RunFileError, match=r"/scalars/\w+ declares 1099511627776 rows .* in a file of"):
        dyntrace.open_run(path)


def test_a_probe_whose_fields_are_shorter_than_its_steps(run_file, tmp_path):
    path = edited(
        run_file, tmp_path / "short.h5", lambda f: f["probes/gradients/sum"].resize(8, axis=0), legacy=True
    )
    with pytest.raises(RunFileError, match="/probes/gradients: sum has 8 rows, step 20"):
        dyntrace.open_run(path)


def test_committed_rows_beyond_the_stored_ones(run_file, tmp_path):
    def edit(f):
        tables = json.loads(f["committed"].attrs["tables"])
        counts = f["committed"][()]
        counts[tables.index("probes/gradients")] = 39
        f["committed"][...] = counts

    with pytest.raises(RunFileError, match="/probes/gradients: .* has 20 rows, committed 39"):
        dyntrace.open_run(edited(run_file, tmp_path / "committed.h5", edit))


def test_scalar_keys_that_name_no_scalar(run_file, tmp_path):
    def edit(f):
        keys = f["scalars/key"][()]
        keys[3] = 99
        f["scalars/key"][...] = keys

    with pytest.raises(RunFileError, match=r"/scalars/key 99 at row 3 names no scalar"):
        dyntrace.open_run(edited(run_file, tmp_path / "keys.h5", edit))


def test_an_old_file_with_phantom_rows_is_read_up_to_them_with_a_note(run_file, tmp_path):
    """What the old writer left after a full disk: the step column extended with zeros."""

    def edit(f):
        for name in f["probes/gradients"]:
            ds = f[f"probes/gradients/{name}"]
            if ds.maxshape[0] is None:
                ds.resize(ds.shape[0] + 5, axis=0)

    with dyntrace.open_run(edited(run_file, tmp_path / "phantom.h5", edit, legacy=True)) as run:
        assert run.steps("gradients").tolist() == list(range(1, 41, 2))  # no step-0 records
        assert len(run.stat("gradients", "0.weight", "norm")[1]) == 20
        assert any("/probes/gradients/step: read up to row 20 of 25" in note for note in run.notes)


@pytest.mark.parametrize("link", ["loop", "dangling", "external"])
def test_links_where_objects_belong(run_file, tmp_path, link):
    def edit(f):
        del f["probes/gradients/step"]
        f["probes/gradients/step"] = {
            "loop": h5py.SoftLink("/probes/gradients/step"),
            "dangling": h5py.SoftLink("/nowhere"),
            "external": h5py.ExternalLink("other.h5", "/probes/gradients/step"),
        }[link]

    with pytest.raises(
        RunFileError, match=r"/probes/gradients/step is a (SoftLink|ExternalLink), not an object"
    ):
        dyntrace.open_run(edited(run_file, tmp_path / "link.h5", edit, legacy=True))


def _chunk(path, name):
    with h5py.File(path) as f:
        info = f[name].id.get_chunk_info(0)
        return info.byte_offset, info.size


def test_a_damaged_chunk_is_found_before_anything_is_drawn(run_file, tmp_path):
    path = tmp_path / "chunk.h5"
    shutil.copyfile(run_file, path)
    offset, size = _chunk(path, "probes/weights/hist")
    with open(path, "r+b") as fh:
        fh.seek(offset + size // 2)
        fh.write(bytes(16))
    with dyntrace.open_run(path) as run:  # the structure is whole ...
        with pytest.raises(RunFileError, match="fails its checksum"):
            run.verify()  # ... a chunk is not
    for command in (["info", str(path)], ["plot", str(path), "-o", str(tmp_path / "out")]):
        proc = subprocess.run(
            [sys.executable, "-m", "dyntrace.cli", *command],
            capture_output=True,
            text=True,
            timeout=120,
            env=ENV,
        )
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and "fails its checksum" in proc.stderr


def _set_flags(path, flags):
    with open(path, "r+b") as fh:
        head = bytearray(fh.read(48))
        head[11] = flags
        head[44:48] = lookup3(bytes(head[:44])).to_bytes(4, "little")
        fh.seek(0)
        fh.write(head)


@pytest.mark.parametrize("killed", [False, True], ids=["closed", "killed"])
def test_a_zeroed_object_header_fails_at_once(run_file, tmp_path, killed):
    """The issue's hang: zeroed metadata read under SWMR was retried for an hour."""
    path = tmp_path / "header.h5"
    shutil.copyfile(run_file, path)
    with h5py.File(path) as f:
        address = h5py.h5o.get_info(f["probes/gradients"].id).addr
    with open(path, "r+b") as fh:
        fh.seek(address + 16)
        fh.write(bytes(64))
    if killed:  # as a killed writer leaves it: "open for SWMR writing", /closed 0
        _set_flags(path, 0b101)
    proc = subprocess.run(
        [sys.executable, "-m", "dyntrace.cli", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "damaged" in proc.stderr
