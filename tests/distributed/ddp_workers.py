"""Worker functions for the two-process tests (started with torch.multiprocessing.spawn).

Everything a worker needs is rebuilt from seeds here, so the parent test can build the
same model and data in one process and compare.
"""

from __future__ import annotations

import gc
import os
import shutil
import time
import warnings

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import dyntrace

WORLD = 2
SHARD = 16  # samples per rank; the global batch is WORLD * SHARD
STEPS = 6
EVERY = 2
LR = 0.05
PROBES = ["scalars", "activations", "gradients", "weights"]


def run_workers(fn, *args, world: int = WORLD, deadline: float = 600.0, grace: float = 30.0) -> None:
    """Run ``fn(rank, *args)`` in ``world`` forked workers and wait for them, never forever.

    A worker that raises makes this raise (torch's ProcessContext.join). Workers whose function
    has returned but whose process does not end within ``grace`` seconds are killed: gloo's
    teardown has been seen to hang joining its threads after the work (and the files) were
    complete. Workers still inside their function after ``deadline`` seconds are killed and
    reported, so a hang fails the test instead of stalling the suite.
    """
    import tempfile

    import torch._dynamo  # noqa: F401  (imported once here rather than in every worker)

    marks = tempfile.mkdtemp(prefix="dyntrace-workers-")
    context = mp.start_processes(
        _marked, args=(fn, marks, *args), nprocs=world, join=False, start_method="fork"
    )
    started, returned = time.monotonic(), None
    try:
        while not context.join(timeout=1.0):
            now = time.monotonic()
            if returned is None and len(os.listdir(marks)) == world:
                returned = now
            if returned is not None and now - returned > grace:
                _kill(context)
                warnings.warn(f"{fn.__name__}: workers done but not exited after {grace:.0f} s; killed")
                return
            if now - started > deadline:
                _kill(context)
                raise RuntimeError(f"{fn.__name__}: workers still running after {deadline:.0f} s; killed")
    finally:
        shutil.rmtree(marks, ignore_errors=True)


def _marked(rank: int, fn, marks: str, *args):
    fn(rank, *args)
    open(os.path.join(marks, str(rank)), "w").close()  # the work is done, whatever teardown does


def _kill(context) -> None:
    for process in context.processes:
        if process.is_alive():
            process.kill()
        process.join(5)


def build_model() -> nn.Module:
    """An MLP with a ReLU (unbounded: its histogram range is set from the first batch), a
    Tanh (bounded) and dead units: units 0–3 of the ReLU never fire, unit 5 fires only for
    one sample of rank 1's shard (dead on rank 0's shard, alive on the global batch)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 1))
    with torch.no_grad():
        model[0].bias[:4] = -100.0
        model[0].weight[5] = 0.0
        model[0].weight[5, 0] = 1.0
        model[0].bias[5] = -5.0
    return model


def global_batch():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, WORLD * SHARD, 8, generator=generator)
    x[:, SHARD + 3, 0] = 10.0  # the one sample that wakes unit 5: in rank 1's shard
    y = torch.randn(STEPS, WORLD * SHARD, 1, generator=generator)
    return x, y


def train(model, opt, rec, x, y, *, shard=None, fail_at=None, on_fail=None):
    """STEPS steps of MSE on the global batch, or on ``shard`` (a slice) of it."""
    for step in range(STEPS):
        xs, ys = (x[step], y[step]) if shard is None else (x[step][shard], y[step][shard])
        if fail_at is not None and step == fail_at:
            on_fail()
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(xs), ys)
        loss.backward()
        opt.step()
        rec.log(loss=loss, reduce="mean")


def _init(rank: int, store: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)


def _forbid_hdf5_on_other_ranks(rank: int):
    """Any HDF5 file a non-zero rank tries to open fails loudly."""
    if rank != 0:
        import h5py

        def refuse(*args, **kwargs):
            raise AssertionError(f"rank {rank} opened an HDF5 file")

        h5py.File = refuse


def record_worker(rank: int, out: str, store: str):
    """The three modes on a DDP model, a plain (non-DDP) model, and a distributed landscape."""
    _init(rank, store)
    _forbid_hdf5_on_other_ranks(rank)
    x, y = global_batch()
    shard = slice(rank * SHARD, (rank + 1) * SHARD)
    calls = {}
    for mode in ("reduce", "per_rank", "rank0"):
        model = nn.parallel.DistributedDataParallel(build_model())
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
        with dyntrace.Recorder(
            model, opt, os.path.join(out, f"{mode}.h5"), every=EVERY, probes=PROBES, distributed=mode
        ) as rec:
            train(model, opt, rec, x, y, shard=shard)
        calls[mode] = rec._dist.collective_calls
        if rank == 0:
            torch.save(model.module.state_dict(), os.path.join(out, f"{mode}_final.pt"))

    # No DDP: every rank's gradients are its own shard's. Rank 0 must notice and say so.
    model = build_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with dyntrace.Recorder(model, opt, os.path.join(out, "no_ddp.h5"), every=EVERY, probes=PROBES) as rec:
            train(model, opt, rec, x, y, shard=shard)
    mismatch = [str(w.message) for w in caught if "gradients differ across ranks" in str(w.message)]

    # Many reduced scalars and no record step to carry them: a scalars-only collective at
    # MAX_PENDING values (the same log call on every rank), the rest at close.
    model = build_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    with dyntrace.Recorder(model, opt, os.path.join(out, "scalars.h5"), every=10**6, probes=[]) as rec:
        for i in range(5000):
            rec.log(v=torch.tensor(float(rank + i)) if i % 2 else float(rank + i), reduce="mean")
        rec.log(top=float(rank), reduce="max")
        rec.log(low=float(rank), reduce="min")
        rec.log(total=1.0, reduce="sum")
    calls["scalars"] = rec._dist.collective_calls

    # Landscape: grid points split across the two ranks, rank 0 gathers (and writes).
    from dyntrace.landscape import distributed as dland

    model = build_model()
    batch = (x[0], y[0])
    planes = {}
    for method in ("sequential", "vmap"):
        # rank 0 also adds the sequential one to the (closed) run file
        path = os.path.join(out, "reduce.h5") if method == "sequential" else None
        planes[method] = dland.plane(
            model,
            nn.functional.mse_loss,
            batch,
            resolution=(7, 5),
            span=0.5,
            seed=3,
            method=method,
            path=path,
            name="plane",
        )
    try:  # each rank with another batch: refused on every rank, not a patchwork surface
        dland.plane(model, nn.functional.mse_loss, (x[rank], y[rank]), resolution=(3, 3), method="sequential")
        refused = False
    except ValueError:
        refused = True
    line = dland.line(
        model,
        nn.functional.mse_loss,
        batch,
        build_model().state_dict(),
        {k: v + 0.1 for k, v in build_model().state_dict().items()},
        steps=9,
        method="sequential",
    )
    if rank == 0:
        np.savez(
            os.path.join(out, "rank0.npz"),
            calls=[calls["reduce"], calls["per_rank"], calls["rank0"]],
            scalar_calls=calls["scalars"],
            mismatch=len(mismatch),
            sequential=planes["sequential"].loss,
            vmap=planes["vmap"].loss,
            x=planes["vmap"].x,
            y=planes["vmap"].y,
            line=line.loss,
            meta_ranks=planes["vmap"].meta["ranks"],
            refused=refused,
        )
    else:
        np.savez(
            os.path.join(out, "rank1.npz"),
            planes_none=all(p is None for p in planes.values()) and line is None,
            refused=refused,
            calls=[calls["reduce"], calls["per_rank"], calls["rank0"]],
        )
    # The DDP models are gone before the group: a gloo group destroyed from DDP's reducer after
    # destroy_process_group (the peer may have exited) can hang joining its threads.
    del model, opt
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def failing_worker(rank: int, out: str, store: str, failing_rank: int):
    """A DDP run in which ``failing_rank`` raises before step 5 (after records at 1 and 3)."""
    _init(rank, store)
    x, y = global_batch()
    shard = slice(rank * SHARD, (rank + 1) * SHARD)
    model = nn.parallel.DistributedDataParallel(build_model())
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def fail():
        if rank == failing_rank:
            time.sleep(0.5)  # rank 0's writer flushes meanwhile (flush_every=0.05)
            raise RuntimeError(f"rank {rank} fails on purpose")

    with dyntrace.Recorder(
        model, opt, os.path.join(out, "failed.h5"), every=EVERY, probes=PROBES, flush_every=0.05
    ) as rec:
        train(model, opt, rec, x, y, shard=shard, fail_at=4, on_fail=fail)
