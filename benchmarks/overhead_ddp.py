"""Recorder overhead under DDP: two CPU ranks (gloo), plain DDP steps vs recorded ones.

    python benchmarks/overhead_ddp.py [--quick] [--blocks N] [--block-steps N]

An MLP 784-512-512-10 on a global batch of 256 (128 a rank) is trained with DDP by two
processes. Four copies of it, identical at the start, take turns in blocks of steps so that
machine load hits all alike: a plain DDP loop, and recorded loops (default probes, every
other step recorded) in the three distributed modes: "reduce" (activation summaries combined
by two reduce ops a record step), "rank0" (rank 0's shard only, no collective) and
"per_rank" (one gather a record step). Rank 0 prints, from this one run, the median step
time of each as a ratio to the plain DDP step, and the cost of the collective itself:

- record(reduce) − record(rank0): what combining across ranks adds to a record step (the
  other rank's activation summaries, packing, the two reductions, the wait for the slower
  rank);
- the wall time inside the collectives (``Sync.collective_seconds`` over its calls), which
  includes waiting for the slower rank;
- the two reductions alone on buffers of the same sizes, the ranks started together.

Non-record steps run no collective and no hook of the recorder at all.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import dyntrace

WORLD = 2
GLOBAL_BATCH = 256
MODES = ("reduce", "rank0", "per_rank")


def _model():
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def _step(model, opt, x, y, rec=None):
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    if rec is not None:
        rec.log(loss=loss, reduce="mean")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _worker(rank: int, store: str, out: str, blocks: int, block_steps: int):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    torch.manual_seed(0)
    base = _model()
    shard = GLOBAL_BATCH // WORLD
    generator = torch.Generator().manual_seed(1 + rank)
    x, y = torch.randn(shard, 784, generator=generator), torch.randint(0, 10, (shard,), generator=generator)

    plain = nn.parallel.DistributedDataParallel(copy.deepcopy(base))
    plain_opt = torch.optim.SGD(plain.parameters(), lr=1e-3)
    runs = {}
    for mode in MODES:
        model = nn.parallel.DistributedDataParallel(copy.deepcopy(base))
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        rec = dyntrace.Recorder(model, opt, os.path.join(out, f"{mode}.h5"), every=2, distributed=mode)
        runs[mode] = (model, opt, rec)

    for _ in range(4):  # warm-up; the first record fixes histogram ranges
        _step(plain, plain_opt, x, y)
        for model, opt, rec in runs.values():
            _step(model, opt, x, y, rec)
    for mode, (_, _, rec) in runs.items():
        if rec._dist is not None:
            rec._dist.collective_seconds, rec._dist.collective_calls = 0.0, 0

    times = {"plain": []} | {f"{m}/{k}": [] for m in MODES for k in ("record", "other")}
    for _ in range(blocks):
        times["plain"] += [_timed(lambda: _step(plain, plain_opt, x, y)) for _ in range(block_steps)]
        for mode, (model, opt, rec) in runs.items():
            for _ in range(block_steps):
                kind = "record" if rec.schedule(rec.step + 1) else "other"
                times[f"{mode}/{kind}"].append(_timed(lambda: _step(model, opt, x, y, rec)))
    collective = {}
    for mode, (_, _, rec) in runs.items():
        sync = rec._dist
        collective[mode] = sync.collective_seconds / sync.collective_calls if sync.collective_calls else 0.0
    sizes = runs["reduce"][2]._dist.buffer_sizes
    for _, _, rec in runs.values():
        rec.close()
    bare = _bare_collectives(sizes, repeats=10 * blocks)

    if rank == 0:
        median = {key: statistics.median(values) for key, values in times.items() if values}
        p = median["plain"]
        print(
            f"DDP on {WORLD} CPU ranks (gloo), MLP 784-512-512-10, global batch {GLOBAL_BATCH}; "
            f"{blocks} blocks x {block_steps} steps each; default probes, every=2"
        )
        print(f"  plain DDP step (median)              {p * 1e3:8.2f} ms   1.00x")
        for mode in MODES:
            print(
                f"  {mode:8s} non-record step            {median[f'{mode}/other'] * 1e3:8.2f} ms   "
                f"{median[f'{mode}/other'] / p:.2f}x"
            )
        for mode in MODES:
            print(
                f"  {mode:8s} record step                {median[f'{mode}/record'] * 1e3:8.2f} ms   "
                f"{median[f'{mode}/record'] / p:.2f}x"
            )
        extra = median["reduce/record"] - median["rank0/record"]
        print(
            f"  combining across ranks, record(reduce) - record(rank0): {extra * 1e3:+.2f} ms = "
            f"{extra / p:+.2f}x a plain step"
        )
        for mode in ("reduce", "per_rank"):
            print(
                f"  time inside the collectives ({mode}, per record step): "
                f"{collective[mode] * 1e3:.2f} ms = {collective[mode] / p:.2f}x a plain step"
            )
        print(
            f"  the two reductions alone, ranks in step ({sizes[0]} + {sizes[1]} float64): "
            f"{bare * 1e3:.3f} ms = {bare / p:.3f}x a plain step"
        )
        amortised = (median["reduce/record"] + 9 * median["reduce/other"]) / 10
        print(f"  amortised at every=10 (reduce): {amortised / p:.2f}x")
    dist.destroy_process_group()


def _bare_collectives(sizes, *, repeats: int) -> float:
    """Median time of the "reduce" mode's two reductions on buffers of the record step's
    sizes, each repetition started together (after a barrier): the transfer itself,
    without waiting for a slower rank."""
    sums, maxes = torch.zeros(sizes[0], dtype=torch.float64), torch.zeros(sizes[1], dtype=torch.float64)
    times = []
    for _ in range(repeats):
        dist.barrier()
        began = time.perf_counter()
        dist.reduce(sums, dst=0, op=dist.ReduceOp.SUM)
        dist.reduce(maxes, dst=0, op=dist.ReduceOp.MAX)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer blocks (a smoke run)")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--block-steps", type=int, default=10)
    args = parser.parse_args(argv)
    blocks = 2 if args.quick else args.blocks
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(
            _worker,
            args=(os.path.join(tmp, "store"), tmp, blocks, args.block_steps),
            nprocs=WORLD,
            join=True,
            start_method="spawn",
        )


if __name__ == "__main__":
    main()
