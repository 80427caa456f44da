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
        np.testing.assert_allclose(
            run.scalar("loss")[1], [0.058482, 0.052971, 0.042696, 0.025188, 0.029597, 0.011673], atol=1e-6
        )
        assert run.record_steps.tolist() == [1, 3, 5]
        np.testing.assert_allclose(
            run.stat("activations", "1", "mean")[1], [-0.037236, 0.015992, -0.091177], atol=1e-6
        )
        np.testing.assert_allclose(
            run.stat("gradients", "0.weight", "norm")[1], [0.074501, 0.078738, 0.058821], atol=1e-6
        )
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


def test_landscape_round_trip_keeps_li_et_al_names_and_grid_orientation(tmp_path):
    import shutil

    import h5py

    from dyntrace.io import format as fmt
    from dyntrace.landscape.results import PlaneResult

    path = tmp_path / "run.h5"
    shutil.copy(SCHEMA1, path)
    x, y = np.linspace(-1, 1, 5), np.linspace(-2, 2, 3)  # nx = 5, ny = 3: not square
    loss = np.add.outer(y, 10 * x)  # loss[i, j] = y[i] + 10 x[j]
    loss[0, 0] = np.nan  # "not computed"
    result = PlaneResult(x=x, y=y, loss=loss, meta={"seed": 3, "ignore": "biasbn"})
    fmt.write_landscape(path, "plane", result.to_arrays(), {"kind": "plane", **result.meta})
    with h5py.File(path) as f:
        assert f["landscape/plane/train_loss"].shape == (3, 5)
        assert set(f["landscape/plane"]) >= {"xcoordinates", "ycoordinates", "train_loss"}
    with dyntrace.open_run(path) as run:
        assert run.landscape_names == ["plane"]
        back = run.landscape("plane")
        np.testing.assert_array_equal(back.x, x)
        np.testing.assert_array_equal(back.loss, loss)
        assert back.loss[2, 4] == y[2] + 10 * x[4]
        assert back.meta["seed"] == 3 and back.meta["kind"] == "plane"
        with pytest.raises(dyntrace.DyntraceError, match="no landscape 'line'"):
            run.landscape("line")


def test_stat_of_every_tensor_at_once_equals_the_columns():
    with dyntrace.open_run(SCHEMA1) as run:
        for probe in ("activations", "gradients"):
            for stat in ("mean", "std", "norm", "frac_zero", "frac_nonfinite"):
                steps, table = run.stat(probe, None, stat)
                assert table.shape == (len(steps), len(run.names(probe)))
                for j, name in enumerate(run.names(probe)):
                    np.testing.assert_array_equal(table[:, j], run.stat(probe, name, stat)[1])
        _, dead = run.stat("activations", None, "frac_dead")
        assert dead.shape == (3, 2)
