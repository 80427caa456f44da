"""torch.compile: activation statistics of a compiled model are those of the same model run
eagerly, whether the Recorder is made before or after the first compiled forward, and given
the compiled or the original module; names carry no ``_orig_mod.``; no recompilation.

The ``aot_eager`` backend traces with dynamo and AOTAutograd as inductor does (hooks added
after tracing never run inside its graphs), without inductor's C++ compile (minutes here).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dyntrace

STATS = ("count", "mean", "std", "min", "max", "frac_zero", "frac_saturated", "frac_dead")
STEPS = 6


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2, self.fc3 = (
            nn.Linear(8, 16),
            nn.Tanh(),
            nn.Linear(16, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(self.act(self.fc1(x)))))  # F.relu: a functional call site


def _train(path, *, compiled: bool, warmup: int, give: str):
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    run_model = torch.compile(model, backend="aot_eager") if compiled else model
    g = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(32, 8, generator=g), torch.randn(32, 1, generator=g)) for _ in range(warmup + STEPS)
    ]

    def step(x, y):
        opt.zero_grad()
        loss = F.mse_loss(run_model(x), y)
        loss.backward()
        opt.step()
        return loss

    counters = torch._dynamo.utils.counters["stats"]
    base = counters["unique_graphs"]
    for x, y in batches[:warmup]:  # compiled forwards before the Recorder exists
        step(x, y)
    graphs = []
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dyntrace")
        with dyntrace.Recorder(
            run_model if give == "compiled" else model, opt, path, every=2, probes=["activations"]
        ) as rec:
            for x, y in batches[warmup:]:
                rec.log(loss=step(x, y))
                graphs.append(counters["unique_graphs"] - base)  # graphs compiled so far
    return graphs


@pytest.mark.parametrize("warmup", [0, 3], ids=["recorder first", "after 3 compiled steps"])
@pytest.mark.parametrize("give", ["compiled", "original"])
def test_compiled_model_records_what_the_eager_model_records(tmp_path, warmup, give):
    torch._dynamo.reset()
    _train(tmp_path / "eager.h5", compiled=False, warmup=warmup, give="original")
    graphs = _train(tmp_path / "compiled.h5", compiled=True, warmup=warmup, give=give)
    # compiled once (in the warm-up, or at the first step that does not record), never again
    assert graphs == ([1] * STEPS if warmup else [0] + [1] * (STEPS - 1))
    with (
        dyntrace.open_run(tmp_path / "eager.h5") as eager,
        dyntrace.open_run(tmp_path / "compiled.h5") as compiled,
    ):
        assert compiled.names("activations") == eager.names("activations") == ["act", "relu#0"]
        assert compiled.steps("activations").tolist() == [1, 3, 5]
        for stat in STATS:
            got, want = compiled.stat("activations", None, stat)[1], eager.stat("activations", None, stat)[1]
            assert np.isfinite(got).all(), stat
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=stat)
