"""The noise_scale probe under DistributedDataParallel: two gloo ranks on the CPU.

Each rank's first micro-batch gradient (read before DDP's all-reduce) and the averaged
gradient after it are summed into rank 0's file by the recorder's SUM reduction; the test
rebuilds every example from its seed and checks the stored norms against hand computations.
"""

import gc
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
from ddp_workers import run_workers  # beside this file (pytest puts the folder on sys.path)
from torch import nn

import dyntrace
from dyntrace.analysis import noise_scale_records

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)

WORLD, D, B, STEPS = 2, 6, 4, 3  # ranks, parameters, examples per micro-batch, steps


class LinearLoss(nn.Module):
    """ℓ(θ; a) = −θ·a: the gradient of the mean loss over a batch is −mean(a), whatever θ."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(D, dtype=torch.float64))

    def forward(self, a):
        return -(a @ self.theta)


def examples(micro: int):
    """[STEPS, WORLD, micro, B, D]: every example of the run, from one seed."""
    gen = torch.Generator().manual_seed(3)
    return 1.0 + torch.randn(STEPS, WORLD, micro, B, D, generator=gen, dtype=torch.float64)


def worker(rank: int, out: str, store: str, micro: int):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        _train(rank, out, micro)
        # The DDP model is gone before the group: a gloo group destroyed from DDP's reducer
        # after destroy_process_group (the peer may have exited) can hang joining its threads.
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _train(rank: int, out: str, micro: int):
    model = nn.parallel.DistributedDataParallel(LinearLoss())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = examples(micro)[:, rank]
    with dyntrace.Recorder(model, opt, os.path.join(out, f"k{micro}.h5"), every=1, probes=["noise_scale"]):
        for step in range(STEPS):
            opt.zero_grad()
            for i in range(micro):
                if i < micro - 1:
                    with model.no_sync():  # accumulate locally; all-reduce on the last micro-batch
                        (model(data[step, i]).mean() / micro).backward()
                else:
                    (model(data[step, i]).mean() / micro).backward()
            opt.step()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_noise")
    for micro in (1, 2):
        run_workers(worker, str(out), str(out / f"store{micro}"), micro, world=WORLD)
    return out


@pytest.mark.parametrize("micro", [1, 2])
def test_per_rank_and_reduced_gradient_norms(files, micro):
    a = examples(micro)
    # the first micro-batch's own mean-loss gradient on each rank, and the all-reduced gradient
    first = -a[:, :, 0].mean(dim=2)  # [STEPS, WORLD, D]
    final = -a.mean(dim=(1, 2, 3))  # [STEPS, D]: mean over ranks, micro-batches and examples
    with dyntrace.open_run(files / f"k{micro}.h5") as run:
        rec = noise_scale_records(run)
        ranks = run.field("noise_scale", "ranks")[1][:, 0]
    np.testing.assert_array_equal(ranks, WORLD)
    np.testing.assert_allclose(rec.sq_small, (first**2).sum(dim=2).mean(dim=1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(rec.sq_big, (final**2).sum(dim=1).numpy(), rtol=1e-10)
    np.testing.assert_array_equal(rec.b_small, B)
    np.testing.assert_array_equal(rec.b_big, B * micro * WORLD)
