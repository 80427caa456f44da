"""The reference trainer: every catalog technique by name, one recorded, re-makeable run.

    >>> import dyntrace
    >>> path = dyntrace.train(dataset="digits", depth=3, activation="sigmoid", optimizer="adam",
    ...                       lr=1e-3, epochs=5, out="runs/sigmoid.h5")
    >>> dyntrace.open_run(path).config["activation"]
    'sigmoid'

A run is a plain :class:`TrainConfig`; it is stored in the run file (``run.config``), so
``dyntrace.train(TrainConfig.from_run(path))`` trains the same run again, step for step.

Logged scalars: every step ``loss`` (the data loss of the minibatch, before any penalty),
``accuracy`` (minibatch, classification without mixup/cutmix), ``penalty`` (with l1/l2) and,
through the Recorder, ``lr/<group>``; after every epoch (and after a last partial epoch)
``val_loss``, ``val_accuracy`` and ``train_accuracy`` (full training set, eval mode); at the
end ``test_loss`` / ``test_accuracy``; ``early_stop`` (the epoch) when early stopping fires.

Loss landscapes (``landscape=``, see :mod:`dyntrace.landscape.store`): after the Recorder has
closed the file, the random plane around the final weights, the line from the initial to the
final weights and the trajectory's PCA plane are computed in eval mode on the validation
split (capped) and stored as ``/landscape/plane``, ``/landscape/line``, ``/landscape/trajectory``.
"""

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dyntrace import catalog
from dyntrace.catalog import ConfigError
from dyntrace.catalog.datasets import make_dataset
from dyntrace.catalog.lr_schedules import make_scheduler
from dyntrace.catalog.models import make_model
from dyntrace.catalog.optimizers import make_optimizer
from dyntrace.catalog.regularizers import (
    EarlyStopping,
    decoupled_weight_decay_,
    l1_penalty,
    l2_penalty,
    make_augmentation,
    make_scaler,
    mixed_loss,
)
from dyntrace.checks import check_int, check_number
from dyntrace.landscape import store as landscape_store

__all__ = ["TrainConfig", "train", "build"]


@dataclass
class TrainConfig:
    """Everything that defines a run, as plain values (names are catalog names)."""

    # data
    dataset: str = "digits"  # digits, two_spirals, blobs, teacher_student, deep_linear
    dataset_options: dict = field(default_factory=dict)  # e.g. {"limit": 300}; {"n": 2000}
    scaling: str = "none"  # feature scaling fitted on the training set: none, standardize, minmax
    augmentation: str = "none"  # none, mixup, cutout, cutmix (cutout/cutmix need image data: digits)
    augmentation_options: dict = field(default_factory=dict)  # e.g. {"alpha": 0.4}; {"size": 3}
    # model
    model: str = "mlp"  # mlp, cnn_digits
    depth: int = 2  # hidden layers (cnn_digits: conv blocks, 1 to 3)
    width: int = 64  # units per hidden layer (cnn_digits: channels of the first block)
    activation: str = "relu"
    activation_options: dict = field(default_factory=dict)  # e.g. {"negative_slope": 0.1}
    init: str = "he_normal"  # every Linear/Conv weight; biases start at 0
    init_options: dict = field(default_factory=dict)  # e.g. {"std": 0.01} for "normal"
    norm: str = "none"  # none, batch, layer, instance, group, weight
    norm_options: dict = field(default_factory=dict)  # e.g. {"book": True}: BN momentum 0.9, eps 1e-6
    dropout: float = 0.0  # drop probability after each hidden activation
    dropout_style: str = "inverted"  # inverted (nn.Dropout) or book (test outputs × (1 − p))
    # optimisation
    optimizer: str = "sgd"  # sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw, radam, lookahead
    lr: float = 0.01
    optimizer_options: dict = field(default_factory=dict)  # e.g. {"book": True}; {"inner": "adam", "k": 5}
    schedule: str = "constant"  # constant, step, exponential, inverse_time, inv_sqrt, cosine, warmup
    schedule_options: dict = field(default_factory=dict)  # per optimizer step, e.g. {"warmup_steps": 100}
    batch_size: int = 64
    epochs: int = 10  # passes over the training set (ignored when steps is set)
    steps: int | None = None  # optimizer steps to take instead of whole epochs
    replacement: bool = False  # draw minibatches with replacement (the book) instead of shuffled epochs
    # regularisation
    l1: float = 0.0  # λ of the penalty λΣ|W| added to the loss
    l2: float = 0.0  # λ of the penalty ½λΣW² added to the loss (the book's weight decay)
    weight_decay: float = 0.0  # decoupled W ← W(1 − η·λ) after every step (weights only)
    early_stopping: int | None = None  # patience in epochs of no val_loss improvement; None = off
    early_stopping_min_delta: float = 0.0
    # recording
    seed: int = 0  # seeds data split, init, minibatches, dropout and augmentation
    every: int = 10  # record the probes every this many steps
    probes: list | str | None = None  # None = the Recorder's default set, "all", or a list of names
    trajectory: int | None = None  # keep the flat parameters every N steps (+ first, last); None = off
    # loss landscapes computed after training, e.g. {"plane": {"resolution": 21, "span": 1.0},
    # "line": {"steps": 21}, "trajectory": {"resolution": 21}}; None = off. Missing options take
    # their defaults (dyntrace.landscape.store). "trajectory" turns the trajectory on by itself
    # (a stride giving at most ~200 snapshots) when trajectory is None.
    landscape: dict | None = None
    device: str = "cpu"
    out: str = "run.h5"

    def __post_init__(self):
        self.landscape = landscape_store.normalize_options(self.landscape)  # defaults filled in, stored so
        self.validate()

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """A config from a mapping of field names (unknown keys raise ConfigError)."""
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown config key {key!r}{hint} valid: {', '.join(valid)}")
        return cls(**values)

    @classmethod
    def from_file(cls, path) -> "TrainConfig":
        """A config from a TOML (``.toml``) or JSON file with the same keys as the fields."""
        path = os.fspath(path)
        try:
            if path.endswith(".toml"):
                import tomllib

                with open(path, "rb") as f:
                    values = tomllib.load(f)
            else:
                with open(path, encoding="utf-8") as f:
                    values = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(
                f"cannot read config {path}: expected a table of keys, got {type(values).__name__}"
            )
        return cls.from_dict(values)

    @classmethod
    def from_run(cls, path) -> "TrainConfig":
        """The config stored in a run file written by :func:`train`."""
        from dyntrace.io.reader import open_run

        with open_run(path) as run:
            return cls.from_dict(run.config)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (and validated)."""
        return dataclasses.replace(self, **changes)

    # -- validation ------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ConfigError (or UnknownNameError) naming the first bad value."""
        for kind, name in [
            ("dataset", self.dataset),
            ("scaling", self.scaling),
            ("augmentation", self.augmentation),
            ("model", self.model),
            ("activation", self.activation),
            ("init", self.init),
            ("norm", self.norm),
            ("dropout", self.dropout_style),
            ("optimizer", self.optimizer),
            ("schedule", self.schedule),
        ]:
            if not isinstance(name, str):
                raise ConfigError(f"Invalid {kind}: {name!r} (a name)")
            catalog.get(kind, name)
        for f in dataclasses.fields(self):
            if f.name.endswith("_options") and not isinstance(getattr(self, f.name), dict):
                raise ConfigError(f"Invalid {f.name}: {getattr(self, f.name)!r} (a table of options)")
        _check_int(self, "depth", 0)
        _check_int(self, "width", 1)
        _check_int(self, "batch_size", 1)
        _check_int(self, "epochs", 1)
        _check_int(self, "every", 1)
        _check_int(self, "seed", 0)
        _check_int(self, "steps", 1, optional=True)
        _check_int(self, "early_stopping", 1, optional=True)
        _check_int(self, "trajectory", 1, optional=True)
        _check_number(self, "lr", 0.0, strict=True)
        for name in ("l1", "l2", "weight_decay", "early_stopping_min_delta"):
            _check_number(self, name, 0.0)
        _check_number(self, "dropout", 0.0)
        if self.dropout >= 1:
            raise ConfigError(f"Invalid dropout: {self.dropout!r} (in [0, 1))")
        if not (self.probes is None or self.probes == "all" or isinstance(self.probes, list)):
            raise ConfigError(f"Invalid probes: {self.probes!r} (None, 'all' or a list of probe names)")
        if not isinstance(self.replacement, bool):
            raise ConfigError(f"Invalid replacement: {self.replacement!r} (true or false)")
        if not isinstance(self.out, str) or not self.out:
            raise ConfigError(f"Invalid out: {self.out!r} (a file path)")


def _check_int(config, name, low, optional=False):
    check_int(name, getattr(config, name), low=low, optional=optional, error=ConfigError)


def _check_number(config, name, low, strict=False):
    check_number(name, getattr(config, name), low=low, strict_low=strict, error=ConfigError)


def _built(what: str, build, *args, **kwargs):
    """``build(...)``, with a bad option turned into one ConfigError line naming ``what``."""
    try:
        return build(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _as_config(config, overrides: dict) -> TrainConfig:
    if config is None:
        return TrainConfig.from_dict(overrides)
    if isinstance(config, TrainConfig):
        return config.replace(**overrides) if overrides else config
    if isinstance(config, dict):
        return TrainConfig.from_dict({**config, **overrides})
    if isinstance(config, (str, os.PathLike)):
        return TrainConfig.from_dict({**TrainConfig.from_file(config).to_dict(), **overrides})
    raise ConfigError(f"Invalid config: {type(config).__name__} (a TrainConfig, dict or file path)")


def build(config: TrainConfig) -> "_Run":
    """The objects a config builds (data, model at its initial weights, optimizer, loss), untrained.

    Seeds like :func:`train` and leaves the caller's global RNG alone. Used to rebuild a run's
    model and data from its file (``dyntrace landscape``).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _Run(config)


def train(config=None, /, *, progress: bool = True, **overrides) -> str:
    """Train and record one run; returns the path of the run file.

    Args:
        config: a :class:`TrainConfig`, a dict of its fields, a TOML/JSON file, or None
            (defaults); ``overrides`` (field=value) are applied on top.
        progress: show a tqdm progress bar.

    Seeded and deterministic: the same config gives the same losses, step for step. The
    caller's global torch RNG state is left as it was.
    """
    config = _as_config(config, overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _Run(config).fit(progress)


class _Run:
    """The objects one config builds, and the loop that trains them."""

    def __init__(self, config: TrainConfig):
        self.config = c = config
        self.device = torch.device(c.device)
        data = _built(f"dataset {c.dataset!r}", make_dataset, c.dataset, seed=c.seed, **c.dataset_options)
        scaler = make_scaler(c.scaling).fit(data.X_train)
        self.data = {
            split: (
                scaler.transform(getattr(data, f"X_{split}")).to(self.device),
                getattr(data, f"y_{split}").to(self.device),
            )
            for split in ("train", "val", "test")
        }
        self.classify = data.task == "classification"
        self.image_shape = data.image_shape
        if c.augmentation not in ("none", "mixup") and self.image_shape is None:
            raise ConfigError(
                f"Invalid augmentation: {c.augmentation!r} needs images; {c.dataset!r} has none"
            )
        self.augment = make_augmentation(c.augmentation, **c.augmentation_options)
        self.model = _built(
            f"model {c.model!r}",
            make_model,
            c.model,
            data.n_features,
            data.n_outputs,
            depth=c.depth,
            width=c.width,
            activation=c.activation,
            init=c.init,
            norm=c.norm,
            dropout=c.dropout,
            dropout_style=c.dropout_style,
            activation_options=c.activation_options,
            init_options=c.init_options,
            norm_options=c.norm_options,
        ).to(self.device)
        self.optimizer = _built(
            f"optimizer {c.optimizer!r}",
            make_optimizer,
            c.optimizer,
            self.model.parameters(),
            lr=c.lr,
            **c.optimizer_options,
        )
        self.scheduler = _built(
            f"schedule {c.schedule!r}", make_scheduler, c.schedule, self.optimizer, **c.schedule_options
        )
        self.criterion = nn.CrossEntropyLoss() if self.classify else nn.MSELoss()
        self.stopper = (
            EarlyStopping(c.early_stopping, c.early_stopping_min_delta)
            if c.early_stopping is not None
            else None
        )
        self.batches = torch.Generator().manual_seed(c.seed)
        self.rng = np.random.default_rng(c.seed)  # augmentation draws
        n = len(self.data["train"][0])
        self.steps_per_epoch = math.ceil(n / c.batch_size)
        self.total_steps = c.steps or c.epochs * self.steps_per_epoch
        self.trajectory = c.trajectory
        if self.trajectory is None and c.landscape is not None and "trajectory" in c.landscape:
            self.trajectory = landscape_store.trajectory_stride(self.total_steps)

    def fit(self, progress: bool) -> str:
        from tqdm.auto import tqdm

        import dyntrace

        c = self.config
        os.makedirs(os.path.dirname(os.path.abspath(c.out)), exist_ok=True)
        step = 0
        # the start of the line slice (a copy: a model's worth of memory, only when asked for)
        initial = (
            [p.detach().clone() for p in self.model.parameters()]
            if c.landscape is not None and "line" in c.landscape
            else None
        )
        with (
            dyntrace.Recorder(
                self.model,
                self.optimizer,
                c.out,
                every=c.every,
                probes=c.probes,
                config=c.to_dict(),
                trajectory=self.trajectory,
            ) as rec,
            tqdm(
                total=self.total_steps, disable=not progress, desc=os.path.basename(c.out), unit="step"
            ) as bar,
        ):
            for epoch in range(1, math.ceil(self.total_steps / self.steps_per_epoch) + 1):
                self.model.train()
                for index in self._epoch_batches():
                    self._step(rec, index)
                    step += 1
                    bar.update()
                    if step == self.total_steps:
                        break
                metrics = self._end_of_epoch(rec)
                bar.set_postfix(epoch=epoch, **{k: f"{v:.4g}" for k, v in metrics.items()})
                if self.stopper is not None and self.stopper.update(metrics["val_loss"], self.model):
                    rec.log(early_stop=epoch)
                    break
            loss, accuracy = self._evaluate("test")
            rec.log(test_loss=loss, **({"test_accuracy": accuracy} if self.classify else {}))
        if c.landscape is not None:  # the Recorder has closed the file: the slices are added to it
            self._landscape_after_training(initial, rec.step)
        return c.out

    def _landscape_after_training(self, initial, last_step: int) -> None:
        """The slices around the weights the run returns, with the step they belong to.

        That is the last step, or, when early stopping put the best weights back, the end of
        the best epoch. The trajectory's PCA plane is centred on those same weights: its
        records up to that step, then the model's weights as the last record (the stored
        snapshot of a step is taken inside ``optimizer.step()``, before decoupled weight decay).
        """
        import dyntrace

        c = self.config
        step, extra = last_step, {"buffers": "trained", "start_step": 0, "source": "training"}
        if self.stopper is not None and self.stopper.stopped_epoch is not None and self.stopper.restore_best:
            step = min(self.stopper.best_epoch * self.steps_per_epoch, self.total_steps)
            extra["weights"] = f"best val_loss, epoch {self.stopper.best_epoch} (restored by early stopping)"
        trajectory = None
        if "trajectory" in c.landscape:
            with dyntrace.open_run(c.out) as run:
                steps, names, flat = run.trajectory()
            keep = steps < step
            final = landscape_store.flat_parameters(self.model, names)
            trajectory = (np.append(steps[keep], step), names, np.vstack([flat[keep], final[None]]))
        self.landscape(c.landscape, initial=initial, trajectory=trajectory, step=step, extra=extra)

    def landscape_batch(self, examples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed evaluation batch of the landscapes: the first ``examples`` of the validation split."""
        x, y = self.data["val"]
        return x[:examples], y[:examples]

    def landscape(
        self, options: dict, *, initial=None, trajectory=None, step: int, extra: dict | None = None, path=None
    ) -> dict:
        """Compute the slices ``options`` asks for around the model's current weights and add
        them to the run file ``path`` (default ``config.out``; see :mod:`dyntrace.landscape.store`);
        returns them."""
        batch = self.landscape_batch(options["examples"])
        metric = landscape_store.accuracy if self.classify else None
        results = landscape_store.compute(
            self.model, self.criterion, batch, options, initial=initial, trajectory=trajectory, metric=metric
        )
        loss = "cross_entropy" if self.classify else "mse"
        attrs = {"loss": loss, "batch": f"val[:{len(batch[0])}]", **(extra or {})}
        landscape_store.write(self.config.out if path is None else path, results, step=step, extra=attrs)
        return results

    def _epoch_batches(self):
        """Index tensors for one epoch: a shuffled partition, or draws with replacement."""
        n, size = len(self.data["train"][0]), self.config.batch_size
        if self.config.replacement:
            return [torch.randint(n, (size,), generator=self.batches) for _ in range(self.steps_per_epoch)]
        return torch.randperm(n, generator=self.batches).split(size)

    def _step(self, rec, index: torch.Tensor) -> None:
        c = self.config
        index = index.to(self.device)
        x, y = self.data["train"][0][index], self.data["train"][1][index]
        if c.augmentation != "none":
            shape = (len(x), *self.image_shape) if self.image_shape else x.shape
            x_aug, y_a, y_b, lam = self.augment(x.view(shape), y, rng=self.rng)
            x = x_aug.reshape(len(x), -1)
        else:
            y_a, y_b, lam = y, y, 1.0
        output = self.model(x)
        loss = mixed_loss(self.criterion, output, y_a, y_b, lam)
        penalty = (l1_penalty(self.model, c.l1) if c.l1 else 0) + (
            l2_penalty(self.model, c.l2) if c.l2 else 0
        )
        self.optimizer.zero_grad(set_to_none=True)
        (loss + penalty).backward()
        self.optimizer.step()
        if c.weight_decay:
            decoupled_weight_decay_(
                self.model, lr=self.optimizer.param_groups[0]["lr"], weight_decay=c.weight_decay
            )
        self.scheduler.step()
        scalars = {"loss": loss.detach()}
        if self.classify and lam == 1.0:
            scalars["accuracy"] = (output.detach().argmax(1) == y).float().mean()
        if c.l1 or c.l2:
            scalars["penalty"] = penalty.detach()
        rec.log(**scalars)

    @torch.no_grad()
    def _evaluate(self, split: str) -> tuple[float, float | None]:
        """(loss, accuracy or None) on a whole split, in eval mode."""
        self.model.eval()
        x, y = self.data[split]
        output = self.model(x)
        accuracy = (output.argmax(1) == y).float().mean().item() if self.classify else None
        loss = self.criterion(output, y).item()  # host syncs: once per epoch
        self.model.train()
        return loss, accuracy

    def _end_of_epoch(self, rec) -> dict:
        val_loss, val_accuracy = self._evaluate("val")
        metrics = {"val_loss": val_loss}
        if self.classify:
            metrics["val_accuracy"] = val_accuracy
            metrics["train_accuracy"] = self._evaluate("train")[1]
        rec.log(**metrics)
        return metrics
