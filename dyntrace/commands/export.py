"""``dyntrace export RUN.h5 [RUN.h5 …] --tensorboard DIR [--no-histograms]``."""

from __future__ import annotations

import os

import click

__all__ = ["command"]


@click.command("export")
@click.argument("run_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--tensorboard",
    "logdir",
    required=True,
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Write TensorBoard event files into DIR/<run stem>/ (then: tensorboard --logdir DIR).",
)
@click.option(
    "--histograms/--no-histograms", default=True, show_default=True, help="Also write the probes' histograms."
)
def command(run_files, logdir, histograms):
    """Write runs as TensorBoard event files: every logged scalar at every step, and the probes'
    histograms at the record steps, with TensorBoard's own writer. Each run goes to its own
    folder DIR/<run stem>/ (an earlier export there is replaced); prints each folder written."""
    from dyntrace.export.tensorboard import to_tensorboard

    stems = [os.path.splitext(os.path.basename(path))[0] for path in run_files]
    for i, stem in enumerate(stems):
        if stems.count(stem) > 1:
            stems[i] = f"{stem}_{i + 1}"
    for path, stem in zip(run_files, stems):
        folder = os.path.join(logdir, stem)
        written = to_tensorboard(path, folder, histograms=histograms)
        click.echo(f"{folder}: {written['scalars']} scalar values, {written['histograms']} histograms")
