"""Seconds per grid point of a 2-D loss landscape: dyntrace vs a plain loop vs loss-landscapes.

For each model (an MLP 64→256→256→10 on 512 samples, a small CNN on 128 3×32×32 images, and
a tiny gallery-sized MLP 2→32→32→2 on 256 points, where a forward is mostly per-call
overhead) and one random filter-normalised plane, this prints the best-of-``--repeat`` wall time per grid
point of

- ``dyntrace.landscape.plane`` with method "auto", "vmap" and "sequential" (whole call:
  directions, setup, evaluation);
- the sequential floor: one plain forward per point and nothing else (parameters written
  in place into a private copy of the model, eval mode, no_grad);
- ``loss_landscapes.random_plane`` 3.0.6 (one forward per point, autograd on, moves the
  model in place) on the same model, grid size and batch, when it is importable
  (``pip install --no-deps loss-landscapes``);

then the ratios dyntrace / floor (goal ≤ 1.1×) and loss-landscapes / dyntrace (goal ≥ 5×),
and the largest relative difference between dyntrace's and the floor's values. Repeats go
round-robin over the contenders, so a busy spell on a shared machine hits all of them.

Run: ``python benchmarks/landscape.py [--mlp-grid 21] [--cnn-grid 11] [--tiny-grid 51] [--repeat 3]
[--threads N] [--clock wall|cpu]``
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dyntrace.landscape import plane

try:
    import loss_landscapes
    import loss_landscapes.metrics
except ImportError:
    loss_landscapes = None


def tiny_case():
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2))
    return "tiny MLP 2-32-32-2, batch 256", model, (torch.randn(256, 2), torch.randint(0, 2, (256,)))


def mlp_case():
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    return "MLP 64-256-256-10, batch 512", model, (torch.randn(512, 64), torch.randint(0, 10, (512,)))


def cnn_case():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 10),
    )  # fmt: skip
    # BatchNorm's bias as after training: loss-landscapes 3.0.6 divides by zero on an all-zero
    # 1-D parameter
    with torch.no_grad():
        model[1].bias.normal_(0, 0.1)
    return (
        "CNN conv16-bn-conv32-fc, batch 128 of 3x32x32",
        model,
        (torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))),
    )


def floor_plane(model, batch, result, clock) -> tuple[float, np.ndarray]:
    """The sequential floor on ``result``'s grid and directions: seconds, and the losses."""
    private = copy.deepcopy(model).eval()
    params = list(private.parameters())
    center = [p.detach().clone() for p in params]
    dx, dy = result.directions
    inputs, targets = batch
    losses = []
    with torch.no_grad():
        began = clock()
        for b in result.y:
            for a in result.x:
                for p, c, u, v in zip(params, center, dx, dy):
                    torch.add(c, u, alpha=float(a), out=p)
                    p.add_(v, alpha=float(b))
                losses.append(F.cross_entropy(private(inputs), targets))
        values = torch.stack(losses)
        seconds = clock() - began
    return seconds, values.double().numpy().reshape(result.loss.shape)


def loss_landscapes_plane(model, batch, n: int, clock) -> float:
    private = copy.deepcopy(model).eval()
    metric = loss_landscapes.metrics.Loss(F.cross_entropy, *batch)
    began = clock()
    loss_landscapes.random_plane(
        private, metric, distance=1, steps=n, normalization="filter", deepcopy_model=False
    )
    return clock() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--mlp-grid", type=int, default=21, help="grid points per axis for the MLP (default 21)"
    )
    parser.add_argument(
        "--cnn-grid", type=int, default=11, help="grid points per axis for the CNN (default 11)"
    )
    parser.add_argument(
        "--tiny-grid", type=int, default=51, help="grid points per axis for the tiny MLP (default 51)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: time.perf_counter (default); cpu: time.process_time, the CPU time of this process, "
        "which a shared, busy machine inflates less (use with --threads 1)",
    )
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; {args.clock} clock, best of {args.repeat}"
    )
    if loss_landscapes is None:
        print("loss-landscapes not importable: its column is skipped")

    for make, n in ((mlp_case, args.mlp_grid), (cnn_case, args.cnn_grid), (tiny_case, args.tiny_grid)):
        torch.manual_seed(0)
        title, model, batch = make()
        model.eval()
        points = n * n
        print(f"\n{title}: {n}x{n} = {points} points")
        results, floor_loss = {}, None

        def dyntrace(method):
            def timed():
                began = clock()
                results[method] = plane(model, F.cross_entropy, batch, resolution=(n, n), method=method)
                return clock() - began

            return timed

        def floor():
            nonlocal floor_loss
            seconds, floor_loss = floor_plane(model, batch, results["vmap"], clock)
            return seconds

        contenders = {f"dyntrace {m}": dyntrace(m) for m in ("auto", "vmap", "sequential")}
        contenders["floor (plain forward per point)"] = floor
        if loss_landscapes is not None:
            contenders["loss-landscapes 3.0.6"] = lambda: loss_landscapes_plane(model, batch, n, clock)
        seconds = {name: [] for name in contenders}
        for _ in range(args.repeat):
            for name, timed in contenders.items():
                seconds[name].append(timed())
        per_point = {name: min(values) / points for name, values in seconds.items()}
        for name, seconds in per_point.items():
            print(f"  {name:34s} {seconds * 1e3:8.3f} ms/point")
        print(
            f"  auto chose: {results['auto'].meta['method']} "
            f"(trial s/point {results['auto'].meta.get('trial_seconds_per_point')})"
        )
        auto = per_point["dyntrace auto"]
        floor = per_point["floor (plain forward per point)"]
        print(f"  dyntrace auto / floor            {auto / floor:6.2f}x   (goal <= 1.1x)")
        if loss_landscapes is not None:
            print(
                f"  loss-landscapes / dyntrace auto  {per_point['loss-landscapes 3.0.6'] / auto:6.2f}x   (goal >= 5x)"
            )
        for method in ("vmap", "sequential"):
            diff = np.max(np.abs(results[method].loss - floor_loss) / np.abs(floor_loss))
            print(f"  max relative difference, {method} vs floor: {diff:.1e}")


if __name__ == "__main__":
    main()
