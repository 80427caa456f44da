import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed():
    try:
        import torch
    except ImportError:  # reading-side tests run without torch
        return
    # Tiny test models run far faster on one thread than on two contending ones.
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _build_bad_run_files(folder, good_run):
    """Bad run files built from ``good_run`` under ``folder``:
    ``{case: (path, part of the expected error message)}``."""
    import h5py
    import numpy as np

    text = folder / "notes.txt"
    text.write_text("not a run\n")
    foreign = folder / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    truncated = folder / "truncated.h5"
    data = good_run.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    newer = folder / "newer.h5"
    newer.write_bytes(data)
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = 99
    return {
        "missing": (folder / "nope.h5", "no such file"),
        "not hdf5": (text, "not an HDF5 file"),
        "foreign": (foreign, "not a dyntrace run"),
        "truncated": (truncated, "truncated"),
        "newer": (newer, "newer than this dyntrace reads"),
    }


@pytest.fixture
def bad_run_files():
    """``bad_run_files(folder, good_run) -> {case: (path, expected message)}``: a missing file,
    a non-HDF5 file, a foreign HDF5 file, a truncated run and a run with a newer schema."""
    return _build_bad_run_files
