"""``dyntrace report RUN.h5 [RUN.h5 …] [-o report.html] [--labels a,b,…] [--dpi N]``."""

from __future__ import annotations

import os

import click

__all__ = ["command"]


@click.command("report")
@click.argument("run_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="The HTML file to write [default: <first run stem>_report.html beside it].",
)
@click.option(
    "--labels", default=None, metavar="A,B,…", help="Comma-separated names of the runs [default: file stems]."
)
@click.option(
    "--dpi", type=click.IntRange(30, 300), default=100, show_default=True, help="Resolution of the figures."
)
def command(run_files, out, labels, dpi):
    """Write one self-contained HTML page of the runs: description, config, diagnoses linked to
    the figures and steps that show them, the dashboard, every figure each file supports, and the
    comparison figures when given several runs. The page holds its figures and style: send it
    as it is; it needs no network and no other file."""
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
    from dyntrace.report import write_report

    if out is None:
        stem = os.path.splitext(os.path.basename(run_files[0]))[0]
        out = os.path.join(os.path.dirname(os.path.abspath(run_files[0])), f"{stem}_report.html")
    click.echo(write_report(run_files, out, labels=label_list, dpi=dpi))
