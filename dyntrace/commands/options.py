"""Options several commands share: where figures go, their format and resolution."""

from __future__ import annotations

import click

__all__ = ["figure_output"]


def figure_output(out_help: str, *, format_help: str = "File format.", dpi_help: str = "Resolution of PNGs."):
    """``-o/--out`` (a folder, as ``out_dir``), ``--format`` (png, svg, pdf; as ``fmt``) and
    ``--dpi`` (10–1200, default 120), in that order, as one decorator."""

    def decorate(command):
        for option in reversed(
            [
                click.option(
                    "-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None, help=out_help
                ),
                click.option(
                    "--format",
                    "fmt",
                    type=click.Choice(["png", "svg", "pdf"]),
                    default="png",
                    show_default=True,
                    help=format_help,
                ),
                click.option(
                    "--dpi", type=click.IntRange(10, 1200), default=120, show_default=True, help=dpi_help
                ),
            ]
        ):
            command = option(command)
        return command

    return decorate
