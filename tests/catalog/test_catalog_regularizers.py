"""Penalties, dropout, early stopping, augmentation and scaling do what their formulas say."""

import numpy as np
import pytest
import torch
from torch import nn

from dyntrace.catalog.regularizers import (
    BookDropout,
    EarlyStopping,
    decoupled_weight_decay_,
    l1_penalty,
    l2_penalty,
    make_augmentation,
    make_dropout,
    make_scaler,
    mixed_loss,
)


def _model():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    for i, p in enumerate(model.parameters()):
        nn.init.constant_(p, 0.1 * (i + 1))
    return model


def test_penalties_count_weights_only():
    model = _model()
    w1, w2 = model[0].weight, model[3].weight  # 0.1 × 12 elements, 0.5 × 8 (norm params and biases skipped)
    assert l2_penalty(model, 0.2).item() == pytest.approx(0.5 * 0.2 * (12 * 0.01 + 8 * 0.25))
    assert l1_penalty(model, 0.2).item() == pytest.approx(0.2 * (12 * 0.1 + 8 * 0.5))
    l2_penalty(model, 0.2).backward()
    torch.testing.assert_close(w1.grad, 0.2 * w1.detach())  # d(½λW²)/dW = λW
    torch.testing.assert_close(w2.grad, 0.2 * w2.detach())
    assert model[0].bias.grad is None and model[1].weight.grad is None


def test_decoupled_weight_decay_shrinks_weights_only():
    model = _model()
    decoupled_weight_decay_(model, lr=0.5, weight_decay=0.1)
    torch.testing.assert_close(model[0].weight, torch.full((4, 3), 0.1 * 0.95))
    torch.testing.assert_close(model[0].bias, torch.full((4,), 0.2))
    torch.testing.assert_close(model[1].weight, torch.full((4,), 0.3))


def test_book_dropout_is_not_inverted():
    drop = make_dropout("book", 0.25)
    assert isinstance(drop, BookDropout) and isinstance(make_dropout("inverted", 0.25), nn.Dropout)
    x = torch.ones(100_000)
    kept = drop.train()(x)
    assert set(kept.unique().tolist()) == {0.0, 1.0}  # kept units are not rescaled
    assert kept.mean().item() == pytest.approx(0.75, abs=0.01)
    torch.testing.assert_close(drop.eval()(x), torch.full_like(x, 0.75))


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best():
    model = nn.Linear(2, 1)
    curve = [1.0, 0.8, 0.6, 0.65, 0.62, 0.61, 0.5]  # best at epoch 3, then 3 epochs without improvement
    stopper = EarlyStopping(patience=3)
    stops = []
    for epoch, loss in enumerate(curve, start=1):
        nn.init.constant_(model.weight, float(epoch))  # the weights "of" each epoch
        stops.append(stopper.update(loss, model))
        if stops[-1]:
            break
    assert stops == [False, False, False, False, False, True]
    assert (stopper.stopped_epoch, stopper.best_epoch, stopper.best) == (6, 3, 0.6)
    assert torch.all(model.weight == 3.0)


def test_early_stopping_min_delta():
    stopper = EarlyStopping(patience=2, min_delta=0.05, restore_best=False)
    assert [stopper.update(v) for v in [1.0, 0.97, 0.96]] == [False, False, True]  # 0.97, 0.96 are too small


def _numbered_images(n=8, h=6, w=5):
    """Image i is constant i, so a mixed image tells how much of each source it holds."""
    return torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 1, h, w).clone(), torch.arange(
        n
    )


def test_mixup_mixes_inputs_in_the_stated_proportion():
    x, y = _numbered_images()
    mixed, y_a, y_b, lam = make_augmentation("mixup", alpha=0.4)(x, y, rng=np.random.default_rng(0))
    assert 0 < lam < 1
    torch.testing.assert_close(mixed[:, 0, 0, 0], lam * y_a.float() + (1 - lam) * y_b.float())
    assert torch.equal(y_a, y) and sorted(y_b.tolist()) == list(range(8))


def test_cutmix_lambda_is_the_pasted_area_fraction():
    x, y = _numbered_images()
    for seed in range(20):
        mixed, y_a, y_b, lam = make_augmentation("cutmix")(x, y, rng=np.random.default_rng(seed))
        own = (mixed == y_a.float()[:, None, None, None]).float().mean(dim=(1, 2, 3))
        moved = y_a != y_b
        torch.testing.assert_close(own[moved], torch.full_like(own[moved], lam))


def test_cutmix_is_seeded():
    x, y = _numbered_images()
    first = make_augmentation("cutmix")(x, y, rng=np.random.default_rng(3))
    again = make_augmentation("cutmix")(x, y, rng=np.random.default_rng(3))
    assert torch.equal(first[0], again[0]) and first[3] == again[3]


def test_cutout_zeroes_a_clipped_square_and_keeps_labels():
    x = torch.ones(50, 2, 8, 8)
    out, y_a, y_b, lam = make_augmentation("cutout", size=4)(
        x, torch.arange(50), rng=np.random.default_rng(0)
    )
    holes = (out == 0).sum(dim=(2, 3))
    assert torch.all(holes[:, 0] == holes[:, 1])  # the same square in every channel
    assert holes.max().item() == 16 and holes.min().item() >= 4  # whole square inside, or clipped to ≥ 2×2
    assert lam == 1.0 and torch.equal(y_a, y_b)


def test_mixed_loss():
    out = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    ce = nn.CrossEntropyLoss()
    a, b = torch.tensor([0, 1]), torch.tensor([1, 0])
    assert mixed_loss(ce, out, a, b, 0.3).item() == pytest.approx(
        0.3 * ce(out, a).item() + 0.7 * ce(out, b).item()
    )


def test_scalers_fit_on_train_and_transform_others():
    train = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    other = torch.tensor([[7.0, 6.0]])
    standard = make_scaler("standardize").fit(train)
    torch.testing.assert_close(standard.transform(train).mean(0), torch.zeros(2))
    torch.testing.assert_close(standard.transform(train).std(0, unbiased=False), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(standard.transform(other), torch.tensor([[(7 - 3) / (8 / 3) ** 0.5, 1.0]]))
    minmax = make_scaler("minmax").fit(train)
    torch.testing.assert_close(minmax.transform(other), torch.tensor([[1.5, 1.0]]))
    assert make_scaler("none").fit(train).transform(other) is other
