import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dyntrace.landscape import plane
from tests.landscape.conftest import accuracy, assert_same, loss_at, snapshot

METHODS = ["sequential", "vmap"]


def _params(model):
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize("method", METHODS)
def test_centre_is_the_models_loss_and_grid_points_match_a_hand_computation(mlp, batch, method):
    result = plane(mlp, F.cross_entropy, batch, resolution=(5, 3), span=0.8, seed=1, method=method)
    assert result.x.shape == (5,) and result.y.shape == (3,) and result.loss.shape == (3, 5)  # [ny, nx]
    np.testing.assert_array_equal(result.x, [-0.8, -0.4, 0.0, 0.4, 0.8])
    np.testing.assert_array_equal(result.y, [-0.8, 0.0, 0.8])
    assert result.loss[1, 2] == loss_at(mlp, _params(mlp), batch)  # (0, 0), bit for bit
    dx, dy = result.directions
    for i, j in [(0, 4), (2, 0), (0, 1), (2, 3)]:  # row i ↔ y[i], column j ↔ x[j], never transposed
        a, b = result.x[j], result.y[i]
        by_hand = [p + a * u + b * v for p, u, v in zip(_params(mlp), dx, dy)]
        assert result.loss[i, j] == pytest.approx(loss_at(mlp, by_hand, batch), rel=1e-5)
    assert result.meta["method"] == method
    assert {
        "seed": 1,
        "normalisation": "filter",
        "ignore": "biasbn",
        "span": 0.8,
        "resolution": [5, 3],
    }.items() <= result.meta.items()


@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_the_callers_model_is_bit_identical_afterwards(mlp, batch, method):
    before = snapshot(mlp)
    plane(mlp, F.cross_entropy, batch, resolution=(3, 3), method=method, metric=accuracy)
    assert_same(before, snapshot(mlp))


def test_the_model_is_untouched_when_evaluation_fails(mlp, batch):
    calls = []

    def failing(outputs, targets):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("boom")
        return F.cross_entropy(outputs, targets)

    before = snapshot(mlp)
    with pytest.raises(RuntimeError, match="boom"):
        plane(mlp, failing, batch, resolution=(3, 3), method="sequential")
    assert_same(before, snapshot(mlp))


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_batched_and_sequential_evaluation_agree(model_name, request, batch, image_batch):
    model, data = request.getfixturevalue(model_name), batch if model_name == "mlp" else image_batch
    results = [
        plane(model, F.cross_entropy, data, resolution=(6, 4), method=m, metric=accuracy, chunk_size=5)
        for m in METHODS
    ]
    np.testing.assert_allclose(results[1].loss, results[0].loss, rtol=1e-5)
    np.testing.assert_allclose(results[1].acc, results[0].acc, rtol=1e-5)


def test_metric_gives_acc_and_given_directions_and_centre_are_used(mlp, batch):
    other = [torch.randn_like(p) for p in _params(mlp)]
    dx = {name: torch.randn_like(p) for name, p in mlp.named_parameters()}
    dy = [torch.randn_like(p) for p in _params(mlp)]
    result = plane(
        mlp,
        F.cross_entropy,
        batch,
        resolution=(3, 5),
        span=0.5,
        directions=(dx, dy),
        center=other,
        metric=accuracy,
    )
    assert result.acc.shape == (5, 3) and result.meta["metric"] == "accuracy"
    by_hand = [p + 0.5 * u - 0.25 * v for p, u, v in zip(other, dx.values(), dy)]  # x[2] = 0.5, y[1] = -0.25
    assert result.loss[1, 2] == pytest.approx(loss_at(mlp, by_hand, batch), rel=1e-5)
    assert result.acc[1, 2] == pytest.approx(loss_at(mlp, by_hand, batch, fn=accuracy), rel=1e-6)
    assert result.meta["directions"] == "given" and result.meta["seed"] is None


def test_auto_falls_back_to_sequential_when_the_model_cannot_run_under_vmap(batch):
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(6, 3)

        def forward(self, x):
            out = self.linear(x)
            return out if out.sum() > 0 else -out  # data-dependent control flow

    model = Branchy()
    result = plane(model, F.cross_entropy, batch, resolution=(5, 5))
    assert result.meta["method"] == "sequential" and "vmap_error" in result.meta
    assert np.isfinite(result.loss).all()
    with pytest.raises(RuntimeError):
        plane(model, F.cross_entropy, batch, resolution=(3, 3), method="vmap")


def test_auto_records_its_choice(mlp, batch):
    result = plane(mlp, F.cross_entropy, batch, resolution=(9, 9), chunk_size=4)
    assert result.meta["method"] in METHODS
    assert set(result.meta["trial_seconds_per_point"]) == set(METHODS)
    reference = plane(mlp, F.cross_entropy, batch, resolution=(9, 9), method="sequential")
    np.testing.assert_allclose(result.loss, reference.loss, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "fast"}, r"method must be one of \('auto', 'vmap', 'sequential'\), got 'fast'"),
        ({"resolution": (1, 5)}, r"resolution\[0\] \(nx\) must be an int ≥ 2, got 1"),
        ({"resolution": 5}, "resolution must be a pair"),
        ({"span": -1.0}, "span must be a positive number"),
        ({"chunk_size": 0}, "chunk_size must be a positive int"),
        ({"directions": ([],)}, r"directions must be a pair"),
    ],
)
def test_bad_arguments_name_the_parameter(mlp, batch, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plane(mlp, F.cross_entropy, batch, **kwargs)


def test_a_non_scalar_loss_is_refused(mlp, batch):
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar tensor, got \(40,\)"):
        plane(mlp, lambda o, t: F.cross_entropy(o, t, reduction="none"), batch, resolution=(3, 3))


class _TiedWeightNorm(nn.Module):
    """Output layer tied to the input layer, a weight-norm parametrization in between."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 6, bias=False)
        self.mid = nn.utils.parametrizations.weight_norm(nn.Linear(6, 6))
        self.out = nn.Linear(6, 6, bias=False)
        self.out.weight = self.inp.weight

    def forward(self, x):
        return self.out(torch.tanh(self.mid(self.inp(x))))


class _Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 5, batch_first=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(self.lstm(x.view(len(x), 2, 3).repeat(1, 1, 2))[0][:, -1])


@pytest.mark.filterwarnings(
    "ignore:There is a performance drop:UserWarning"
)  # vmap's fallback for weight norm
@pytest.mark.parametrize("model_class", [_TiedWeightNorm, _Recurrent])
def test_tied_parametrized_and_recurrent_modules(model_class, batch):
    model = model_class()
    targets = batch[1] % 3
    before = snapshot(model)
    result = plane(model, F.cross_entropy, (batch[0], targets), resolution=(3, 3), method="sequential")
    auto = plane(
        model, F.cross_entropy, (batch[0], targets), resolution=(3, 3)
    )  # LSTM: no vmap rule, falls back
    assert_same(before, snapshot(model))
    np.testing.assert_allclose(auto.loss, result.loss, rtol=1e-5)
    dx, dy = result.directions
    by_hand = [p + u - v for p, u, v in zip(_params(model), dx, dy)]  # (x, y) = (1, -1)
    assert result.loss[0, 2] == pytest.approx(loss_at(model, by_hand, (batch[0], targets)), rel=1e-5)
