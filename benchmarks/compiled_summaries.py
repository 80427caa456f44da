"""Would a torch.compile'd summary pay? Eager vs compiled summarise_tensors, side by side.

    python benchmarks/compiled_summaries.py [--device cpu|cuda] [--models mlp,cnn,tiny,...]

For each model of ``overhead.py`` it takes the parameters and a gradient of one training step
and times, alternating, the weights probe's summary (data-decided ranges) and the gradients
probe's (log10 |g|) done eagerly and by ``torch.compile`` of the same function (inductor,
``dynamic=False``), after the compile (its seconds are printed). The eager calls run first,
so the cached constants exist before tracing and no guard on them fails later. Also printed:
the largest difference between the two results (float reassociation only).

Measured on the 2-core CPU of 2026-12-01 (see the closing note of issue 15): standalone,
compiled takes 0.4-0.6x the eager time (MLP weights 467 vs 1109 us, gradients 312 vs 502),
but inside the training loop (caches cold, the compiled call run under the default stance
although record steps force eager) a record step gained only 0.13 ms (tiny) and 0.31 ms (MLP),
about 5 % of the MLP's step, for 2-8 s of compile per shape set and a recompile limit shared by
every model of a process; so the recorder has no compiled path. On a GPU, where an eager
summary is ~100 small kernel launches, the balance may differ: run this there.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402  (the models)

from dyntrace.summaries import DEFAULT_HIST_SAMPLE, log10_magnitude_edges, summarise_tensors  # noqa: E402


def median_time(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls (``overhead.timed``: synchronised on CUDA)."""
    return statistics.median(overhead.timed(fn) for _ in range(repeats))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="tiny,mlp,cnn")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    device = overhead.DEVICE = torch.device(args.device)  # overhead.timed synchronises on it
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    names = args.models.split(",")
    unknown = [n for n in names if n not in overhead.MODELS]
    if unknown:
        raise SystemExit(f"unknown model {unknown[0]!r}; valid: {', '.join(overhead.MODELS)}")
    summaries = {
        "weights": functools.partial(
            summarise_tensors, edges=(None, None, 64), cap=DEFAULT_HIST_SAMPLE, magnitude=False
        ),
        "gradients": functools.partial(
            summarise_tensors, edges=log10_magnitude_edges(-12, 4, 5), cap=DEFAULT_HIST_SAMPLE, magnitude=True
        ),
    }
    print(f"torch {torch.__version__}, {device}; medians of {args.repeats} calls, alternating")
    head = ("model", "summary", "eager us", "compiled us", "ratio", "compile s", "max diff")
    print(f"{head[0]:<9} {head[1]:<10} {head[2]:>9} {head[3]:>12} {head[4]:>6} {head[5]:>10} {head[6]:>9}")
    for name in names:
        torch.manual_seed(0)
        model, shape = overhead.MODELS[name]()
        model = model.to(device)
        x, y = overhead.batch_for(shape, device)
        overhead.train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), x, y)  # gradients stay
        tensors = {
            "weights": [p.detach() for p in model.parameters()],
            "gradients": [p.grad for p in model.parameters()],
        }
        for label, fn in summaries.items():
            args_ = tensors[label]
            eager = fn(args_)  # fills the constant cache before tracing
            compiled_fn = torch.compile(fn, dynamic=False)
            compiled = []
            compile_s = overhead.timed(lambda: compiled.append(compiled_fn(args_)))
            compiled = compiled[0]
            diff = (compiled - eager).abs().nan_to_num(0.0).max().item()
            e = c = 0.0
            for _ in range(4):  # alternating blocks: machine load hits both alike
                e += median_time(lambda: fn(args_), args.repeats // 4)
                c += median_time(lambda: compiled_fn(args_), args.repeats // 4)
            times = f"{e / 4 * 1e6:9.0f} {c / 4 * 1e6:12.0f} {c / e:6.2f}"
            print(f"{name:<9} {label:<10} {times} {compile_s:10.1f} {diff:9.2e}")


if __name__ == "__main__":
    main()
