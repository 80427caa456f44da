"""A record step of this working tree against one of an earlier revision, in one process.

    python benchmarks/ab.py REV [--models mlp,cnn,tiny,mlp:all,...] [--steps N]

Between two processes the plain step of this shared 2-core machine moves by 10-20 %, more
than most changes to the record path are worth; here three identical models train side by
side in one process, step by step in alternating order: one plain, one recorded by the
dyntrace of revision REV (extracted with ``git archive`` and imported as ``dyntrace_rev``),
one by this working tree's, every step recorded (every=1). Printed: the median plain step
and each recorder's median extra time a record step. ``model:all`` records every probe
(Adam); ``model`` the default probes (SGD). Models are those of ``overhead.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import overhead  # noqa: E402  (the models and the training step)

import dyntrace  # noqa: E402


def import_revision(rev: str, where: str):
    """dyntrace as it was at ``rev``, importable as ``dyntrace_rev`` from ``where``."""
    archive = subprocess.run(
        ["git", "-C", os.path.dirname(HERE), "archive", rev, "dyntrace"], capture_output=True, check=False
    )
    if archive.returncode:
        raise SystemExit(f"git archive {rev}: {archive.stderr.decode().strip()}")
    path = os.path.join(where, "archive.tar")
    with open(path, "wb") as f:
        f.write(archive.stdout)
    with tarfile.open(path) as tar:
        tar.extractall(where, filter="data")
    root = os.path.join(where, "dyntrace_rev")
    os.rename(os.path.join(where, "dyntrace"), root)
    pattern = re.compile(r"\bdyntrace(?=[. ]|\n|$)")  # module paths only, not file or group names
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                file = os.path.join(folder, name)
                with open(file, encoding="utf-8") as f:
                    text = f.read()
                lines = [  # imports, and module paths in strings ("dyntrace.catalog.inits")
                    pattern.sub("dyntrace_rev", line) if re.match(r"\s*(from|import) ", line) else line
                    for line in re.sub(r"([\"'])dyntrace\.", r"\1dyntrace_rev.", text).split("\n")
                ]
                with open(file, "w", encoding="utf-8") as f:
                    f.write("\n".join(lines))
    sys.path.insert(0, where)
    import dyntrace_rev

    return dyntrace_rev


def compare(old, model_name: str, probes, steps: int):
    torch.manual_seed(0)
    model, shape = overhead.MODELS[model_name]()
    models = [copy.deepcopy(model) for _ in range(3)]
    optimizer = torch.optim.SGD if probes is None else torch.optim.Adam
    opts = [optimizer(m.parameters(), lr=1e-3) for m in models]
    x, y = overhead.batch_for(shape, torch.device("cpu"))
    times = {"plain": [], "rev": [], "tree": []}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        recorders = {
            "rev": stack.enter_context(
                old.Recorder(models[1], opts[1], os.path.join(tmp, "a.h5"), every=1, probes=probes)
            ),
            "tree": stack.enter_context(
                dyntrace.Recorder(models[2], opts[2], os.path.join(tmp, "b.h5"), every=1, probes=probes)
            ),
        }
        order = [("plain", 0), ("rev", 1), ("tree", 2)]

        def step(label, k):
            start = time.perf_counter()
            overhead.train_step(models[k], opts[k], x, y, recorders.get(label))
            return time.perf_counter() - start

        for _ in range(5):
            for label, k in order:
                step(label, k)
        for i in range(steps):
            for label, k in order if i % 2 else order[::-1]:
                times[label].append(step(label, k))
    plain = statistics.median(times["plain"])
    return plain, {label: statistics.median(times[label]) - plain for label in ("rev", "tree")}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rev", help="a git revision of this repository (e.g. HEAD~3, a commit)")
    parser.add_argument("--models", default="mlp,cnn,tiny")
    parser.add_argument("--steps", type=int, default=250)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the recorders' one-time warnings would interleave with the table
    with tempfile.TemporaryDirectory() as where:
        old = import_revision(args.rev, where)
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps} steps each, alternating"
        )
        print(
            f"{'model':<12} {'plain ms':>9} {'extra @' + args.rev[:10]:>20} {'extra, tree':>12} {'change':>8}"
        )
        for spec in args.models.split(","):
            name, _, probes = spec.partition(":")
            if name not in overhead.MODELS:
                raise SystemExit(f"unknown model {name!r}; valid: {', '.join(overhead.MODELS)}")
            plain, extra = compare(old, name, probes or None, args.steps)
            change = extra["tree"] - extra["rev"]
            print(
                f"{spec:<12} {plain * 1e3:9.3f} {extra['rev'] * 1e3:17.3f} ms {extra['tree'] * 1e3:9.3f} ms "
                f"{change * 1e3:+7.3f}"
            )


if __name__ == "__main__":
    main()
