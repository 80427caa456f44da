"""Damaged run files through every reading command: counts of hangs, tracebacks and wrong exits.

The fuzzer of ``tests/core/fuzzing.py`` at a larger size than the suite runs (which is 60
variants a kind, plot and compare on one in six): here every variant goes through ``dyntrace
info``, ``info --json``, ``plot`` (every figure) and ``compare``, in-process in worker
processes with a deadline per variant.

    python benchmarks/fuzz_files.py                   # 60 variants of each of 9 kinds: 540
    python benchmarks/fuzz_files.py --per-kind 120 --workers 2 --seed 7

Prints one row per kind: variants, valid ones (byte damage that hit unused bytes, by the
oracle), hangs, tracebacks, exit 0 on an invalid file (without a note), exit ≠ 0 on a valid
file, exit 0 on an invalid file with a note (an old-format file read up to its first bad
row), and exit-0 counts per command; then every variant with a problem. Exits 1 if any.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fuzzing():
    spec = importlib.util.spec_from_file_location(
        "fuzzing", os.path.join(ROOT, "tests", "core", "fuzzing.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzzing"] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--per-kind", type=int, default=60, help="variants of each kind (default 60: 540 in all)"
    )
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--deadline", type=float, default=120.0, help="seconds a variant may take before it is a hang"
    )
    parser.add_argument(
        "--folder", default=None, help="where the bases and variants go (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    fuzzing = _fuzzing()
    folder = args.folder or tempfile.mkdtemp(prefix="dyntrace_fuzz_")
    t0 = time.perf_counter()
    bases = fuzzing.make_bases(os.path.join(folder, "bases"))
    variants = fuzzing.make_variants(bases, os.path.join(folder, "variants"), args.per_kind, args.seed)
    print(
        f"{len(variants)} variants of {len(fuzzing.KINDS)} kinds from a closed and a killed run "
        f"({os.path.getsize(bases['closed'])} and {os.path.getsize(bases['killed'])} bytes) in {folder}",
        flush=True,
    )

    def progress(done, total, outcome):
        if done % 50 == 0 or done == total:
            print(f"  {done}/{total} ({time.perf_counter() - t0:.0f} s)", flush=True)

    outcomes = fuzzing.run(
        variants, bases=bases, workers=args.workers, deadline=args.deadline, progress=progress
    )
    table = fuzzing.summary(outcomes)
    columns = [
        "variants",
        "valid",
        "hangs",
        "tracebacks",
        "exit0_invalid",
        "rejected_valid",
        "noted",
        *(f"exit0_{c}" for c in fuzzing.COMMANDS),
    ]
    print(f"\n{'kind':<11}" + "".join(f"{c:>15}" for c in columns))
    totals = {c: 0 for c in columns}
    for kind in fuzzing.KINDS:
        row = table[kind]
        print(f"{kind:<11}" + "".join(f"{row[c]:>15}" for c in columns))
        for c in columns:
            totals[c] += row[c]
    print(f"{'all':<11}" + "".join(f"{totals[c]:>15}" for c in columns))
    seconds = [r.get("seconds", 0.0) for o in outcomes for r in o.results.values()]
    print(
        f"\n{len(seconds)} command runs, longest {max(seconds, default=0):.1f} s; "
        f"{time.perf_counter() - t0:.0f} s in all with {args.workers} workers"
    )
    bad = [o for o in outcomes if o.problems]
    for o in bad:
        print(f"PROBLEM {o.variant.id} ({o.variant.what}): {'; '.join(o.problems)}")
    print("no problems" if not bad else f"{len(bad)} variants with problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
