import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import dyntrace  # noqa: E402

from ._runs import plateau_run, record_run, with_landscapes  # noqa: E402


@pytest.fixture(scope="session")
def run_files(tmp_path_factory):
    """Paths of the session's run files, recorded once."""
    folder = tmp_path_factory.mktemp("plot_runs")
    return {
        "full": with_landscapes(record_run(folder / "full.h5")),
        "sgd": record_run(folder / "sgd.h5", optimizer="sgd", probes=None, seed=1),
        "relu": record_run(
            folder / "relu.h5", acts=("relu", "relu"), probes=["activations"], log=False, steps=20
        ),
        "empty": record_run(folder / "empty.h5", probes=[], log=False, steps=5),
        "plateau": plateau_run(folder / "plateau.h5"),
    }


@pytest.fixture(scope="session")
def runs(run_files):
    opened = {name: dyntrace.open_run(path) for name, path in run_files.items()}
    yield opened
    for run in opened.values():
        run.close()


@pytest.fixture(autouse=True)
def _figures_left_alone():
    """Figure functions register nothing with pyplot and change no rcParams."""
    rc = dict(matplotlib.rcParams)
    fignums = plt.get_fignums()
    yield
    assert plt.get_fignums() == fignums, "a figure was registered with pyplot"
    assert dict(matplotlib.rcParams) == rc, "matplotlib rcParams changed"
    plt.close("all")
