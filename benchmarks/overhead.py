"""Recorder overhead, measured side by side in one run (plain loop vs recorded loop).

    python benchmarks/overhead.py [--quick] [--steps N]

For an MLP 784-512-512-10 (batch 256) and a small CNN (1x16x16 inputs, batch 128) it prints the ratio of
recorded to plain step time for non-record steps, record steps with the default probes and
with every probe, and amortised at every=10; then host memory growth over a long recorded
run and bytes per record. Plain and recorded steps run in alternating blocks on identical
models so that machine load hits both alike; medians are reported.

Budget (DESIGN.md): non-record <= 1.02x, record <= 1.3x (default probes), <= 1.6x (all
probes), amortised <= 1.05x at every=10, flat memory.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time

import h5py
import torch
from torch import nn

import dyntrace


def mlp():
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)), (256, 784)


def cnn():
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )
    return model, (128, 1, 16, 16)


def train_step(model, opt, x, y, rec=None):
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    if rec is not None:
        rec.log(loss=loss)


CLOCK = time.perf_counter  # --clock cpu: time.process_time (all threads of this process)


def timed(fn) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def compare(build, optimizer_cls, probes, *, blocks, block_steps, every=10):
    """Median plain step, median non-record and record step, and amortised ratio."""
    torch.manual_seed(0)
    model, shape = build()
    plain_model = copy.deepcopy(model)
    opt = optimizer_cls(model.parameters(), lr=1e-3)
    plain_opt = optimizer_cls(plain_model.parameters(), lr=1e-3)
    x, y = torch.randn(*shape), torch.randint(0, 10, (shape[0],))
    for _ in range(5):
        train_step(plain_model, plain_opt, x, y)
    plain, non_record, record = [], [], []
    plain_total = recorded_total = 0.0
    with tempfile.TemporaryDirectory() as tmp, dyntrace.Recorder(model, opt, os.path.join(tmp, "run.h5"), every=every, probes=probes) as rec:
        for _ in range(3):
            train_step(model, opt, x, y, rec)  # warm-up: first record fixes histogram ranges
        for _ in range(blocks):
            times = [timed(lambda: train_step(plain_model, plain_opt, x, y)) for _ in range(block_steps)]
            plain += times
            plain_total += sum(times)
            for _ in range(block_steps):
                is_record = bool(rec.schedule(rec.step + 1))
                t = timed(lambda: train_step(model, opt, x, y, rec))
                (record if is_record else non_record).append(t)
                recorded_total += t
    base = statistics.median(plain)
    return {
        "plain_ms": 1e3 * base,
        "non_record": statistics.median(non_record) / base,
        "record": statistics.median(record) / base,
        "amortised": recorded_total / plain_total,
    }


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_and_size(steps: int):
    """RSS growth over a long recorded run of a small MLP, and the file's bytes per record."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "long.h5")
        with dyntrace.Recorder(model, opt, path, every=10, probes="all") as rec:
            marks = []
            for step in range(steps):
                train_step(model, opt, x, y, rec)
                if step in (steps // 5, steps - 1):
                    marks.append(rss_mb())
        size = os.path.getsize(path)
        with h5py.File(path, "r") as f:
            records = f["probes/gradients/step"].shape[0]
            per_probe = {name: sum(ds.id.get_storage_size() for ds in group.values() if isinstance(ds, h5py.Dataset)) for name, group in f["probes"].items()}
            scalars = sum(ds.id.get_storage_size() for ds in f["scalars"].values())
    return marks, size, records, per_probe, scalars


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer blocks (a smoke run)")
    parser.add_argument("--steps", type=int, default=5000, help="steps of the memory run")
    parser.add_argument("--ddp", action="store_true", help="measure under DDP on two CPU ranks instead (overhead_ddp.py)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: process CPU time, writer thread included (robust on a shared machine)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.ddp:
        import overhead_ddp

        overhead_ddp.main(["--quick"] if args.quick else [])
        return
    blocks, block_steps = (3, 20) if args.quick else (12, 40)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock; medians over {blocks}x{block_steps} steps each\n")
    print(f"{'model':<6} {'optimizer':<6} {'probes':<8} {'plain ms':>9} {'non-record':>11} {'record':>8} {'amortised@10':>13}")
    for model_name, build in (("mlp", mlp), ("cnn", cnn)):
        for opt_name, opt_cls, probes in (("sgd", torch.optim.SGD, None), ("adam", torch.optim.Adam, "all")):
            r = compare(build, opt_cls, probes, blocks=blocks, block_steps=block_steps)
            label = "default" if probes is None else probes
            print(f"{model_name:<6} {opt_name:<6} {label:<8} {r['plain_ms']:>9.2f} {r['non_record']:>10.3f}x {r['record']:>7.3f}x {r['amortised']:>12.3f}x")
    steps = 1000 if args.quick else args.steps
    marks, size, records, per_probe, scalars = memory_and_size(steps)
    print(f"\nmemory over {steps} recorded steps (every=10, all probes): RSS {marks[0]:.1f} MB at step {steps // 5}, {marks[1]:.1f} MB at the end ({marks[1] - marks[0]:+.1f} MB)")
    print(f"file: {size / 1e6:.2f} MB for {records} records and {steps} steps = {size / records / 1e3:.1f} kB per record")
    parts = ", ".join(f"{k} {v / records / 1e3:.1f} kB" for k, v in per_probe.items())
    print(f"  stored per record: {parts}; scalar log {scalars / steps:.1f} B per step")


if __name__ == "__main__":
    main()
