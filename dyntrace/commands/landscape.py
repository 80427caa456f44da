"""``dyntrace landscape RUN.h5 [--plane] [--line] [--trajectory] [--resolution N] [--span S] [--seed K] [-o DIR]``."""

from __future__ import annotations

import math
import os

import click

from dyntrace.commands.options import figure_output
from dyntrace.errors import DyntraceError

__all__ = ["command"]

# figure file stem → (slice, figure function name in dyntrace.plots.landscape)
_FIGURES = {
    "plane": [
        ("landscape_plane_contour", "plot_landscape_contour"),
        ("landscape_plane_surface", "plot_landscape_surface"),
    ],
    "line": [("landscape_line", "plot_landscape_line")],
    "trajectory": [("landscape_trajectory", "plot_landscape_contour")],
}


def _describe(name: str, result) -> str:
    """One line about a stored slice: kind, size, method, time (and the PCA's explained variance)."""
    from dyntrace.landscape.results import PlaneResult

    meta = result.meta
    size = (
        f"{len(result.x)}x{len(result.y)} grid"
        if isinstance(result, PlaneResult)
        else f"{len(result.t)} points"
    )
    line = (
        f"/landscape/{name}: {meta.get('kind')}, {size}, {meta.get('method')}, "
        f"{meta.get('seconds', float('nan')):.2f} s"
    )
    if isinstance(result, PlaneResult) and result.explained_variance is not None:
        ev = 100 * result.explained_variance
        line += f", explained variance {ev[0]:.1f} % + {ev[1]:.1f} %"
    return line


@click.command("landscape")
@click.argument("run_file", type=click.Path())  # checked by open_run: one clear line
@click.option("--plane", is_flag=True, help="Random filter-normalised plane around the final weights.")
@click.option("--line", is_flag=True, help="Straight line from the initial to the final weights.")
@click.option("--trajectory", is_flag=True, help="PCA plane of the recorded trajectory, with its path.")
@click.option(
    "--resolution",
    type=click.IntRange(2, 1001),
    metavar="N",
    help="Grid points per axis (points on the line) [default: the run's landscape config, else 21].",
)
@click.option(
    "--span",
    type=click.FloatRange(0, 1e6, min_open=True),
    callback=lambda ctx, param, value: _finite(value),
    metavar="S",
    help="Half-width of the random plane [default 1.0].",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    metavar="K",
    help="Seed of the random plane's directions [default 0].",
)
@figure_output("Also draw the slices into this folder.", format_help="Figure file format.")
def command(run_file, plane, line, trajectory, resolution, span, seed, out_dir, fmt, dpi):
    """Compute loss-landscape slices of a run made by `dyntrace train` and store them in RUN_FILE.

    The model and data are rebuilt from the config stored in the file; the final weights are
    the last record of its parameter trajectory (train with --trajectory N or --landscape),
    the initial weights the first. Without --plane/--line/--trajectory all three are
    computed. Existing /landscape groups of the same name are replaced.
    """
    try:
        from dyntrace.remake import landscape_of_run

        _check_run_config(run_file)
        asked = {"plane": plane, "line": line, "trajectory": trajectory}
        order = [name for name, wanted in asked.items() if wanted] or None
        results = landscape_of_run(run_file, order, resolution=resolution, span=span, seed=seed)
        for name, result in results.items():
            click.echo(f"{run_file}:{_describe(name, result)}")
        if out_dir is not None:
            _draw(results, out_dir, fmt=fmt, dpi=dpi)
    except DyntraceError as exc:
        raise click.ClickException(str(exc)) from None


def _finite(value):
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def _check_run_config(run_file: str) -> None:
    """The model and data are rebuilt from the run's own config: its sizes and device are
    checked like those of `dyntrace train` first (a file may say anything)."""
    from dyntrace.catalog import ConfigError
    from dyntrace.commands.train import check_config
    from dyntrace.trainer import TrainConfig

    try:
        config = TrainConfig.from_run(run_file)
    except ConfigError:
        return  # not a `dyntrace train` config: landscape_of_run says so, with what to do
    try:
        check_config(config)
    except ConfigError as exc:
        raise ConfigError(f"{run_file}: its config cannot be rebuilt here: {exc}") from None


def _draw(results: dict, out_dir: str, *, fmt: str, dpi: int) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; in the command, never at import of the library
    from dyntrace.commands.plot import out_folder, save
    from dyntrace.plots import landscape as figures
    from dyntrace.plots.theme import theme

    out_folder(out_dir)
    for name, result in results.items():
        for stem, function in _FIGURES[name]:
            with theme():
                fig = getattr(figures, function)(result)
                click.echo(save(fig, os.path.join(out_dir, f"{stem}.{fmt}"), fmt=fmt, dpi=dpi))
