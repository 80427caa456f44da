"""Cost of one curvature measurement in plain training steps, measured side by side in one run.

    python benchmarks/curvature.py [--quick] [--device cpu|cuda] [--threads N]

On the MLP (784-512-512-10, batch 256) and the CNN (1x16x16 inputs, batch 128, BatchNorm) of
benchmarks/overhead.py, for SGD and Adam: blocks of plain training steps alternate with blocks
of curvature measurements on the same batch (the probe's own code, as the Recorder calls it
before ``optimizer.step()``), on identical models, so machine load hits both alike; the ratio
of the medians is the cost in plain steps. Measurements run warm-started (each begins at the
last eigenvector, as in a run) with the probe's defaults: power iteration up to 20 products at
tolerance 1e-3 for λ_max(H) and, under Adam, for λ_max(P⁻¹H), and 10 Hutchinson vectors for
the trace; also without the trace. The first (cold) measurement is reported apart. Last, the
cost the probe itself records in the run file (``curvature/cost``) on a recorded run.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import cnn, mlp, train_step  # noqa: E402  (the same models and step)

import dyntrace  # noqa: E402
from dyntrace.probes import CurvatureProbe  # noqa: E402
from dyntrace.probes.base import RecordContext  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def measure_block(build, optimizer_cls, *, trace_samples, blocks, block_steps, device):
    """(plain step s, cold measurement s, warm measurement s, products per warm measurement)."""
    torch.manual_seed(0)
    model, shape = build()
    model = model.to(device)
    plain_model = copy.deepcopy(model)
    opt = optimizer_cls(model.parameters(), lr=1e-3)
    plain_opt = optimizer_cls(plain_model.parameters(), lr=1e-3)
    x, y = torch.randn(*shape, device=device), torch.randint(0, 10, (shape[0],), device=device)
    for _ in range(5):
        train_step(plain_model, plain_opt, x, y)
        train_step(model, opt, x, y)  # Adam state exists: the preconditioned sharpness is measured too
    probe = CurvatureProbe(
        loss_fn=lambda m: nn.functional.cross_entropy(m(x), y), trace_samples=trace_samples
    )
    ctx = RecordContext(model, opt)
    probe.setup(ctx)

    def measurement():
        ctx.step += 1
        handles = probe.attach(ctx)  # as on a record step
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()  # the step's own gradient (not timed)
        for h in handles:
            h.remove()
        seconds = timed(lambda: probe.before_step(ctx), device)
        ctx.scalars = {}
        return seconds

    cold = measurement()
    plain, warm = [], []
    products = []
    for _ in range(blocks):
        plain += [timed(lambda: train_step(plain_model, plain_opt, x, y), device) for _ in range(block_steps)]
        warm += [measurement() for _ in range(block_steps)]  # each warm-started from the last
        products.append(_products(probe, ctx, model, x, y, trace_samples))
    return statistics.median(plain), cold, statistics.median(warm), statistics.median(products)


def _products(probe, ctx, model, x, y, trace_samples) -> float:
    """Hessian-vector products of one warm measurement: power iterations (+ preconditioned) + trace."""
    ctx.step += 1
    handles = probe.attach(ctx)
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    for h in handles:
        h.remove()
    probe.before_step(ctx)
    scalars, ctx.scalars = ctx.scalars, {}
    used = float(scalars["curvature/iters"]) + trace_samples
    if "curvature/precond_iters" in scalars:
        used += float(scalars["curvature/precond_iters"])
    return used


def recorded_cost(build, optimizer_cls, *, steps, device) -> float:
    """The median cost the probe writes in the file, on a run recorded every 5 steps, measured every 2nd record."""
    torch.manual_seed(0)
    model, shape = build()
    model = model.to(device)
    opt = optimizer_cls(model.parameters(), lr=1e-3)
    x, y = torch.randn(*shape, device=device), torch.randint(0, 10, (shape[0],), device=device)
    probe = CurvatureProbe(loss_fn=lambda m: nn.functional.cross_entropy(m(x), y), every=2)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.h5")
        with dyntrace.Recorder(model, opt, path, every=5, probes=[probe]) as rec:
            for _ in range(steps):
                train_step(model, opt, x, y, rec)
        with dyntrace.open_run(path) as run:
            return dyntrace.analysis.measurement_cost(run)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer blocks (a smoke run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    blocks, block_steps = (2, 4) if args.quick else (6, 8)
    steps = 60 if args.quick else 200
    print(
        f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads; "
        f"medians over {blocks}x{block_steps} of each\n"
    )
    print(
        f"{'model':<5} {'optimizer':<9} {'trace':>5} {'plain ms':>9} {'measure ms':>11} {'cost (steps)':>13} "
        f"{'cold (steps)':>13} {'HVPs':>5} {'in file (steps)':>16}"
    )
    for model_name, build in (("mlp", mlp), ("cnn", cnn)):
        for opt_name, opt_cls in (("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)):
            for trace in (10, 0):
                plain, cold, warm, products = measure_block(
                    build, opt_cls, trace_samples=trace, blocks=blocks, block_steps=block_steps, device=device
                )
                in_file = recorded_cost(build, opt_cls, steps=steps, device=device) if trace else float("nan")
                print(
                    f"{model_name:<5} {opt_name:<9} {trace:>5} {1e3 * plain:>9.2f} {1e3 * warm:>11.2f} "
                    f"{warm / plain:>12.1f}x {cold / plain:>12.1f}x {products:>5.0f} {in_file:>15.1f}x"
                )


if __name__ == "__main__":
    main()
