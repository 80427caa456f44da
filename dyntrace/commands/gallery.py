"""``dyntrace gallery [-o DIR] [--only NAME …] [--quick] [--list]``: regenerate the reference figures."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command("gallery")
@click.option(
    "-o",
    "--out",
    "out_dir",
    default="gallery",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the PNGs, README.md and runs/.",
)
@click.option("--only", "only", multiple=True, metavar="NAME", help="Build only this entry (repeatable).")
@click.option("--quick", is_flag=True, help="Small settings: seconds per entry (what the tests run).")
@click.option("--list", "list_only", is_flag=True, help="List the entries and exit.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def command(out_dir, only, quick, list_only, progress):
    """Regenerate the gallery of classic training-dynamics figures from real, recorded runs.

    Each entry trains its seeded runs on the CPU, draws its figure from the run files and
    checks its caption's claims on the recorded numbers; a claim that does not hold is
    reported and makes the command exit with status 1.
    """
    import matplotlib

    matplotlib.use("Agg")
    from dyntrace import gallery
    from dyntrace.gallery.runner import build

    if list_only:
        for i, name in enumerate(gallery.names(), 1):
            click.echo(f"{i:>2}. {name:<22} {gallery.entry(name).TITLE}")
        return
    for name in only:
        if name not in gallery.names():
            gallery.entry(name)  # raises UnknownNameError with the valid names
    results = build(out_dir, only or None, quick=quick, progress=progress)
    failed = []
    for r in results:
        status = "ok" if r.passed else "FAILED"
        click.echo(f"{status:>6}  {r.name:<22} {r.seconds:5.1f} s  {r.figure or r.error}")
        for c in r.claims:
            if not c.passed:
                failed.append(f"{r.name}: {c.text} (measured {c.measured}; expected {c.expected})")
        if r.error:
            failed.append(f"{r.name}: {r.error}")
    click.echo(f"wrote {out_dir}/README.md")
    if failed:
        for line in failed:
            click.echo(f"not as claimed: {line}", err=True)
        raise click.ClickException(f"{len(failed)} gallery claim(s) did not hold")
