"""A run file as TensorBoard event files: scalars every step, histograms at record steps.

Written with ``tensorboard.summary.writer.event_file_writer.EventFileWriter`` (the writer
torch's ``SummaryWriter`` uses inside) and TensorBoard's protocol buffers, so neither torch nor
TensorFlow is needed, and read back by TensorBoard's own loader (``EventAccumulator``):

- every logged scalar (``loss``, ``lr/0``, ``val_loss``, ``grad_norm``, …) as a scalar of the
  same tag, at every step it was logged (``simple_value``, float32);
- every histogram a probe recorded (activations, gradients, weights, step sizes, …) as a
  histogram tagged ``<probe>/<tensor>`` at each record step. Buckets are the probe's own bins
  (those of the record, for a probe whose range follows the data):
  bucket ``k`` holds the values in ``[edges[k], edges[k+1])`` with upper limit ``edges[k+1]``;
  values below the first edge make one bucket ending at ``edges[0]`` and values above the last
  one bucket ending one bin width further (only when there are any). Magnitude histograms
  (gradients, step sizes, adaptive rates: ``hist_scale`` "log10_abs") are histograms of
  log10 |x|, their exact zeros counted with the values below the first edge; the tag's
  description says so. ``sum`` and ``sum_squares`` are computed from the bucket centres.

Wall times are the run's creation time (the file does not keep one per step).
"""

from __future__ import annotations

import glob
import os
from datetime import datetime

import numpy as np

from dyntrace.errors import DyntraceError

__all__ = ["to_tensorboard", "SUFFIX"]

#: Suffix of the event files this module writes; an export replaces the earlier ones.
SUFFIX = ".dyntrace"


def _tensorboard():
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise DyntraceError(
            "exporting to TensorBoard needs the tensorboard package: pip install 'dyntrace[tensorboard]'"
        ) from None
    return EventFileWriter, event_pb2, summary_pb2


def to_tensorboard(run_or_path, logdir, *, histograms: bool = True) -> dict:
    """Write a run as TensorBoard event files into ``logdir`` (event files of an earlier export
    there are replaced); open with ``tensorboard --logdir <parent of logdir>``.

    Args:
        run_or_path: a run file or an open :class:`dyntrace.Run`.
        logdir: the folder of this run's event files (created if needed).
        histograms: also write the probes' histograms (default True).

    Returns:
        ``{"path": event file, "scalars": values written, "histograms": histograms written}``.
    """
    from dyntrace.io.reader import Run, open_run

    if not isinstance(run_or_path, Run):
        with open_run(run_or_path) as run:
            return to_tensorboard(run, logdir, histograms=histograms)
    run = run_or_path
    EventFileWriter, event_pb2, summary_pb2 = _tensorboard()
    logdir = os.fspath(logdir)
    try:
        os.makedirs(logdir, exist_ok=True)
        for old in glob.glob(os.path.join(glob.escape(logdir), f"events.out.tfevents.*{SUFFIX}")):
            os.remove(old)
    except OSError as exc:
        raise DyntraceError(f"cannot write TensorBoard files in {logdir}: {exc.strerror or exc}") from None
    wall = _created(run)
    writer = EventFileWriter(logdir, max_queue_size=1024, flush_secs=30, filename_suffix=SUFFIX)
    counts = {"scalars": 0, "histograms": 0}
    try:
        counts["scalars"] = _scalars(run, writer, event_pb2, summary_pb2, wall)
        if histograms:
            counts["histograms"] = _histograms(run, writer, event_pb2, summary_pb2, wall)
    finally:
        writer.close()
    (counts["path"],) = glob.glob(os.path.join(glob.escape(logdir), f"events.out.tfevents.*{SUFFIX}"))
    return counts


def _created(run) -> float:
    try:
        return datetime.fromisoformat(str(run.meta.get("created"))).timestamp()
    except ValueError:
        return os.path.getmtime(run.path)


def _scalars(run, writer, event_pb2, summary_pb2, wall: float) -> int:
    """One event per step holding every scalar logged at that step."""
    by_step: dict[int, list] = {}
    for name in run.scalar_names:
        steps, values = run.scalar(name)
        for step, value in zip(steps.tolist(), values.tolist()):
            by_step.setdefault(step, []).append(summary_pb2.Summary.Value(tag=name, simple_value=value))
    for step in sorted(by_step):
        writer.add_event(
            event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=by_step[step]))
        )
    return sum(len(v) for v in by_step.values())


def _histograms(run, writer, event_pb2, summary_pb2, wall: float) -> int:
    written = 0
    for probe in run.probes:
        if "hist" not in run.fields(probe):
            continue
        for name in run.names(probe):
            hist = run.hist(probe, name)
            magnitude = hist.scale == "log10_abs"
            description = (
                f"{probe} of {name}: histogram of log10 |x| (exact zeros counted below the first edge)"
                if magnitude
                else f"{probe} of {name}: histogram of values"
            )
            for r, step in enumerate(hist.steps.tolist()):
                proto = histogram_proto(hist, r, summary_pb2)
                value = summary_pb2.Summary.Value(tag=f"{probe}/{name}", histo=proto)
                if r == 0:  # TensorBoard keeps the first metadata of a tag
                    value.metadata.plugin_data.plugin_name = "histograms"
                    value.metadata.summary_description = description
                writer.add_event(
                    event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=[value]))
                )
                written += 1
    return written


def histogram_proto(hist, r: int, summary_pb2=None):
    """The ``HistogramProto`` of record ``r`` of a :class:`dyntrace.io.reader.Histogram` (see the module docstring)."""
    if summary_pb2 is None:
        summary_pb2 = _tensorboard()[2]
    edges = (
        hist.edges if hist.edges.ndim == 1 else hist.edges[r]
    )  # fixed bins, or a range that follows the data
    width = float(edges[-1] - edges[-2]) if len(edges) > 1 else 1.0
    counts = hist.counts[r].astype(np.float64)
    below = float(hist.underflow[r]) + (float(hist.zeros[r]) if hist.scale == "log10_abs" else 0.0)
    above = float(hist.overflow[r])
    limits, buckets, centres = list(edges[1:]), list(counts), list((edges[:-1] + edges[1:]) / 2)
    low, high = float(edges[0]), float(edges[-1])
    if below > 0:
        low = float(edges[0]) - width
        limits, buckets, centres = (
            [float(edges[0])] + limits,
            [below] + buckets,
            [float(edges[0]) - width / 2] + centres,
        )
    if above > 0:
        high = float(edges[-1]) + width
        limits, buckets, centres = (
            limits + [high],
            buckets + [above],
            centres + [float(edges[-1]) + width / 2],
        )
    buckets_a, centres_a = np.asarray(buckets), np.asarray(centres)
    return summary_pb2.HistogramProto(
        min=low,
        max=high,
        num=float(buckets_a.sum()),
        sum=float(buckets_a @ centres_a),
        sum_squares=float(buckets_a @ centres_a**2),
        bucket_limit=[float(x) for x in limits],
        bucket=[float(b) for b in buckets],
    )
