"""How long ``dyntrace plot`` takes on a big run, and how much memory it needs.

Builds a synthetic run file of 10⁶ steps × 100 layers (recorded every 100 steps: 10⁴
records) straight through :mod:`dyntrace.io.format` (a block of records per write, as the writer
batches them between flushes), with the layout the activations,
gradients, weights and scalars probes write, then runs ``dyntrace plot`` on it in a child
process and reports its wall time and peak resident memory (``resource.getrusage``).

    python benchmarks/plot.py                      # full size; the file is kept for re-runs
    python benchmarks/plot.py --steps 100000       # smaller
    python benchmarks/plot.py --file /tmp/big.h5 --rebuild

The synthetic data need not be realistic, only shaped like a real run: histograms with
moving bulks, per-layer stds that shrink with depth, a loss with a plateau, a stepped lr.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from dyntrace.io import format as fmt
from dyntrace.summaries import FieldSpec, ProbeLayout, log10_magnitude_edges, tensor_fields

ACT_BINS = 100  # the activations probe's default
GRAD_EDGES = log10_magnitude_edges(-12.0, 4.0, 5)  # the gradients probe's default
WEIGHT_BINS = 64  # the weights probe's default
SAMPLE = 4096  # elements binned per tensor and record


def layouts(n_layers: int) -> dict:
    """Probe layouts as the activations, gradients and weights probes declare them."""
    layers = [f"blocks.{i}.act" for i in range(n_layers)]
    kinds = ["tanh" if i % 2 else "relu" for i in range(n_layers)]
    params = [f"blocks.{i}.linear.{p}" for i in range(n_layers) for p in ("weight", "bias")]
    act = ProbeLayout(
        names=layers,
        fields=tensor_fields(ACT_BINS, hist_description="counts of output values")
        + [
            FieldSpec("saturated", "int64"),
            FieldSpec("dead", "int64"),
            FieldSpec("dead_persistent", "int64"),
            FieldSpec("edges", "float64", (ACT_BINS + 1,), static=True),
            FieldSpec("units", "int64", static=True),
        ],
        labels={"kind": kinds},
        attrs={
            "nonfinite_scope": "sample",
            "saturation_eps": 0.05,
            "dead_patience": 3,
            "hist_sample": SAMPLE,
            "hist_scale": "value",
        },
    )

    def param_layout(bins, unit, scale):
        return ProbeLayout(
            names=params,
            fields=tensor_fields(bins, unit=unit)
            + [FieldSpec("edges", "float64", (bins + 1,), static=True, unit=unit)],
            attrs={"nonfinite_scope": "tensor", "hist_sample": SAMPLE, "hist_scale": scale},
        )

    return (
        {
            "activations": act,
            "gradients": param_layout(GRAD_EDGES[2], "log10 |g|", "log10_abs"),
            "weights": param_layout(WEIGHT_BINS, "", "value"),
        },
        layers,
        kinds,
        params,
    )


def _binned(rng, centres, mean, std, total):
    """Counts of about ``total`` normal samples per bin (rows: tensors), with under/overflow;
    Poisson noise so the file compresses like real counts do, not like a formula."""
    width = centres[..., 1] - centres[..., 0]
    density = np.exp(-0.5 * ((centres - mean[:, None]) / std[:, None]) ** 2) / (
        std[:, None] * np.sqrt(2 * np.pi)
    )
    inside = rng.poisson(density * width[..., None] * total)
    rest = np.maximum(total - inside.sum(axis=1), 0)
    return np.concatenate([rest[:, None] // 2, inside, (rest - rest // 2)[:, None]], axis=1)


def _moments(mean, std, n):
    n = np.full(mean.shape, n, dtype=np.int64)
    return {
        "count": n,
        "sum": mean * n,
        "sumsq": (std**2 + mean**2) * n,
        "min": mean - 4 * std,
        "max": mean + 4 * std,
        "nonfinite": np.zeros_like(n),
        "hist_count": np.full(mean.shape, SAMPLE, dtype=np.int64),
    }


def build(path: str, *, steps: int, n_layers: int, every: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lay, layers, kinds, params = layouts(n_layers)
    meta = {
        "model_class": "SyntheticMLP",
        "n_parameters": n_layers * 65 * 64,
        "schedule": f"Every({every})",
        "config": {"synthetic": True},
    }
    f = fmt.create(path, meta, lay)
    depth = np.arange(n_layers) / max(1, n_layers - 1)
    relu = np.array([k == "relu" for k in kinds])
    act_edges = np.where(relu[:, None], np.linspace(0, 4, ACT_BINS + 1), np.linspace(-1, 1, ACT_BINS + 1))
    act_centres = (act_edges[:, 1:] + act_edges[:, :-1]) / 2
    g_lo, g_hi, g_bins = GRAD_EDGES
    g_edges = np.linspace(g_lo, g_hi, g_bins + 1)
    g_centres = np.broadcast_to((g_edges[1:] + g_edges[:-1]) / 2, (2 * n_layers, g_bins))
    w_edges = np.linspace(-0.5, 0.5, WEIGHT_BINS + 1)
    w_centres = np.broadcast_to((w_edges[1:] + w_edges[:-1]) / 2, (2 * n_layers, WEIGHT_BINS))
    units = np.full(n_layers, 64)

    chunk = 10_000  # scalar events are appended a block of steps at a time
    names_done = False
    for first in range(1, steps + 1, chunk):
        s = np.arange(first, min(first + chunk, steps + 1))
        t = s / steps
        loss = (
            0.3
            + 2.0 / (1 + np.exp((t - 0.4) * 40))
            + 0.2 * np.exp(-5 * t)
            + 0.05 * rng.standard_normal(s.size)
        )
        acc = np.clip(1 - loss / 2.5 + 0.02 * rng.standard_normal(s.size), 0, 1)
        keys = [np.zeros(s.size, np.int32), np.ones(s.size, np.int32)]
        vals = [loss, acc]
        steps_col = [s, s]
        lr_steps = s[(s - 1) % (steps // 4) == 0]  # a step decay: lr logged when it changes
        if lr_steps.size:
            steps_col.append(lr_steps)
            keys.append(np.full(lr_steps.size, 2, np.int32))
            vals.append(0.1 * 0.3 ** ((lr_steps - 1) // (steps // 4)))
        val = s[s % 1000 == 0]
        steps_col.append(val)
        keys.append(np.full(val.size, 3, np.int32))
        vals.append(0.35 + 2.0 / (1 + np.exp((val / steps - 0.4) * 40)))
        rec = s[s % every == 0]
        for k, name in enumerate(("grad_norm", "param_norm", "update_norm", "dist_init")):
            steps_col.append(rec)
            keys.append(np.full(rec.size, 4 + k, np.int32))
            base = {"grad_norm": 1.0, "param_norm": 20.0, "update_norm": 0.05, "dist_init": 5.0}[name]
            vals.append(base * (1 + 0.1 * rng.standard_normal(rec.size)) * (1 + rec / steps))
        new = (
            []
            if names_done
            else [
                "loss",
                "accuracy",
                "lr/0",
                "val_loss",
                "grad_norm",
                "param_norm",
                "update_norm",
                "dist_init",
            ]
        )
        names_done = True
        order = np.argsort(np.concatenate(steps_col), kind="stable")
        fmt.append_scalars(
            f, new, np.concatenate(steps_col)[order], np.concatenate(keys)[order], np.concatenate(vals)[order]
        )

        batch = {
            probe: [] for probe in lay
        }  # records between two flushes go in one write, as the writer does
        for step in rec:
            t = step / steps
            a_std = np.where(relu, 1.0, 0.4) * (0.3 + 0.7 * (1 - depth)) * (1 + 0.3 * t)
            a_mean = np.where(relu, 0.5 * a_std, 0.0)
            act = _moments(a_mean, a_std, 64 * 128)
            act["hist"] = _binned(rng, act_centres, a_mean, a_std, SAMPLE)
            act["zero"] = np.where(relu, SAMPLE // 3, 0)
            act["saturated"] = np.where(relu, 0, (SAMPLE * 0.1 * (1 + depth)).astype(np.int64))
            act["dead"] = np.where(relu, (64 * depth * t).astype(np.int64), 0)
            act["dead_persistent"] = act["dead"] // 2
            g_mean = np.repeat(-2.0 - 4 * depth[::-1], 2) - 2 * t  # log10 |g|: vanishing towards the input
            grads = _moments(np.zeros(2 * n_layers), 10**g_mean, 64 * 64)
            grads["hist"] = _binned(rng, g_centres, g_mean, np.full(2 * n_layers, 0.5), SAMPLE)
            grads["zero"] = np.zeros(2 * n_layers, np.int64)
            w_std = np.full(2 * n_layers, 0.1) * (1 + 0.5 * t)
            weights = _moments(np.zeros(2 * n_layers), w_std, 64 * 64)
            weights["hist"] = _binned(rng, w_centres, np.zeros(2 * n_layers), w_std, SAMPLE)
            weights["zero"] = np.zeros(2 * n_layers, np.int64)
            for probe, fields in (("activations", act), ("gradients", grads), ("weights", weights)):
                batch[probe].append(fields)
        if rec.size:
            for probe, records in batch.items():
                fmt.append_records(f, probe, rec, {k: np.stack([r[k] for r in records]) for k in records[0]})
            if first == 1:
                fmt.write_static(f, "activations", {"edges": act_edges, "units": units})
                fmt.write_static(
                    f, "gradients", {"edges": np.broadcast_to(g_edges, (2 * n_layers, g_bins + 1))}
                )
                fmt.write_static(
                    f, "weights", {"edges": np.broadcast_to(w_edges, (2 * n_layers, WEIGHT_BINS + 1))}
                )
        f.flush()
    fmt.mark_closed(f)
    f.close()


def time_plot(path: str, out: str, extra=()):
    """Wall seconds, CPU seconds and peak RSS (MiB) of ``dyntrace plot`` in a child process.

    CPU time is reported too because the wall time depends on what else the machine runs.
    """
    cmd = [sys.executable, "-c", "from dyntrace.cli import main; main()", "plot", path, "-o", out, *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"dyntrace plot failed ({proc.returncode}):\n{proc.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak_mib = after.ru_maxrss / 1024  # KiB on Linux: the largest child so far, i.e. this one
    return wall, cpu, peak_mib, proc.stdout + proc.stderr


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--file", default=None, help="run file to build (or reuse)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the file even if it exists")
    parser.add_argument("--out", default=None, help="folder for the figures (default: a temporary one)")
    parser.add_argument("--only", action="append", default=[], help="time only this figure (repeatable)")
    args = parser.parse_args(argv)
    path = args.file or os.path.join(tempfile.gettempdir(), f"dyntrace_bench_{args.steps}x{args.layers}.h5")
    if args.rebuild or not os.path.exists(path):
        t0 = time.perf_counter()
        build(path, steps=args.steps, n_layers=args.layers, every=args.every)
        print(
            f"built {path}: {args.steps} steps x {args.layers} layers, every {args.every} "
            f"({os.path.getsize(path) / 2**20:.0f} MiB) in {time.perf_counter() - t0:.0f} s"
        )
    out = args.out or tempfile.mkdtemp(prefix="dyntrace_bench_plots_")
    extra = [x for name in args.only for x in ("--only", name)]
    wall, cpu, peak, log = time_plot(path, out, extra)
    n_files = len([n for n in os.listdir(out) if n.endswith(".png")])
    print(log.rstrip())
    print(
        f"dyntrace plot: {wall:.1f} s wall, {cpu:.1f} s CPU, {peak:.0f} MiB peak RSS, {n_files} figures in {out}"
    )


if __name__ == "__main__":
    main()
