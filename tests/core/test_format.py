"""The file format: the kept schema-1 file still reads, with the numbers it was written with."""

from pathlib import Path

import numpy as np
import pytest

import dyntrace

SCHEMA1 = Path(__file__).parent.parent / "data" / "schema1.h5"


def test_schema1_fixture_reads():
    with dyntrace.open_run(SCHEMA1) as run:
        assert run.meta["schema_version"] == 1 and run.closed_cleanly
        assert run.config == {"purpose": "schema 1 fixture"}
        np.testing.assert_allclose(run.scalar("loss")[1], [0.058482, 0.052971, 0.042696, 0.025188, 0.029597, 0.011673], atol=1e-6)
        assert run.record_steps.tolist() == [1, 3, 5]
        np.testing.assert_allclose(run.stat("activations", "1", "mean")[1], [-0.037236, 0.015992, -0.091177], atol=1e-6)
        np.testing.assert_allclose(run.stat("gradients", "0.weight", "norm")[1], [0.074501, 0.078738, 0.058821], atol=1e-6)
        assert run.kinds("activations") == {"1": "tanh", "3": "relu"}
        steps, edges, counts = run.hist("activations", "1")
        assert edges[0] == -1 and edges[-1] == 1 and counts.shape == (3, 100)


def test_every_dataset_says_what_it_holds():
    import h5py

    with h5py.File(SCHEMA1) as f:
        for probe in f["probes"].values():
            for name, ds in probe.items():
                if name not in ("names", "step", "kind"):
                    assert ds.attrs["columns"] == "names" and ds.attrs["reduce"] in ("sum", "min", "max")
