"""Record-step cost of intercepting activation functions, on a GPT-2 from transformers.

    python benchmarks/functional.py [--quick] [--clock wall|cpu] [--threads N]
        [--layers N] [--hidden N] [--seq N] [--batch N]

A ``GPT2LMHeadModel`` built from a config (random init, eager attention, nothing downloaded)
trains with three loops side by side on identical copies: plain (no Recorder); recording the
activations probe with module hooks only (``ActivationsProbe(functional=False)``); and with
the function mode on (``ActivationsProbe()``: the attention softmax of every block is a call
site). Every step of the recorded loops is a record step (``every=1``), so the ratios are
record-step costs. Loops run in alternating blocks so that machine load hits them alike;
medians are reported, then the ratio functional / module hooks only, and how many torch calls
the mode's handler saw per record step. ``--clock cpu`` times with ``time.process_time`` (the
process's CPU time), steadier than wall time on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time

import torch

import dyntrace
from dyntrace.probes.activations import ActivationsProbe
from dyntrace.probes.call_sites import _FunctionalMode


def gpt2(layers: int, hidden: int, seq: int, vocab: int):
    import transformers

    transformers.logging.set_verbosity_error()
    config = transformers.GPT2Config(
        n_layer=layers,
        n_embd=hidden,
        n_head=max(1, hidden // 32),
        vocab_size=vocab,
        n_positions=seq,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


def step(model, opt, x, rec=None):
    opt.zero_grad(set_to_none=True)
    loss = model(x, labels=x).loss
    loss.backward()
    opt.step()
    if rec is not None:
        rec.log(loss=loss)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer blocks (a smoke run)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    blocks, block_steps = (2, 2) if args.quick else (6, 4)

    base = gpt2(args.layers, args.hidden, args.seq, args.vocab)
    x = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(1))
    loops = {}
    with tempfile.TemporaryDirectory() as tmp:
        recorders = []
        variants = (
            ("plain", None),
            ("module hooks", ActivationsProbe(functional=False)),
            # the mode on, seeing every call, but no kind to keep (GPT-2 calls no ReLU): its own cost
            ("mode only", ActivationsProbe(functional={"relu"})),
            ("functional", ActivationsProbe()),
        )
        for name, probe in variants:
            model = copy.deepcopy(base)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            rec = None
            if probe is not None:
                rec = dyntrace.Recorder(
                    model, opt, os.path.join(tmp, f"{name}.h5"), every=1, probes=[probe], flush_every=3600
                )
                recorders.append(rec)
            loops[name] = (model, opt, rec, [])
        calls = {"n": 0}
        handler = _FunctionalMode.__torch_function__

        def counting(self, *a, **k):
            calls["n"] += 1
            return handler(self, *a, **k)

        _FunctionalMode.__torch_function__ = counting
        try:
            for model, opt, rec, _ in loops.values():
                for _ in range(2):  # warm-up: the first record fixes histogram ranges and slots
                    step(model, opt, x, rec)
            calls["n"] = 0
            for _ in range(blocks):
                for model, opt, rec, times in loops.values():
                    for _ in range(block_steps):
                        start = clock()
                        step(model, opt, x, rec)
                        times.append(clock() - start)
        finally:
            _FunctionalMode.__torch_function__ = handler
            for rec in recorders:
                rec.close()
        names = dyntrace.open_run(os.path.join(tmp, "functional.h5")).names("activations")

    median = {name: statistics.median(loop[3]) for name, loop in loops.items()}
    sites = [n for n in names if "/" in n]
    print(
        f"GPT-2: {args.layers} layers, hidden {args.hidden}, sequence {args.seq}, batch {args.batch}, "
        f"{torch.get_num_threads()} threads, {args.clock} clock; {blocks} blocks x {block_steps} steps per loop"
    )
    print(
        f"recorded columns: {len(names)} "
        f"({len(sites)} functional call sites: {', '.join(sites[:3])}{', …' if len(sites) > 3 else ''})"
    )
    for name, value in median.items():
        print(f"  {name:13s} median step {value * 1e3:8.2f} ms   x{value / median['plain']:.3f} plain")
    print(
        f"record step, functional / module hooks only: x{median['functional'] / median['module hooks']:.3f} "
        f"(interception alone: x{median['mode only'] / median['module hooks']:.3f})"
    )
    print(f"function-mode handler calls per record step: {calls['n'] / (2 * blocks * block_steps):.0f}")


if __name__ == "__main__":
    main()
