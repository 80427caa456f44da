"""Recorder overhead, measured side by side in one run (plain loop vs recorded loop).

    python benchmarks/overhead.py [--quick] [--steps N] [--device cpu|cuda] [--models mlp,cnn,...]
    python benchmarks/overhead.py --profile      # where a record step's time goes, stage by stage,
                                                 # how many operations it dispatches, and what the
                                                 # bare passes of exact moments cost

Models: an MLP 784-512-512-10 (batch 256), "tiny" (the MLP's layout 16 wide, batch 8: its
extra time is a record step's fixed cost), a small CNN (1x16x16 inputs, batch 128), a
ResNet-18-sized CNN ("resnet18": torchvision's ResNet-18 layout, 11.2M parameters, 3x32x32
inputs, batch 128 on a GPU, 16 on a CPU) and a small GPT-style transformer ("gpt": 6 blocks x
512, 8 heads, sequence 256, batch 8; bf16 autocast on CUDA). On the CPU the default is mlp,cnn;
on CUDA mlp, cnn, resnet18 and gpt. For each it prints the ratio of recorded to plain step
time for non-record steps, record steps with the default probes and with every probe, and
amortised at every=10; on CUDA also the host-device synchronisations per plain, non-record
and record step, counted with torch.cuda.set_sync_debug_mode("warn"). Then host memory
growth over a long recorded run and bytes per record. Plain and recorded steps run in
alternating blocks on identical models so that machine load hits both alike; medians are
reported (CUDA steps end with a synchronize, outside the counted window).

Budget (DESIGN.md): non-record <= 1.02x, record <= 1.3x (default probes), <= 1.6x (all
probes), amortised <= 1.05x at every=10 (<= 1.03x on a GPU), flat memory, one sync per
record step on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import tempfile
import time
import warnings

import h5py
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import dyntrace


def mlp():
    return nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    ), (256, 784)


def tiny():
    """The MLP's layout 16 wide, batch 8: almost no data, so a record step's extra time is its
    fixed cost (Python and the per-operation dispatch of each summary), whatever the model size."""
    return nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 10)), (
        8,
        16,
    )


def cnn():
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )
    return model, (128, 1, 16, 16)


class _Block(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with BatchNorm and a shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18(batch=128):
    """ResNet-18's layout (torchvision has no build here): [2, 2, 2, 2] basic blocks, 64-512 channels."""
    layers, cin = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()], 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers), (batch, 3, 32, 32)


class _GPTBlock(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        n = x.shape[1]
        mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """A small GPT-style language model: token + position embeddings, pre-LN blocks, tied head."""

    def __init__(self, vocab=1024, width=512, depth=6, heads=8, length=256):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(length, width)
        self.blocks = nn.Sequential(*[_GPTBlock(width, heads) for _ in range(depth)])
        self.ln = nn.LayerNorm(width)

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.blocks(self.tokens(idx) + self.positions(pos))
        return self.ln(x) @ self.tokens.weight.T  # (batch, sequence, vocab)


def gpt(batch=8):
    return GPT(), ("tokens", batch, 256, 1024)


MODELS = {"mlp": mlp, "cnn": cnn, "resnet18": resnet18, "gpt": gpt, "tiny": tiny}
DEVICE = torch.device("cpu")
AUTOCAST = False  # bf16 autocast of the transformer on CUDA


def batch_for(shape, device):
    if shape[0] == "tokens":
        _, batch, length, vocab = shape
        idx = torch.randint(0, vocab, (batch, length + 1), device=device)
        return idx[:, :-1], idx[:, 1:]
    return torch.randn(*shape, device=device), torch.randint(0, 10, (shape[0],), device=device)


def train_step(model, opt, x, y, rec=None):
    opt.zero_grad(set_to_none=True)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if AUTOCAST and x.dtype == torch.long
        else contextlib.nullcontext()
    )
    with autocast:
        out = model(x)
        loss = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]).float(), y.reshape(-1))
    loss.backward()
    opt.step()
    if rec is not None:
        rec.log(loss=loss)


CLOCK = time.perf_counter  # --clock cpu: time.process_time (all threads of this process)


def timed(fn) -> float:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    start = CLOCK()
    fn()
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return CLOCK() - start


def syncs(fn) -> int:
    """Host-device synchronisations made by ``fn`` (CUDA only): warnings of the sync debug mode."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def compare(build, optimizer_cls, probes, *, blocks, block_steps, every=10):
    """Median plain step, median non-record and record step, and amortised ratio."""
    torch.manual_seed(0)
    model, shape = build()
    model = model.to(DEVICE)
    plain_model = copy.deepcopy(model)
    opt = optimizer_cls(model.parameters(), lr=1e-3)
    plain_opt = optimizer_cls(plain_model.parameters(), lr=1e-3)
    x, y = batch_for(shape, DEVICE)
    for _ in range(5):
        train_step(plain_model, plain_opt, x, y)
    plain, non_record, record = [], [], []
    plain_total = recorded_total = 0.0
    counts = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        dyntrace.Recorder(model, opt, os.path.join(tmp, "run.h5"), every=every, probes=probes) as rec,
    ):
        for _ in range(3):
            train_step(model, opt, x, y, rec)  # warm-up: first record fixes histogram ranges
        if DEVICE.type == "cuda":
            counts["plain"] = syncs(lambda: train_step(plain_model, plain_opt, x, y))
            while rec.schedule(rec.step + 1):
                train_step(model, opt, x, y, rec)
            counts["non_record"] = syncs(lambda: train_step(model, opt, x, y, rec))
            while not rec.schedule(rec.step + 1):
                train_step(model, opt, x, y, rec)
            counts["record"] = syncs(lambda: train_step(model, opt, x, y, rec))
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
        "syncs": counts,
    }


def profile(build, optimizer_cls, probes, *, steps=40):
    """Where a record step's time goes: each probe method and recorder stage, timed in place
    (every step recorded), against a plain step of the same model. Returns rows (stage, ms)."""
    import collections

    from dyntrace.probes.activations import ActivationsProbe

    torch.manual_seed(0)
    model, shape = build()
    model = model.to(DEVICE)
    plain_model = copy.deepcopy(model)
    opt, plain_opt = (
        optimizer_cls(model.parameters(), lr=1e-3),
        optimizer_cls(plain_model.parameters(), lr=1e-3),
    )
    x, y = batch_for(shape, DEVICE)
    spent = collections.defaultdict(float)

    def wrap(obj, name, label):
        inner = getattr(obj, name)

        def timed_call(*args, **kwargs):
            start = CLOCK()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] += CLOCK() - start

        setattr(obj, name, timed_call)

    with (
        tempfile.TemporaryDirectory() as tmp,
        dyntrace.Recorder(model, opt, os.path.join(tmp, "p.h5"), every=1, probes=probes) as rec,
    ):
        for probe in rec._pipeline.probes:
            for method in ("before_step", "after_step", "collect", "static", "check"):
                wrap(probe, method, f"{probe.name}.{method}")
            if isinstance(probe, ActivationsProbe):
                wrap(probe, "_observe", "activations: forward hooks (moments, samples)")
        wrap(rec._pipeline, "transfer", "transfer to host + enqueue for the writer")
        wrap(rec._ctx, "take_snapshot", "snapshot of the weights")
        wrap(rec, "_arm_if_scheduled", "arming (hooks attached, compile stance)")
        wrap(rec, "_disarm", "disarming")
        for _ in range(5):
            train_step(model, opt, x, y, rec)
            train_step(plain_model, plain_opt, x, y)
        spent.clear()
        recorded = [timed(lambda: train_step(model, opt, x, y, rec)) for _ in range(steps)]
        with _CountOps() as ops:
            train_step(model, opt, x, y, rec)
        spent.clear()
    plain = [timed(lambda: train_step(plain_model, plain_opt, x, y)) for _ in range(steps)]
    with _CountOps() as plain_ops:
        train_step(plain_model, plain_opt, x, y)
    base, total = statistics.median(plain), statistics.median(recorded)
    rows = sorted(((k, 1e3 * v / steps) for k, v in spent.items() if v > 0), key=lambda r: -r[1])
    accounted = sum(ms for _, ms in rows)
    rows.append(("other (hook dispatch, log, …)", max(0.0, 1e3 * (total - base) - accounted)))
    return 1e3 * base, 1e3 * total, rows, ops.count - plain_ops.count


class _CountOps(TorchDispatchMode):
    """Counts the operations dispatched to aten while active (views and no-op casts included):
    each costs microseconds of Python and dispatch whatever its size."""

    count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def floor(build, optimizer_cls, *, steps=60):
    """What exact moments cost without any of the recorder's logic: the bare passes over the
    weights and gradients that the default probes cannot skip (per tensor aminmax, sum and dot
    of θ and of g, the snapshot copy, the in-place difference and three fused norms), timed
    in place in the training step against a plain step of the same model (alternating).
    No histogram, no activation, no transfer, no Python bookkeeping. Returns ms per step."""
    torch.manual_seed(0)
    model, shape = build()
    model = model.to(DEVICE)
    opt = optimizer_cls(model.parameters(), lr=1e-3)
    x, y = batch_for(shape, DEVICE)
    params = [p.detach() for p in model.parameters()]

    def moments(tensors):
        return torch.stack(
            [r for t in tensors for r in (*torch.aminmax(t), t.sum(), torch.dot(t.view(-1), t.view(-1)))]
        )

    def before(_opt, _args, _kwargs):
        grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
        state["snap"] = torch._foreach_mul(params, 1)
        state["out"] = [moments(grads), moments(params), torch._foreach_norm(grads)]

    def after(_opt, _args, _kwargs):
        torch._foreach_sub_(state["snap"], params)
        state["out"] += [torch._foreach_norm(state.pop("snap")), torch._foreach_norm(params)]

    state = {}
    bare, plain = [], []
    for _ in range(5):
        train_step(model, opt, x, y)
    for _ in range(steps):
        plain.append(timed(lambda: train_step(model, opt, x, y)))
        handles = [opt.register_step_pre_hook(before), opt.register_step_post_hook(after)]
        bare.append(timed(lambda: train_step(model, opt, x, y)))
        for handle in handles:
            handle.remove()
    return 1e3 * (statistics.median(bare) - statistics.median(plain))


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
            per_probe = {
                name: sum(ds.id.get_storage_size() for ds in group.values() if isinstance(ds, h5py.Dataset))
                for name, group in f["probes"].items()
            }
            scalars = sum(ds.id.get_storage_size() for ds in f["scalars"].values())
    return marks, size, records, per_probe, scalars


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer blocks (a smoke run)")
    parser.add_argument("--steps", type=int, default=5000, help="steps of the memory run")
    parser.add_argument(
        "--ddp", action="store_true", help="measure under DDP on two CPU ranks instead (overhead_ddp.py)"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: process CPU time, writer thread included (robust on a shared machine)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--profile", action="store_true", help="per-stage breakdown of a record step instead of the ratios"
    )
    parser.add_argument(
        "--models",
        default=None,
        help=f"comma-separated, of {', '.join(MODELS)} (default: mlp,cnn on a CPU, all on CUDA)",
    )
    args = parser.parse_args()
    global CLOCK, DEVICE, AUTOCAST
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as users train
        AUTOCAST = True
    names = (args.models or ("mlp,cnn" if DEVICE.type == "cpu" else "mlp,cnn,resnet18,gpt")).split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model {unknown[0]!r}; valid: {', '.join(MODELS)}")
    if args.ddp:
        import overhead_ddp

        overhead_ddp.main(["--quick"] if args.quick else [])
        return
    blocks, block_steps = (3, 20) if args.quick else (12, 40)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        for model_name in names:
            build = MODELS[model_name]
            for label, opt_cls, probes in (
                ("default", torch.optim.SGD, None),
                ("all", torch.optim.Adam, "all"),
            ):
                plain, total, rows, ops = profile(build, opt_cls, probes)
                print(
                    f"\n{model_name}, {label} probes: plain step {plain:.2f} ms, "
                    f"record step {total:.2f} ms ({total / plain:.2f}x); "
                    f"{ops} operations dispatched beyond the plain step's"
                )
                for stage, ms in rows:
                    print(f"  {stage:<44} {ms:7.3f} ms")
            print(
                f"  the bare passes of exact moments and norms alone (no histogram, activation, transfer "
                f"or bookkeeping): {floor(build, torch.optim.SGD):.2f} ms a step"
            )
        return
    where = torch.cuda.get_device_name() if DEVICE.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"torch {torch.__version__}, {DEVICE} ({where}), {args.clock} clock; "
        f"medians over {blocks}x{block_steps} steps each\n"
    )
    sync_head = f" {'syncs plain/non-rec/rec':>24}" if DEVICE.type == "cuda" else ""
    print(
        f"{'model':<9} {'optimizer':<6} {'probes':<8} {'plain ms':>9} "
        f"{'non-record':>11} {'record':>8} {'amortised@10':>13}{sync_head}"
    )
    for model_name in names:
        build = MODELS[model_name]
        if DEVICE.type == "cpu" and model_name in ("resnet18", "gpt"):
            build = (lambda b: lambda: b(16 if b is resnet18 else 2))(build)  # CPU-sized batches
        for opt_name, opt_cls, probes in (("sgd", torch.optim.SGD, None), ("adam", torch.optim.Adam, "all")):
            r = compare(build, opt_cls, probes, blocks=blocks, block_steps=block_steps)
            label = "default" if probes is None else probes
            sync = r["syncs"]
            sync_cols = f" {sync['plain']:>10}/{sync['non_record']}/{sync['record']:<10}" if sync else ""
            print(
                f"{model_name:<9} {opt_name:<6} {label:<8} {r['plain_ms']:>9.2f} "
                f"{r['non_record']:>10.3f}x {r['record']:>7.3f}x {r['amortised']:>12.3f}x{sync_cols}"
            )
    steps = 1000 if args.quick else args.steps
    marks, size, records, per_probe, scalars = memory_and_size(steps)
    print(
        f"\nmemory over {steps} recorded steps (every=10, all probes): "
        f"RSS {marks[0]:.1f} MB at step {steps // 5}, "
        f"{marks[1]:.1f} MB at the end ({marks[1] - marks[0]:+.1f} MB)"
    )
    print(
        f"file: {size / 1e6:.2f} MB for {records} records and {steps} steps = {size / records / 1e3:.1f} kB per record"
    )
    parts = ", ".join(f"{k} {v / records / 1e3:.1f} kB" for k, v in per_probe.items())
    print(f"  stored per record: {parts}; scalar log {scalars / steps:.1f} B per step")


if __name__ == "__main__":
    main()
