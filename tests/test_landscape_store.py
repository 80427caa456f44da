"""Landscapes of trained runs: `dyntrace.train(landscape=...)`, `dyntrace train --landscape`,
`dyntrace landscape RUN.h5`, checked against losses computed by hand from the stored weights."""

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.nn import functional as F

import dyntrace
from dyntrace.catalog import ConfigError
from dyntrace.catalog.datasets import make_dataset
from dyntrace.catalog.models import make_model
from dyntrace.cli import main
from dyntrace.commands.train import command as train_command
from dyntrace.landscape import store
from dyntrace.landscape.evaluate import METHODS
from dyntrace.trainer import TrainConfig, train

STEPS = 12
QUICK = dict(
    width=16, batch_size=256, every=5, steps=STEPS, progress=False
)  # 1257 digits → 5 steps per epoch
SLICES = {
    "plane": {"resolution": [5, 3], "span": 0.5, "seed": 7},
    "line": {"steps": 5},
    "trajectory": {"resolution": 5},
}


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    return train(landscape=SLICES, out=str(tmp_path_factory.mktemp("store") / "run.h5"), **QUICK)


def by_hand(path, flat):
    """(loss, accuracy) of the run's model with the flat parameter vector ``flat``, in eval mode,
    on the evaluation batch (the validation split of the run's seed), without dyntrace.landscape."""
    with dyntrace.open_run(path) as run:
        config = run.config
    data = make_dataset(config["dataset"], seed=config["seed"])
    model = make_model(
        config["model"],
        data.n_features,
        data.n_outputs,
        depth=config["depth"],
        width=config["width"],
        activation=config["activation"],
        init=config["init"],
    )
    torch.nn.utils.vector_to_parameters(torch.as_tensor(flat), model.parameters())
    x, y = data.X_val[: config["landscape"]["examples"]], data.y_val[: config["landscape"]["examples"]]
    with torch.no_grad():
        out = model.eval()(x)
        return F.cross_entropy(out, y).item(), (out.argmax(1) == y).float().mean().item()


def test_line_ends_are_the_initial_and_final_losses(run_file):
    with dyntrace.open_run(run_file) as run:
        line = run.landscape("line")
        steps, names, flat = run.trajectory()
    assert (steps[0], steps[-1]) == (0, STEPS)
    np.testing.assert_array_equal(line.t, [0, 0.25, 0.5, 0.75, 1])
    initial, final = by_hand(run_file, flat[0]), by_hand(run_file, flat[-1])
    assert initial[0] > final[0]  # training lowered the loss on held-out data
    assert (line.loss[0], line.acc[0]) == initial  # bit for bit
    assert (line.loss[-1], line.acc[-1]) == final
    assert line.meta["kind"] == "line" and line.meta["step"] == STEPS and line.meta["start_step"] == 0
    assert line.meta["method"] in METHODS and line.meta["batch"] == "val[:270]"


def test_random_plane_centre_is_the_final_loss(run_file):
    with dyntrace.open_run(run_file) as run:
        plane = run.landscape("plane")
        flat = run.trajectory()[2]
    assert plane.loss.shape == (3, 5) and plane.x[2] == 0 and plane.y[1] == 0
    assert (plane.loss[1, 2], plane.acc[1, 2]) == by_hand(run_file, flat[-1])
    assert np.isfinite(plane.loss).all() and np.isfinite(plane.acc).all()
    np.testing.assert_array_equal(plane.x, [-0.5, -0.25, 0, 0.25, 0.5])
    meta = plane.meta
    assert {
        k: meta[k]
        for k in ("kind", "seed", "normalisation", "ignore", "span", "resolution", "step", "loss", "metric")
    } == {
        "kind": "random_plane",
        "seed": 7,
        "normalisation": "filter",
        "ignore": "biasbn",
        "span": 0.5,
        "resolution": [5, 3],
        "step": STEPS,
        "loss": "cross_entropy",
        "metric": "accuracy",
    }
    assert meta["method"] in METHODS and meta["seconds"] > 0


def test_trajectory_plane_holds_the_path_and_its_explained_variance(run_file):
    with dyntrace.open_run(run_file) as run:
        plane = run.landscape("trajectory")
        steps, _, flat = run.trajectory()
        assert run.landscape_names == ["line", "plane", "trajectory"]
    ev = plane.explained_variance
    assert ev.shape == (2,) and 0 < ev[1] <= ev[0] <= 1 and ev.sum() <= 1 + 1e-12
    assert plane.meta["explained_variance"] == pytest.approx(list(ev))
    np.testing.assert_array_equal(plane.path[-1], [0, 0])  # the plane is centred on the final weights
    np.testing.assert_array_equal(
        plane.path_steps, steps
    )  # the trajectory turned on by itself, stride 1 here
    assert plane.meta["stride"] == 1 and plane.meta["records"] == STEPS + 1
    # PCA directions are unit vectors: the start lies at its distance from the final weights
    assert np.hypot(*plane.path[0]) <= np.linalg.norm(flat[0].astype(np.float64) - flat[-1]) * (1 + 1e-6)
    assert np.hypot(*plane.path[0]) >= np.linalg.norm(flat[0].astype(np.float64) - flat[-1]) * np.sqrt(
        ev.sum()
    ) * (1 - 1e-6)
    assert plane.x[0] < plane.path[:, 0].min() and plane.x[-1] > plane.path[:, 0].max()
    assert (
        plane.meta["kind"] == "trajectory_plane"
        and plane.meta["normalisation"] == "unit"
        and plane.meta["step"] == STEPS
    )


def test_cli_recomputes_the_slices_and_draws_them(run_file, tmp_path):
    path = tmp_path / "copy.h5"
    shutil.copy(run_file, path)
    with dyntrace.open_run(path) as run:
        trained = run.landscape("plane")
    result = CliRunner().invoke(
        main,
        [
            "landscape",
            str(path),
            "--plane",
            "--trajectory",
            "--resolution",
            "3",
            "--seed",
            "7",
            "-o",
            str(tmp_path / "figs"),
        ],
    )
    assert result.exit_code == 0, result.output
    names = ["landscape_plane_contour.png", "landscape_plane_surface.png", "landscape_trajectory.png"]
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == names
    with dyntrace.open_run(path) as run:
        plane, line = run.landscape("plane"), run.landscape("line")
        assert run.landscape("trajectory").loss.shape == (3, 3)
    assert (
        plane.loss.shape == (3, 3) and plane.meta["span"] == 0.5
    )  # the run's options, resolution from the CLI
    assert plane.loss[1, 1] == trained.loss[1, 2]  # rebuilt from the file: the same final loss
    assert line.loss.shape == (5,)  # not asked for: left as training wrote it


def test_cli_on_runs_without_trajectory_or_config_exits_1_with_one_line(tmp_path):
    bare = train(out=str(tmp_path / "bare.h5"), **{**QUICK, "steps": 1})
    model = torch.nn.Linear(2, 2)
    with dyntrace.Recorder(
        model, torch.optim.SGD(model.parameters(), lr=0.1), tmp_path / "own.h5", probes=["scalars"]
    ):
        pass
    for path, expected in [(bare, "no parameter trajectory"), (tmp_path / "own.h5", "no training config")]:
        result = CliRunner().invoke(main, ["landscape", str(path)])
        assert result.exit_code == 1
        assert (
            result.output.count("\n") == 1 and expected in result.output and "dyntrace train" in result.output
        )
        assert "Traceback" not in result.output


def test_train_cli_regression_line_without_accuracy(tmp_path):
    out = tmp_path / "r.h5"
    result = CliRunner().invoke(
        train_command,
        [
            "--dataset",
            "teacher_student",
            "--set",
            "dataset_options.n=300",
            "--steps",
            "3",
            "--landscape",
            "line",
            "--landscape-resolution",
            "3",
            "-o",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    with dyntrace.open_run(out) as run:
        assert run.landscape_names == ["line"] and "trajectory" not in run.info()["landscapes"]
        line = run.landscape("line")
        assert run.config["landscape"]["line"] == {"steps": 3} and run.config["trajectory"] is None
    assert line.acc is None and line.meta["loss"] == "mse" and line.t.tolist() == [0, 0.5, 1]
    result = CliRunner().invoke(train_command, ["--landscape-resolution", "3", "-o", str(tmp_path / "x.h5")])
    assert result.exit_code == 2 and "needs --landscape" in result.output
    result = CliRunner().invoke(train_command, ["--landscape", "plane,hill", "-o", str(tmp_path / "x.h5")])
    assert result.exit_code == 2 and "unknown slice 'hill'" in result.output


def test_options_are_completed_and_checked():
    assert store.normalize_options("plane,trajectory") == {
        "plane": store.DEFAULTS["plane"],
        "trajectory": store.DEFAULTS["trajectory"],
        "examples": 1024,
        "method": "auto",
    }
    assert TrainConfig(landscape=["line"]).landscape["line"] == {"steps": 21}
    for bad, message in [
        ({"plane": {"resolutin": 3}}, "Invalid landscape option plane.resolutin"),
        ({"hill": {}}, "Invalid landscape key 'hill'"),
        ({"examples": 10}, "names no slice"),
        ({"line": {"steps": 1}}, "Invalid landscape line.steps: 1"),
        ({"plane": {"span": -1}}, "Invalid landscape plane.span: -1"),
    ]:
        with pytest.raises(ConfigError, match=message):
            TrainConfig(landscape=bad)
    with pytest.raises(ConfigError, match="Invalid trajectory: 0"):
        TrainConfig(trajectory=0)
    # the automatic stride keeps at most ~200 snapshots (+ the first and the last)
    assert store.trajectory_stride(12) == 1 and store.trajectory_stride(1000) == 5
    assert 1000 // store.trajectory_stride(1001) <= store.MAX_SNAPSHOTS
