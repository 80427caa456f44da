"""SIGKILL a recorded run of a 10M-parameter model at random moments; measure what was lost.

Each round starts the run of ``tests/core/test_writer_faults.py`` (Linear 3136→3136→64,
10.04M parameters, default probes every 5 steps, ``rec.log(loss=…)`` every step) in a child
process, kills it at a random moment, opens the file and compares it with the child's own
log of when each step was logged. The documented bound: everything logged more than
``flush_every`` plus the time of one write before the kill is in the file.

    python benchmarks/kill_bound.py                    # 10 kills, flush_every 2 s
    python benchmarks/kill_bound.py --kills 20 --flush-every 0.5 --seed 3

Prints per kill: when it came, the bound (flush_every + the longest write the child
reported), the age of the newest step lost (kill time − when the first missing step was
logged: what the file was behind), and how many steps logged before the bound were missing
(must be 0). Exits 1 if any were.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _faults():
    spec = importlib.util.spec_from_file_location(
        "test_writer_faults", os.path.join(ROOT, "tests", "core", "test_writer_faults.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--flush-every", type=float, default=2.0)
    parser.add_argument(
        "--earliest", type=float, default=2.0, help="seconds after the first step (default 2)"
    )
    parser.add_argument(
        "--latest", type=float, default=12.0, help="seconds after the first step (default 12)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    faults = _faults()
    rng = random.Random(args.seed)
    folder = tempfile.mkdtemp(prefix="dyntrace_kill_")
    failures, worst_age, worst_write = 0, 0.0, 0.0
    print(
        f"{'kill':>4} {'at (s)':>7} {'steps':>6} {'kept':>5} {'bound (s)':>10} {'lost age (s)':>13} {'missing':>8}"
    )
    for i in range(args.kills):
        after = rng.uniform(args.earliest, args.latest)
        killed_at, log, kept, _ = faults.kill_at_random(
            os.path.join(folder, f"run{i}.h5"), flush_every=args.flush_every, after=after
        )
        longest = max((w for _, _, w in log), default=0.0)
        bound = args.flush_every + longest
        lost = [(step, at) for step, at, _ in log if step not in kept]
        age = killed_at - min(at for _, at in lost) if lost else 0.0
        missing = [step for step, at in lost if at <= killed_at - bound]
        failures += bool(missing)
        worst_age, worst_write = max(worst_age, age), max(worst_write, longest)
        print(
            f"{i:>4} {after:>7.2f} {len(log):>6} {len(kept):>5} {bound:>10.3f} {age:>13.3f} {len(missing):>8}"
        )
    print(
        f"\nworst: the file was {worst_age:.3f} s behind at a kill (bound: flush_every {args.flush_every} s "
        f"+ one write, longest write {worst_write:.3f} s); {failures} of {args.kills} kills lost a step logged "
        "before the bound"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
