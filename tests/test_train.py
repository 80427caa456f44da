"""The reference trainer and its command: recorded, re-makeable, deterministic, clear errors."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import dyntrace
from dyntrace import catalog
from dyntrace.catalog import ConfigError
from dyntrace.commands.train import command
from dyntrace.errors import DyntraceError, UnknownNameError
from dyntrace.trainer import TrainConfig, train

QUICK = dict(width=16, batch_size=256, every=5, progress=False)  # 1257 digits → 5 steps per epoch


def losses(path):
    with dyntrace.open_run(path) as run:
        return run.scalar("loss")


def test_digits_end_to_end(tmp_path):
    out = str(tmp_path / "run.h5")
    path = train(dataset="digits", steps=12, out=out, **QUICK)
    assert path == out
    with dyntrace.open_run(path) as run:
        config = run.config
        assert (
            config
            == TrainConfig(dataset="digits", steps=12, out=out, width=16, batch_size=256, every=5).to_dict()
        )
        steps, values = run.scalar("loss")
        np.testing.assert_array_equal(steps, np.arange(1, 13))  # one value per optimizer step
        assert np.all(np.isfinite(values)) and values[0] > 2.0  # ≈ ln 10 at the start
        val_steps, val_loss = run.scalar("val_loss")
        np.testing.assert_array_equal(val_steps, [5, 10, 12])  # per epoch, and after the partial last one
        assert len(run.scalar("val_accuracy")[1]) == 3 and len(run.scalar("test_accuracy")[1]) == 1
        assert run.scalar("lr/0")[1][0] == pytest.approx(0.01)
    assert TrainConfig.from_run(path) == TrainConfig(**config)


def test_same_seed_same_losses_and_remake_from_the_file(tmp_path):
    first = train(seed=3, steps=8, dropout=0.2, augmentation="mixup", out=str(tmp_path / "a.h5"), **QUICK)
    again = train(seed=3, steps=8, dropout=0.2, augmentation="mixup", out=str(tmp_path / "b.h5"), **QUICK)
    remade = train(TrainConfig.from_run(first).replace(out=str(tmp_path / "c.h5")), progress=False)
    other = train(seed=4, steps=8, dropout=0.2, augmentation="mixup", out=str(tmp_path / "d.h5"), **QUICK)
    np.testing.assert_array_equal(losses(first)[1], losses(again)[1])
    np.testing.assert_array_equal(losses(first)[1], losses(remade)[1])
    assert not np.array_equal(losses(first)[1], losses(other)[1])


def test_train_leaves_the_callers_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(steps=2, out=str(tmp_path / "r.h5"), **QUICK)
    torch.testing.assert_close(torch.rand(3), expected)


def test_early_stopping_ends_the_run(tmp_path):
    # no val_loss drop can beat min_delta = 10: the best stays epoch 1, stop after `patience` more
    path = train(
        epochs=20, early_stopping=2, early_stopping_min_delta=10.0, out=str(tmp_path / "e.h5"), **QUICK
    )
    with dyntrace.open_run(path) as run:
        assert run.scalar("early_stop")[1].tolist() == [3.0]
        assert len(run.scalar("val_loss")[1]) == 3 and run.scalar("loss")[0][-1] == 15


# Every catalog entry of every kind the trainer takes, cycled over a few short runs.
_KINDS = {
    "activation": "activation",
    "init": "init",
    "optimizer": "optimizer",
    "schedule": "schedule",
    "norm": "norm",
    "augmentation": "augmentation",
    "scaling": "scaling",
    "dropout": "dropout_style",
}
_OPTIONS = {"step": {"step_size": 2}, "cosine": {"total_steps": 3}, "warmup": {"warmup_steps": 2}}


def _cycled_runs():
    names = {kind: catalog.names(kind) for kind in _KINDS}
    n = max(len(v) for v in names.values())
    return [{field: names[kind][i % len(names[kind])] for kind, field in _KINDS.items()} for i in range(n)]


@pytest.mark.parametrize("choice", _cycled_runs(), ids=lambda c: f"{c['optimizer']}-{c['activation']}")
def test_every_catalog_entry_trains(tmp_path, choice):
    model = "cnn_digits" if choice["norm"] == "instance" else "mlp"
    path = train(
        model=model,
        depth=1,
        steps=3,
        dropout=0.1,
        l1=1e-4,
        l2=1e-3,
        weight_decay=1e-3,
        schedule_options=_OPTIONS.get(choice["schedule"], {}),
        out=str(tmp_path / "c.h5"),
        **choice,
        **{**QUICK, "every": 1, "width": 4},
    )
    assert losses(path)[0].tolist() == [1, 2, 3]  # the step hooks fire once per step (Lookahead too)


@pytest.mark.parametrize("dataset", ["two_spirals", "blobs", "teacher_student", "deep_linear"])
def test_generated_datasets_train(tmp_path, dataset):
    path = train(dataset=dataset, dataset_options={"n": 300}, steps=3, out=str(tmp_path / "g.h5"), **QUICK)
    assert np.all(np.isfinite(losses(path)[1]))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"lr": -1.0}, "Invalid lr: -1.0 (expected a finite number > 0.0)"),
        ({"depth": 1.5}, "Invalid depth: 1.5 (expected an int >= 0)"),
        ({"dropout": 1.0}, "Invalid dropout: 1.0 (in [0, 1))"),
        ({"optimizer_options": 3}, "Invalid optimizer_options: 3"),
        ({"optimizer": "lookahead", "optimizer_options": {"k": 0}}, "optimizer 'lookahead': Invalid k: 0"),
        ({"optimizer_options": {"momentm": 0.9}}, "unexpected keyword argument 'momentm'"),
        ({"augmentation": "cutmix", "dataset": "blobs"}, "Invalid augmentation: 'cutmix' needs images"),
    ],
)
def test_bad_values_raise_one_clear_line(tmp_path, changes, message):
    with pytest.raises(ConfigError) as info:
        train(steps=1, out=str(tmp_path / "x.h5"), **{**QUICK, **changes})
    assert message in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, DyntraceError)


def test_unknown_names_and_keys():
    with pytest.raises(UnknownNameError, match="unknown activation 'rellu'; did you mean 'relu'"):
        TrainConfig(activation="rellu")
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_config_files(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('optimizer = "momentum"\nlr = 0.05\n[optimizer_options]\nmomentum = 0.5\n')
    assert TrainConfig.from_file(toml).optimizer_options == {"momentum": 0.5}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read config"):
        TrainConfig.from_file(bad)


def test_cli_trains_from_config_file_with_overrides(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"optimizer": "adam", "lr": 0.001, "width": 16, "batch_size": 256}))
    out = tmp_path / "cli.h5"
    result = CliRunner().invoke(
        command,
        [
            "--config",
            str(config),
            "--steps",
            "4",
            "--lr",
            "0.002",
            "--every",
            "2",
            "--set",
            "schedule_options.warmup_steps=2",
            "-o",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    with dyntrace.open_run(out) as run:
        assert (run.config["optimizer"], run.config["lr"], run.config["steps"]) == ("adam", 0.002, 4)
        assert run.config["schedule_options"] == {"warmup_steps": 2}
        assert len(run.scalar("loss")[1]) == 4


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--optimizer", "adm"], "unknown optimizer 'adm'; did you mean 'adam'?"),
        (["--set", "lrr=1"], "unknown config key 'lrr'; did you mean 'lr'?"),
        (["--augmentation", "cutout", "--dataset", "blobs"], "needs images"),
    ],
)
def test_cli_errors_are_one_line_without_traceback(tmp_path, args, expected):
    result = CliRunner().invoke(
        command, [*args, "--steps", "1", "-o", str(tmp_path / "x.h5"), "--no-progress"]
    )
    assert result.exit_code != 0
    assert expected in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


def test_cli_list_prints_the_catalog():
    result = CliRunner().invoke(command, ["--list"])
    assert result.exit_code == 0
    for kind in catalog.kinds():
        assert f"{kind}:" in result.output
    assert "  lookahead " in result.output and "  book_xavier " in result.output
