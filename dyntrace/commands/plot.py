"""``dyntrace plot RUN.h5 [-o DIR] [--format png|svg|pdf] [--dpi N] [--only NAME …]``."""

from __future__ import annotations

import os

import click

from dyntrace.commands.options import figure_output
from dyntrace.errors import DyntraceError, MissingDataError

__all__ = ["command", "save"]


def _figure_names(ctx, param, value):
    """--only: names, repeated or comma-separated; an unknown one is a usage error."""
    from dyntrace.plots import FIGURES

    names = [n.strip() for item in value for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise click.BadParameter(
            f"unknown figure {unknown[0]!r}; valid: {', '.join(FIGURES)}", ctx=ctx, param=param
        )
    return names


def save(fig, path: str, *, fmt: str, dpi: int) -> str:
    """Write a figure; no timestamps in SVG/PDF so the same run gives the same file."""
    metadata = {"Date": None} if fmt in ("svg", "pdf") else None
    fig.savefig(path, format=fmt, dpi=dpi, metadata=metadata)
    return path


def out_folder(path: str) -> str:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise DyntraceError(f"cannot create output folder {path}: {exc.strerror or exc}") from None
    return path


@click.command("plot")
@click.argument("run_file", type=click.Path())  # checked by open_run: one clear line
@figure_output(
    "Folder for the figures [default: <run stem>_plots beside RUN_FILE].",
    dpi_help="Resolution of PNGs (and of heatmaps in SVG/PDF).",
)
@click.option(
    "--only",
    multiple=True,
    callback=_figure_names,
    metavar="NAME",
    help="Draw only these figures (repeat, or separate with commas).",
)
def command(run_file, out_dir, fmt, dpi, only):
    """Draw the dashboard and every figure RUN_FILE supports into a folder; print each path.

    Figures the file has no data for are skipped, named in one note on stderr (with --only, one
    note each says what is missing). Works on a file that is still being written (it draws what
    has been flushed so far).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; in the command, never at import of the library
    from dyntrace.io.reader import open_run
    from dyntrace.plots import FIGURES, theme

    with open_run(run_file) as run:
        run.verify()  # every chunk against its checksum first (about 1.5 s a GB): damage is one error line
        for note in run.notes:
            click.echo(f"note: {run_file}: {note}", err=True)
        if out_dir is None:
            stem = os.path.splitext(os.path.basename(run_file))[0]
            out_dir = os.path.join(os.path.dirname(os.path.abspath(run_file)), f"{stem}_plots")
        names = only or list(FIGURES)
        written, lacking = 0, []
        for name in names:
            spec = FIGURES[name]
            why = spec.missing(run)
            if why is None:
                try:
                    with theme():
                        fig = spec.function(run)
                        out_folder(out_dir)
                        path = save(fig, os.path.join(out_dir, f"{name}.{fmt}"), fmt=fmt, dpi=dpi)
                except MissingDataError as exc:
                    why = str(exc).removeprefix(f"{run.path}: ")
                else:
                    click.echo(path)
                    written += 1
                    continue
            if only:  # asked for by name: say why it is not drawn
                click.echo(f"note: skipped {name}: {why}", err=True)
            else:
                lacking.append(name)
        if lacking:  # one line, not one per figure: a default run lacks several probes' figures
            click.echo(
                f"note: {len(lacking)} figure{'s' if len(lacking) > 1 else ''} need{'' if len(lacking) > 1 else 's'} "
                f"data this run lacks ({', '.join(lacking)}); --only NAME says why",
                err=True,
            )
        if written == 0:
            raise DyntraceError(
                f"{run_file}: none of the figures ({', '.join(names)}) could be drawn from this file"
            )
