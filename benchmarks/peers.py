"""dyntrace against its peers: per-step cost on the same model, data and schedule, in one run.

    python benchmarks/peers.py [--quick] [--steps N] [--repeats N] [--model mlp256|mlp512]
                               [--optimizer sgd|adam] [--clock wall|cpu] [--threads N]
                               [--variants dyntrace,tensorboard,...]

It times one training step (forward, cross-entropy, backward, optimizer step) of an MLP on
random data made here with torch.randn (784-256-256-10, ReLU, batch 128; --model mlp512:
784-512-512-10, batch 256, benchmarks/overhead.py's MLP), plain and with each tool recording:

  dyntrace           dyntrace.Recorder(model, opt, path, every=N) + rec.log(loss=loss)
  dyntrace-all       the same with probes="all"
  tensorboard        SummaryWriter.add_histogram of every parameter's weight and gradient on
                     record steps, add_scalar of the loss every step
  cockpit            Cockpit with the quantities closest to dyntrace's: Loss, GradNorm,
                     Distance, UpdateSize, GradHist1d
  cockpit-economy    Cockpit's cheapest preset, configuration("economy")

each at every=1 (each step a record step: the cost of recording) and every=10 (one step in ten:
the cost amortised over the schedule). Every variant trains its own copy of the same initial
model. After a warm-up, each variant runs --repeats blocks of --steps steps, each block right
after a block of the plain step, in an order rotated from one repeat to the next, so that load
from elsewhere on the machine hits a variant and its reference alike. Per step, every=1
reports the median step; every=10 the mean over the ten positions of the schedule of the
median step at each position (so a record step counts once in ten, and so does any cost it
leaves to the steps after it, while spikes from other processes do not). Ratios are to the
same figure of the plain blocks paired with the variant's. They are ratios measured side by
side and printed, never asserted. Warnings a tool raised while timed are printed after the
table. Files go to a temporary directory removed at the end.

Background threads (dyntrace's HDF5 writer, TensorBoard's event writer) may finish a block's
work during the next (plain) block; it slows a few of its steps, which the medians discount.

Peers: TensorBoard comes with `pip install tensorboard`. Cockpit and BackPACK, without letting
pip touch the installed torch:

    pip install --no-deps cockpit-for-pytorch backpack-for-pytorch unfoldNd einops json-tricks

(Cockpit also imports numpy, scipy, pandas, matplotlib and seaborn.) Cockpit 1.0.2 imports
pkg_resources, which setuptools >= 81 no longer ships; this script then gives it a stand-in
for the one function it takes from there (its version look-up). If Cockpit cannot be imported
or fails on this torch, one line says why and the other variants are measured.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import importlib.metadata
import io
import itertools
import os
import signal
import statistics
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

import dyntrace

MODELS = {  # name: (layer widths, batch size)
    "mlp256": ((784, 256, 256, 10), 128),
    "mlp512": ((784, 512, 512, 10), 256),  # benchmarks/overhead.py's MLP
}
EVERY = (1, 10)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=1e-2),  # plain SGD: Cockpit's Alpha via BackPACK
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3),
}


def build_mlp(widths) -> nn.Sequential:
    layers = []
    for n_in, n_out in itertools.pairwise(widths):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def train_step(model, opt, x, y) -> torch.Tensor:
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


@dataclass
class Session:
    """One variant attached to its own model: ``step(x, y)`` trains one step, ``close()`` ends it."""

    step: Callable[[torch.Tensor, torch.Tensor], None]
    close: Callable[[], None] = lambda: None


class Unavailable(Exception):
    """A peer that cannot run here; the message says why."""


# -- the variants: each takes (model, optimizer, every, folder) and returns a Session ---------


def plain(model, opt, every, folder):
    return Session(lambda x, y: train_step(model, opt, x, y))


def _dyntrace(model, opt, every, folder, probes):
    rec = dyntrace.Recorder(model, opt, os.path.join(folder, "run.h5"), every=every, probes=probes)

    def step(x, y):
        rec.log(loss=train_step(model, opt, x, y))

    return Session(step, rec.close)


def dyntrace_default(model, opt, every, folder):
    return _dyntrace(model, opt, every, folder, probes=None)


def dyntrace_all(model, opt, every, folder):
    return _dyntrace(model, opt, every, folder, probes="all")


def tensorboard(model, opt, every, folder):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise Unavailable(f"torch.utils.tensorboard cannot be imported ({exc})") from None
    writer = SummaryWriter(folder)
    named = list(model.named_parameters())
    count = 0

    def step(x, y):
        nonlocal count
        loss = train_step(model, opt, x, y)
        writer.add_scalar("loss", loss, count)
        if count % every == 0:
            for name, p in named:
                writer.add_histogram(f"weight/{name}", p, count)
                writer.add_histogram(f"grad/{name}", p.grad, count)
        count += 1

    return Session(step, writer.close)


def _pkg_resources_stand_in() -> types.ModuleType:
    """What cockpit/__init__.py takes from pkg_resources: its version look-up, nothing else."""
    module = types.ModuleType("pkg_resources")

    class DistributionNotFound(Exception):
        pass

    def get_distribution(name):
        try:
            return types.SimpleNamespace(version=importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            raise DistributionNotFound(name) from None

    module.DistributionNotFound, module.get_distribution = DistributionNotFound, get_distribution
    return module


def import_cockpit():
    """(cockpit, backpack), or Unavailable saying why not."""
    stand_in = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources' own deprecation warning
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            sys.modules["pkg_resources"] = _pkg_resources_stand_in()
            stand_in = True
        try:
            import backpack
            import cockpit
            import cockpit.utils.configuration
            import cockpit.utils.schedules
        except Exception as exc:  # noqa: BLE001 - any import failure means "not measured"
            raise Unavailable(f"Cockpit cannot be imported ({type(exc).__name__}: {exc})") from None
        finally:
            if stand_in:
                del sys.modules["pkg_resources"]
    return cockpit, backpack


def _cockpit(model, opt, folder, make_quantities):
    cockpit, backpack = import_cockpit()
    model = backpack.extend(model)
    loss_fn = backpack.extend(nn.CrossEntropyLoss())
    cp = cockpit.Cockpit(model.parameters(), quantities=make_quantities(cockpit))
    count = 0

    def step(x, y):
        nonlocal count
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = loss_fn(out, y)
        losses = F.cross_entropy(out.detach(), y, reduction="none")  # Alpha's loss variance
        info = {"batch_size": x.shape[0], "individual_losses": losses, "loss": loss, "optimizer": opt}
        with cp(count, info=info):
            loss.backward(create_graph=cp.create_graph(count))
        opt.step()
        count += 1

    def close():
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the file's path
            cp.write(os.path.join(folder, "cockpit"))

    return Session(step, close)


COCKPIT_MATCHED = ("Loss", "GradNorm", "Distance", "UpdateSize", "GradHist1d")


def cockpit_matched(model, opt, every, folder):
    def quantities(cockpit):
        schedule = cockpit.utils.schedules.linear(interval=every)
        return [getattr(cockpit.quantities, name)(schedule) for name in COCKPIT_MATCHED]

    return _cockpit(model, opt, folder, quantities)


def cockpit_economy(model, opt, every, folder):
    def quantities(cockpit):
        schedule = cockpit.utils.schedules.linear(interval=every)
        return cockpit.utils.configuration.configuration("economy", track_schedule=schedule)

    return _cockpit(model, opt, folder, quantities)


PLAIN = "forward, backward, optimizer step; nothing recorded (the reference)"
VARIANTS = {  # name: (function, what it records; no paths); each is paired with plain()
    "dyntrace": (
        dyntrace_default,
        (
            "Recorder(model, opt, path, every=N) + rec.log(loss=loss): scalars, activations "
            "(histograms, dead units), gradients and weights (moments, norms, histograms), HDF5"
        ),
    ),
    "dyntrace-all": (
        dyntrace_all,
        'the same with probes="all": + effective step sizes, adaptive state, noise-scale norms',
    ),
    "tensorboard": (
        tensorboard,
        (
            "SummaryWriter: add_histogram of each parameter's weight and gradient every N steps, "
            "add_scalar(loss) every step, event file"
        ),
    ),
    "cockpit": (
        cockpit_matched,
        (
            f"Cockpit {', '.join(COCKPIT_MATCHED)} (a histogram of per-sample gradient elements, "
            "BackPACK BatchGrad), schedule linear(N), JSON at the end"
        ),
    ),
    "cockpit-economy": (
        cockpit_economy,
        (
            'Cockpit configuration("economy"): Alpha, Distance, GradHist1d, GradNorm, InnerTest, '
            "Loss, NormTest, OrthoTest, UpdateSize, schedule linear(N), JSON at the end"
        ),
    ),
}


# -- timing -------------------------------------------------------------------------------------


@dataclass
class Runner:
    variant: str
    every: int
    session: Session
    blocks: list = field(default_factory=list)  # (plain block's step times, this one's), paired
    failed: str | None = None
    warned: dict = field(default_factory=dict)  # warning message: times seen (once a block at most)

    @property
    def label(self):
        return f"{self.variant}@{self.every}"


def timed_block(session, batches, steps, start=0, clock=time.perf_counter):
    """Each step's seconds by ``clock``."""
    times = []
    for i in range(steps):
        x, y = batches[(start + i) % len(batches)]
        t0 = clock()
        session.step(x, y)
        times.append(clock() - t0)
    return times


def run_guarded(runner, fn):
    """Run ``fn()``; a failure switches the runner off (the report says why)."""
    if runner.failed:
        return None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")  # once per place and block: no cost per step
            return fn()
    except Exception as exc:  # noqa: BLE001 - a peer failing must not stop the benchmark
        runner.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None
    finally:
        for w in caught:
            message = f"{w.category.__name__}: {str(w.message).splitlines()[0][:110]}"
            runner.warned[message] = runner.warned.get(message, 0) + 1


def measure(plain_session, runners, batches, *, steps, repeats, warmup, clock):
    """Per repeat, each runner's block right after a plain block (their pair), in an order rotated
    from one repeat to the next, so that load from elsewhere on the machine hits both alike."""
    timed_block(plain_session, batches, warmup)
    for runner in runners:
        run_guarded(runner, functools.partial(timed_block, runner.session, batches, warmup))
    for r in range(repeats):
        shift = r % max(1, len(runners))
        for runner in runners[shift:] + runners[:shift]:
            if runner.failed:
                continue
            base = timed_block(plain_session, batches, steps, r * steps, clock)
            block = functools.partial(timed_block, runner.session, batches, steps, r * steps, clock)
            times = run_guarded(runner, block)
            if times is not None:
                runner.blocks.append((base, times))


def close(runner):
    """End a session (not timed); a failure is reported, the measured times are kept."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runner.session.close()
    except Exception as exc:  # noqa: BLE001
        print(f"{runner.label}: closing failed ({type(exc).__name__}: {exc})", flush=True)


def build_runners(names, model0, make_opt, folder):
    runners, unavailable = [], {}  # reason: names of the variants it stops
    for name in names:
        fn, _ = VARIANTS[name]
        for every in EVERY:
            model = copy.deepcopy(model0)
            sub = os.path.join(folder, f"{name}-{every}")
            os.makedirs(sub)
            try:
                session = fn(model, make_opt(model), every, sub)
            except Unavailable as exc:
                unavailable.setdefault(str(exc), []).append(name)
                break
            except Exception as exc:  # noqa: BLE001
                print(f"{name}@{every}: not measured, setting up failed ({type(exc).__name__}: {exc})")
                continue
            runners.append(Runner(name, every, session))
    for reason, stopped in unavailable.items():
        print(f"{', '.join(stopped)}: not measured, {reason}", flush=True)
    return runners


def typical_step(blocks, period):
    """Seconds: the mean, over the ``period`` positions of the schedule, of the median step at
    that position, pooled over the blocks (each starts at the same position). Robust to spikes
    from other processes, yet it keeps the record step's cost and any cost it leaves to the
    steps after it."""
    at = [[] for _ in range(period)]
    for times in blocks:
        for i, t in enumerate(times):
            at[i % period].append(t)
    return statistics.fmean(statistics.median(ts) for ts in at)


def summarise(runner):
    """(ms, ratio to the plain blocks run just before this runner's blocks)."""
    step = typical_step([times for _, times in runner.blocks], runner.every)
    return 1e3 * step, step / typical_step([base for base, _ in runner.blocks], 1)


def report(runners, names):
    failures = {}  # (variant, reason): the every= values it stopped
    for r in runners:
        if r.failed:
            failures.setdefault((r.variant, r.failed), []).append(str(r.every))
    for (variant, reason), everies in failures.items():
        print(f"{variant} (every={', '.join(everies)}): failed while running, not measured ({reason})")
    plain_blocks = [base for r in runners for base, _ in r.blocks]
    if not plain_blocks:
        print("\nno variant was measured")
        return
    print(f"\n{'variant':<16} {'every=1 ms':>11} {'ratio':>8}   {'every=10 ms':>11} {'ratio':>8}")
    plain_ms = 1e3 * typical_step(plain_blocks, 1)
    print(f"{'plain':<16} {plain_ms:>11.2f} {1:>7.2f}x   {plain_ms:>11.2f} {1:>7.2f}x")
    for name in names:
        cells = []
        for every in EVERY:
            runner = next((r for r in runners if (r.variant, r.every) == (name, every)), None)
            if runner is None or runner.failed or not runner.blocks:
                cells.append(f"{'-':>11} {'-':>8}")
            else:
                cells.append("{:>11.2f} {:>7.2f}x".format(*summarise(runner)))
        print(f"{name:<16} {cells[0]}   {cells[1]}")
    print(
        "\nms: median step; at every=10 the mean over the ten positions of the schedule of the median\n"
        "step at that position (the record step and the nine after it). Ratio: to the same figure of\n"
        "the plain blocks run just before that variant's blocks. Plain: median of all its steps.\n"
    )
    print(f"  {'plain':<16} {PLAIN}")
    for name in names:
        print(f"  {name:<16} {VARIANTS[name][1]}")
    notes = [(r.label, m, n) for r in runners for m, n in r.warned.items()]
    if notes:
        print("\nwarnings while timed (variant@every, blocks with it):")
        for label, message, n in notes:
            print(f"  {label}: {message} ({n})")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=MODELS, default="mlp256")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    parser.add_argument("--steps", type=int, default=40, help="steps of a block (a multiple of 10)")
    parser.add_argument("--repeats", type=int, default=5, help="blocks of each, each after a plain block")
    parser.add_argument(
        "--clock",
        choices=CLOCKS,
        default="wall",
        help="wall (default) or cpu: this process's CPU time, background threads included",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20-step blocks, 2 repeats")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    args = parser.parse_args(argv)
    steps, repeats = (20, 2) if args.quick else (args.steps, args.repeats)
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    if steps <= 0 or steps % max(EVERY) or repeats <= 0:
        raise SystemExit(f"--steps must be a positive multiple of {max(EVERY)}, --repeats positive")
    names = [n for n in args.variants.split(",") if n and n != "plain"]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]!r}; valid: {', '.join(VARIANTS)}")

    widths, batch = MODELS[args.model]
    torch.manual_seed(0)
    model0 = build_mlp(widths)
    batches = [(torch.randn(batch, widths[0]), torch.randint(0, widths[-1], (batch,))) for _ in range(4)]

    def make_opt(model):
        return OPTIMIZERS[args.optimizer](model.parameters())

    warmup = 10 if args.quick else 20  # covers a record step at every=10; fixes histogram ranges

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still removes the folder
    start = time.perf_counter()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock; "
        f"{args.model} {'-'.join(map(str, widths))} (ReLU), batch {batch}, {args.optimizer}; "
        f"{repeats} interleaved blocks of {steps} steps per variant, {warmup} warm-up steps; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="dyntrace-peers-") as folder:
        model = copy.deepcopy(model0)
        reference = plain(model, make_opt(model), 1, folder)
        runners = build_runners(names, model0, make_opt, folder)
        try:
            measure(reference, runners, batches, steps=steps, repeats=repeats, warmup=warmup, clock=clock)
        finally:
            for runner in runners:
                close(runner)
        report(runners, names)
    print(f"\ntook {time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
