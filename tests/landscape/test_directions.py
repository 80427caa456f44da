import numpy as np
import pytest
import torch
from torch import nn

from dyntrace.landscape import random_directions


def test_each_filter_has_the_norm_of_its_weight_filter(cnn):
    for direction in random_directions(cnn, seed=3):
        for (name, w), d in zip(cnn.named_parameters(), direction):
            assert d.shape == w.shape and d.dtype == w.dtype
            if w.ndim >= 2:  # conv filters [out, in, kh, kw], linear units [out, in]
                for i in range(len(w)):
                    torch.testing.assert_close(d[i].norm(), w[i].norm(), rtol=1e-5, atol=0)
            else:  # biases and BatchNorm weight/bias
                assert torch.count_nonzero(d) == 0, name


def test_ignore_none_normalises_1d_parameters_once_as_a_whole(cnn):
    kept, ignored = (
        random_directions(cnn, seed=3, ignore=None, count=1),
        random_directions(cnn, seed=3, count=1),
    )
    for (name, w), d, d_ignored in zip(cnn.named_parameters(), kept[0], ignored[0]):
        if w.ndim <= 1:
            torch.testing.assert_close(d.norm(), w.norm(), rtol=1e-5, atol=0)
            assert not torch.allclose(d, w), name  # a normalised draw, not a copy of θ
        else:
            assert torch.equal(d, d_ignored), name  # the same draws either way


def test_directions_are_gaussian_and_seeded():
    layer = nn.Linear(100, 200)
    rng = torch.get_rng_state()
    (d,), (again,), (other,) = (random_directions(layer, seed=s, count=1) for s in (5, 5, 6))
    assert torch.equal(torch.get_rng_state(), rng)  # private generator
    assert torch.equal(d[0], again[0]) and not torch.equal(d[0], other[0])
    values = (d[0] / d[0].std(dim=1, keepdim=True)).flatten().numpy().astype(np.float64)
    assert 0.45 < np.mean(values < 0) < 0.55  # uniform [0, 1) would be all positive
    excess_kurtosis = np.mean((values - values.mean()) ** 4) / values.var() ** 2 - 3
    assert abs(excess_kurtosis) < 0.2  # Gaussian 0; uniform -1.2


def test_bad_arguments_name_the_parameter(mlp):
    with pytest.raises(ValueError, match=r"ignore must be one of \('biasbn', None\), got 'bias'"):
        random_directions(mlp, seed=0, ignore="bias")
    with pytest.raises(ValueError, match="count"):
        random_directions(mlp, seed=0, count=0)
