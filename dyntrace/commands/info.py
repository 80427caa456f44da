"""``dyntrace info RUN.h5 [--json]``: what a run file holds."""

from __future__ import annotations

import json

import click

from dyntrace.io.reader import open_run

__all__ = ["command"]


@click.command("info")
@click.argument("run_file", type=click.Path())  # checked by open_run: one clear line
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def command(run_file, as_json):
    """Show what RUN_FILE holds: steps, records, layers, parameters, quantities, versions."""
    with open_run(run_file) as run:
        run.verify()  # a damaged chunk anywhere is an error, also in data info does not show
        info = run.info()
        info["diagnoses"] = _diagnoses(run)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(_format(info))


def _diagnoses(run) -> list[dict]:
    try:
        from dyntrace.analysis import diagnose
    except ImportError:
        return []
    return [d.to_dict() if hasattr(d, "to_dict") else vars(d) for d in diagnose(run)]


def _format(info: dict) -> str:
    lines = [
        f"{info['path']}  ({info['size_bytes'] / 1e6:.2f} MB, schema {info['schema_version']}, "
        f"{info['status']})",
        f"  created     {info['created']}  (dyntrace {info['versions']['dyntrace_version']}, "
        f"torch {info['versions']['torch_version']}, python {info['versions']['python_version']})",
        f"  model       {info['model']} with {info['n_parameters']} parameters; optimizer {info['optimizer']}",
        f"  steps       {info['steps']}; {info['records']} record steps ({info['schedule']})"
        + (
            f"; {info['skipped_steps']} skipped (no optimizer.step(): non-finite gradients)"
            if info.get("skipped_steps")
            else ""
        ),
        f"  scalars     {', '.join(info['scalars']) or '-'}",
    ]
    for probe, p in info["probes"].items():
        lines.append(
            f"  {probe:<11} {p['records']} records x {p['tensors']} tensors: {', '.join(p['fields'])}"
        )
    if info["layers"]:
        lines.append(f"  layers      {', '.join(info['layers'])}")
    for note in info.get("notes", []):
        lines.append(f"  note        {note}")
    for d in info.get("diagnoses", []):
        where = f" (steps {d.get('start')}-{d.get('end')})" if d.get("start") is not None else ""
        lines.append(f"  ! {d.get('kind')}: {d.get('message')}{where}")
    return "\n".join(lines)
