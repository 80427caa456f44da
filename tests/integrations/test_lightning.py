"""The Lightning callback on a real ``Trainer.fit``: every step's loss, the validation metrics at
their steps and the recorded gradients equal values computed by hand from the same weights and
batches; a fit that raises leaves a closed, readable file."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

L = pytest.importorskip("lightning.pytorch", reason="lightning is in the test extras")

import dyntrace  # noqa: E402 (after the importorskip)
from dyntrace.integrations.lightning import DyntraceCallback  # noqa: E402 (after the importorskip)

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


class Classifier(L.LightningModule):
    def __init__(self, fail_at: int | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))

    def training_step(self, batch, batch_idx):
        if self.hparams.fail_at is not None and self.global_step == self.hparams.fail_at:
            raise RuntimeError("boom")
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self.net(x)
        self.log("val_loss", nn.functional.cross_entropy(out, y))
        self.log("val_accuracy", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.9)


class ByHand(L.Callback):
    """The truth, from copies: at each batch the loss and gradients of the weights the step
    starts from; at each validation the validation loss and accuracy of the current weights."""

    def __init__(self):
        self.loss, self.grads, self.val = {}, {}, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        step = trainer.global_step + 1
        twin = Classifier().net  # a fresh copy: no hooks of the recorder on it
        twin.load_state_dict(copy.deepcopy(pl_module.net.state_dict()))
        x, y = batch
        loss = nn.functional.cross_entropy(twin(x), y)
        loss.backward()
        self.loss[step] = loss.item()
        self.grads[step] = {f"net.{name}": p.grad.clone() for name, p in twin.named_parameters()}

    def on_validation_start(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        x, y = trainer.val_dataloaders.dataset.tensors
        with torch.no_grad():
            out = pl_module.net(x)
        self.val[trainer.global_step] = (
            nn.functional.cross_entropy(out, y).item(),
            (out.argmax(1) == y).float().mean().item(),
        )


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())


def _fit(path, module, *, every=2, steps=6, **options):
    torch.manual_seed(0)
    truth = ByHand()
    trainer = L.Trainer(
        max_steps=steps,
        val_check_interval=3,
        callbacks=[truth, DyntraceCallback(path, every=every, **options)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=1,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|bottleneck|does not have many workers).*")
        trainer.fit(module, DataLoader(_data(48, 1), batch_size=8), DataLoader(_data(16, 2), batch_size=16))
    return truth


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    path = tmp_path_factory.mktemp("lightning") / "run.h5"
    torch.manual_seed(0)
    truth = _fit(path, Classifier())
    with dyntrace.open_run(path) as run:
        yield run, truth


def test_every_step_loss_and_the_validation_metrics_at_their_steps(fitted):
    run, truth = fitted
    assert run.closed_cleanly
    steps, loss = run.scalar("loss")
    assert steps.tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(loss, [truth.loss[s] for s in steps], rtol=1e-6)
    val_steps, val_loss = run.scalar("val_loss")
    assert val_steps.tolist() == [3, 6] == sorted(truth.val)  # the sanity check is not logged
    np.testing.assert_allclose(val_loss, [truth.val[s][0] for s in val_steps], rtol=1e-6)
    np.testing.assert_allclose(run.scalar("val_accuracy")[1], [truth.val[s][1] for s in val_steps])
    lr_steps, lr = run.scalar("lr/0")
    assert lr_steps.tolist() == [1] and lr.tolist() == [0.2]
    assert run.config["trainer"] == "lightning" and run.config["max_steps"] == 6


def test_recorded_gradients_are_those_of_the_step(fitted):
    """Lightning steps through a closure (forward and backward run inside optimizer.step): the
    gradients recorded at step s must be the batch's gradients at the weights before step s."""
    run, truth = fitted
    record_steps = run.steps("gradients")
    assert record_steps.tolist() == [1, 3, 5]
    for name in run.names("gradients"):
        for stat, by_hand in (
            ("norm", torch.linalg.vector_norm),
            ("sum", torch.sum),
            ("max", torch.max),
            ("min", torch.min),
        ):
            measured = run.stat("gradients", name, stat)[1]
            expected = [float(by_hand(truth.grads[s][name])) for s in record_steps]
            np.testing.assert_allclose(measured, expected, rtol=1e-5, atol=1e-7, err_msg=f"{name} {stat}")


def test_a_fit_that_raises_leaves_a_closed_readable_file(tmp_path):
    path = tmp_path / "failed.h5"
    with pytest.raises(RuntimeError, match="boom"):
        _fit(path, Classifier(fail_at=4), every=1)
    with dyntrace.open_run(path) as run:
        assert run.closed_cleanly
        assert run.scalar("loss")[0].tolist() == [1, 2, 3, 4]
        assert run.scalar("val_loss")[0].tolist() == [3]
        assert run.record_steps.tolist() == [1, 2, 3, 4]


def test_a_clear_error_without_lightning():
    code = (
        "import sys; sys.modules['lightning'] = sys.modules['lightning.pytorch'] = "
        "sys.modules['pytorch_lightning'] = None\n"
        "from dyntrace.errors import DyntraceError\n"
        "try:\n    import dyntrace.integrations.lightning\n"
        "except DyntraceError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("MissingDependencyError") and "pip install 'dyntrace[lightning]'" in out
