"""``dyntrace compare RUN.h5 RUN.h5 … [--labels a,b,…] [-o DIR] [--format …] [--dpi N]``."""

from __future__ import annotations

import os
from contextlib import ExitStack

import click

from dyntrace.commands.options import figure_output
from dyntrace.commands.plot import out_folder, save
from dyntrace.errors import DyntraceError, MissingDataError

__all__ = ["command"]


@click.command("compare")
@click.argument("run_files", nargs=-1, required=True, type=click.Path())  # checked by open_run
@click.option(
    "--labels", default=None, metavar="A,B,…", help="Comma-separated names of the runs [default: file stems]."
)
@figure_output("Folder for the figures [default: <first run stem>_compare beside it].")
def command(run_files, labels, out_dir, fmt, dpi):
    """Overlay runs: loss curves, activation std and gradient norm by layer, and effective step
    sizes (where the runs have the 'steps' probe). Prints each path written; a figure no run
    has data for is skipped with a note on stderr."""
    if len(run_files) < 2:
        raise click.UsageError("give at least two run files to compare")
    label_list = None
    if labels is not None:
        label_list = [x.strip() for x in labels.split(",")]
        if len(label_list) != len(run_files) or not all(label_list):
            raise click.BadParameter(
                f"{len(label_list)} labels for {len(run_files)} runs: give one non-empty label per run",
                param_hint="--labels",
            )
    import matplotlib

    matplotlib.use("Agg")  # files only; in the command, never at import of the library
    from dyntrace.io.reader import open_run
    from dyntrace.plots import COMPARISONS, theme
    from dyntrace.plots.compare import run_labels

    with ExitStack() as stack:
        runs = [stack.enter_context(open_run(path)).verify() for path in run_files]
        for path, run in zip(run_files, runs):
            for note in run.notes:
                click.echo(f"note: {path}: {note}", err=True)
        label_list = run_labels(runs, label_list)
        if out_dir is None:
            stem = os.path.splitext(os.path.basename(run_files[0]))[0]
            out_dir = os.path.join(os.path.dirname(os.path.abspath(run_files[0])), f"{stem}_compare")
        written = 0
        for name, function in COMPARISONS.items():
            try:
                with theme():
                    fig = function(runs, labels=label_list)
                    out_folder(out_dir)
                    path = save(fig, os.path.join(out_dir, f"{name}.{fmt}"), fmt=fmt, dpi=dpi)
            except MissingDataError as exc:
                click.echo(f"note: skipped {name}: {exc}", err=True)
                continue
            click.echo(path)
            written += 1
        if written == 0:
            raise DyntraceError("none of the comparison figures could be drawn from these files")
