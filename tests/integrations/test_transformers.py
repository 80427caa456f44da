"""The transformers callback on a real ``Trainer.train`` of a tiny BERT built from a config: every
step's loss, the evaluation metrics at their steps and the recorded gradients equal values
computed by hand from the same weights and batches; a train() that raises leaves a closed,
readable file."""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is in the test extras")
pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (in the test extras)")

import dyntrace  # noqa: E402 (after the importorskip)
from dyntrace.integrations.transformers import DyntraceCallback  # noqa: E402 (after the importorskip)

transformers.utils.logging.set_verbosity_error()


def _model():
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 40, (n, 8), generator=g)
        self.labels = (self.ids[:, 0] > 20).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {
            "input_ids": self.ids[i],
            "attention_mask": torch.ones(8, dtype=torch.long),
            "labels": self.labels[i],
        }


class ByHand(transformers.TrainerCallback):
    """The truth, from copies: the weights each step starts from (kept at on_step_begin) and the
    batch the model is called with (a forward pre-hook), turned into loss and gradients by hand;
    the evaluation loss and accuracy of the weights each evaluation sees."""

    def __init__(self, fail_at=None):
        self.fail_at = fail_at
        self.start, self.batch, self.val = {}, {}, {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        model.register_forward_pre_hook(self._batch, with_kwargs=True)

    def _batch(self, module, args, kwargs):
        if module.training and torch.is_grad_enabled():
            self.batch[self.step] = {k: v.clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)}

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.step = state.global_step + 1
        if self.step == self.fail_at:
            raise RuntimeError("boom")
        self.start[self.step] = copy.deepcopy(model.state_dict())

    def on_evaluate(self, args, state, control, model=None, eval_dataloader=None, **kwargs):
        data = eval_dataloader.dataset
        with torch.no_grad():
            out = model(input_ids=data.ids, attention_mask=torch.ones_like(data.ids), labels=data.labels)
        self.val[state.global_step] = (
            out.loss.item(),
            (out.logits.argmax(-1) == data.labels).float().mean().item(),
        )

    def loss_and_grads(self, step):
        twin = _model()  # a fresh copy: no hooks of the recorder on it
        twin.load_state_dict(self.start[step])
        loss = twin(**self.batch[step]).loss
        loss.backward()
        return loss.item(), {
            name: p.grad.clone() for name, p in twin.named_parameters() if p.grad is not None
        }


def _accuracy(prediction):
    return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}


def _train(path, folder, *, fail_at=None, every=2, logging_steps=50, **trainer_options):
    args = transformers.TrainingArguments(
        output_dir=str(folder),
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        max_steps=6,
        eval_strategy="steps",
        eval_steps=3,
        logging_steps=logging_steps,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        learning_rate=1e-3,
        max_grad_norm=0.0,  # no clipping: the optimizer steps on the gradients themselves
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    truth = ByHand(fail_at)
    recording = DyntraceCallback(path, every=every)
    trainer = transformers.Trainer(
        model=_model(),
        args=args,
        train_dataset=Tokens(32, 1),
        eval_dataset=Tokens(16, 2),
        compute_metrics=_accuracy,
        callbacks=[recording, truth],
        **trainer_options,
    )
    with warnings.catch_warnings(), recording:
        warnings.simplefilter("ignore")
        trainer.train()
    truth.logged = trainer.state.log_history
    return truth


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transformers")
    truth = _train(folder / "run.h5", folder)
    with dyntrace.open_run(folder / "run.h5") as run:
        yield run, truth


def test_every_step_loss_and_the_evaluation_metrics_at_their_steps(trained):
    run, truth = trained
    assert run.closed_cleanly
    steps, loss = run.scalar("loss")
    assert steps.tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(loss, [truth.loss_and_grads(s)[0] for s in steps], rtol=1e-5)
    val_steps, val_loss = run.scalar("val_loss")
    assert val_steps.tolist() == [3, 6] == sorted(truth.val)
    np.testing.assert_allclose(val_loss, [truth.val[s][0] for s in val_steps], rtol=1e-5)
    np.testing.assert_allclose(run.scalar("val_accuracy")[1], [truth.val[s][1] for s in val_steps])
    assert not any(name.endswith(("runtime", "per_second")) for name in run.scalar_names)
    lr_steps, lr = run.scalar("lr/0")  # the Trainer's default linear decay to 0 over 6 steps
    assert lr_steps.tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(lr, 1e-3 * (1 - np.arange(6) / 6))
    assert run.config["trainer"] == "transformers" and run.config["model_config"]["hidden_size"] == 16


def test_recorded_gradients_are_those_of_the_step(trained):
    run, truth = trained
    record_steps = run.steps("gradients")
    assert record_steps.tolist() == [1, 3, 5]
    names = run.names("gradients")
    assert "bert.encoder.layer.0.attention.self.query.weight" in names
    for step_index, step in enumerate(record_steps):
        grads = truth.loss_and_grads(step)[1]
        for name in names:
            g = grads[name].double()
            # a float32 sum of cancelling terms is exact only to ~eps·log2(n)·Σ|g|: the bound, not a guess
            summing = 2e-6 * float(g.abs().sum())
            for stat, by_hand, atol in (
                ("norm", torch.linalg.vector_norm, 1e-8),
                ("sum", torch.sum, summing),
                ("max", torch.max, 1e-8),
            ):
                measured = run.stat("gradients", name, stat)[1][step_index]
                np.testing.assert_allclose(
                    measured, float(by_hand(g)), rtol=2e-5, atol=atol, err_msg=f"{name} {stat} step {step}"
                )


def test_a_train_that_raises_leaves_a_closed_readable_file(tmp_path):
    path = tmp_path / "failed.h5"
    with pytest.raises(RuntimeError, match="boom"):
        _train(path, tmp_path, fail_at=5, every=1)
    with dyntrace.open_run(path) as run:
        assert run.closed_cleanly
        assert run.scalar("loss")[0].tolist() == [1, 2, 3, 4]
        assert run.scalar("val_loss")[0].tolist() == [3]


def test_a_clear_error_without_transformers():
    code = (
        "import sys; sys.modules['transformers'] = None\n"
        "from dyntrace.errors import DyntraceError\n"
        "try:\n    import dyntrace.integrations.transformers\n"
        "except DyntraceError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("MissingDependencyError") and "pip install 'dyntrace[transformers]'" in out


def test_a_loss_computed_outside_the_model_is_the_trainers_logged_loss(tmp_path):
    """With compute_loss_func the model returns no loss: the callback logs the Trainer's own, at its logging steps."""

    def cross_entropy(outputs, labels, num_items_in_batch=None):
        return torch.nn.functional.cross_entropy(outputs.logits, labels)

    truth = _train(tmp_path / "outside.h5", tmp_path, logging_steps=2, compute_loss_func=cross_entropy)
    logged = {entry["step"]: entry["loss"] for entry in truth.logged if "loss" in entry}
    assert sorted(logged) == [2, 4, 6]
    with dyntrace.open_run(tmp_path / "outside.h5") as run:
        steps, loss = run.scalar("loss")
        assert steps.tolist() == [2, 4, 6]
        np.testing.assert_allclose(loss, [logged[s] for s in steps], rtol=1e-6)
