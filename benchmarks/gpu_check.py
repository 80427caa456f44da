"""The device path checked on a GPU: the same seeded steps recorded on the CPU and on CUDA.

    python benchmarks/gpu_check.py [--device cuda] [--steps 4]

Float32 with TF32 off, every probe, every step recorded, for an MLP (Tanh, ReLU, Sigmoid,
BatchNorm) and a small CNN, trained with Adam on identical seeded batches on both devices.
Prints, per probe and field, the largest relative difference of every statistic (moments,
norms, ψ) and whether the histogram counts are equal, then the syncs per record step on the
device (torch.cuda.set_sync_debug_mode). Exits 1 if a statistic differs by more than 1e-5
relative (or 1e-9 absolute), or a count differs. With ``--device cpu`` it compares the CPU
with itself (a smoke test of the script on a machine without a GPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

import numpy as np
import torch
from torch import nn

import dyntrace

COUNTS = (
    "count",
    "zero",
    "nonfinite",
    "hist_count",
    "hist",
    "dead",
    "dead_persistent",
    "saturated",
    "grad_zero",
)


def models():
    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.Linear(20, 64),
        nn.BatchNorm1d(64),
        nn.Tanh(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, 32),
        nn.Sigmoid(),
        nn.Linear(32, 10),
    )
    cnn = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    return {"mlp": (mlp, (64, 20)), "cnn": (cnn, (32, 3, 16, 16))}


def record(model, shape, device, path, steps):
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(*shape, generator=g), torch.randint(0, 10, (shape[0],), generator=g))
        for _ in range(steps)
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with dyntrace.Recorder(model, opt, path, every=1, probes="all") as rec:
            for x, y in batches:
                x, y = x.to(device), y.to(device)
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                rec.log(loss=loss)
    return [str(w.message) for w in caught if "dyntrace" in str(w.message)]


def syncs_per_record_step(model, shape, device):
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(*shape, device=device), torch.randint(0, 10, (shape[0],), device=device)
    with (
        tempfile.TemporaryDirectory() as tmp,
        dyntrace.Recorder(model, opt, os.path.join(tmp, "s.h5"), every=1, probes="all") as rec,
    ):
        for _ in range(3):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            rec.log(loss=loss)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                rec.log(loss=loss)
            finally:
                torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def compare(a_path, b_path) -> list[str]:
    bad = []
    with dyntrace.open_run(a_path) as a, dyntrace.open_run(b_path) as b:
        for probe in a.probes:
            if not len(a.steps(probe)):
                continue
            for field in a.fields(probe):
                _, x = a.field(probe, field)
                _, y = b.field(probe, field)
                x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
                if field in COUNTS:
                    ok = np.array_equal(x, y)
                    print(f"  {probe:<12} {field:<16} counts {'equal' if ok else 'DIFFER'}")
                    bad += [] if ok else [f"{probe}/{field}"]
                    continue
                both = np.isfinite(x) & np.isfinite(y)
                same_nonfinite = np.array_equal(np.isfinite(x), np.isfinite(y))
                rel = np.abs(x - y)[both] / np.maximum(np.abs(y[both]), 1e-300)
                worst = float(rel.max()) if rel.size else 0.0
                close = np.allclose(x[both], y[both], rtol=1e-5, atol=1e-9)
                print(
                    f"  {probe:<12} {field:<16} max rel diff {worst:.2e}"
                    f"{'' if close and same_nonfinite else '  <-- DIFFERS'}"
                )
                bad += [] if close and same_nonfinite else [f"{probe}/{field}"]
        for name in ("loss", "grad_norm", "param_norm", "update_norm"):
            x, y = a.scalar(name)[1], b.scalar(name)[1]
            if not np.allclose(x, y, rtol=1e-5):
                bad.append(f"scalar {name}")
    return bad


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --device cpu for a smoke run)")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(False)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, shape) in models().items():
            import copy

            cpu_path, dev_path = (
                os.path.join(tmp, f"{name}-cpu.h5"),
                os.path.join(tmp, f"{name}-{device.type}.h5"),
            )
            warned = record(copy.deepcopy(model), shape, "cpu", cpu_path, args.steps)
            warned += record(copy.deepcopy(model), shape, device, dev_path, args.steps)
            print(f"{name}: CPU vs {device}" + (f"; dyntrace warnings: {warned}" if warned else ""))
            failures += [f"{name}: {f}" for f in compare(dev_path, cpu_path)] + [
                f"{name}: warning {w}" for w in warned
            ]
            if device.type == "cuda":
                print(
                    "  syncs in one record step (all probes): "
                    f"{syncs_per_record_step(copy.deepcopy(model), shape, device)}"
                )
    print("OK" if not failures else "FAILED: " + "; ".join(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
