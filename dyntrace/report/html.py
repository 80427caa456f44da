"""The HTML report: runs → one page of text, figures as inline PNGs, and an inline stylesheet.

Anchors: ``run-<i>`` for the i-th run's section (from 1), ``run-<i>-fig-<name>`` for its figures
(names of :data:`dyntrace.plots.FIGURES`), ``run-<i>-diag-<k>`` for its diagnoses, and
``compare-<name>`` for the comparison figures (:data:`dyntrace.plots.COMPARISONS`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone

from dyntrace.errors import DyntraceError, MissingDataError

__all__ = ["build_report", "write_report", "SHOWN_BY"]

#: Diagnosis kind → the figures that show it, best first; a diagnosis links to the first one
#: the run has (the dashboard shows a panel of most of them).
SHOWN_BY = {
    "vanishing_gradients": ("gradient_flow", "gradient_heatmaps", "norms"),
    "exploding_gradients": ("gradient_flow", "norms", "loss"),
    "dead_units": ("dead_units", "activation_heatmaps"),
    "saturation": ("saturation", "activation_heatmaps"),
    "loss_spike": ("loss",),
    "divergence": ("loss",),
    "plateau": ("loss",),
    "overfitting": ("loss", "accuracy"),
}

_STYLE = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --wash: #f6f8fa; --accent: #0b5cad;
        --info: #0b5cad; --warning: #9a6700; --critical: #c62828; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); }
header, main { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 28px; padding-bottom: 8px; border-bottom: 1px solid var(--line); }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 22px; margin: 36px 0 8px; padding-top: 8px; border-top: 3px solid var(--accent); }
h3 { font-size: 17px; margin: 26px 0 8px; }
a { color: var(--accent); }
.muted { color: var(--muted); }
nav ul { display: flex; flex-wrap: wrap; gap: 4px 18px; list-style: none; padding: 0; margin: 8px 0; }
table.facts { border-collapse: collapse; margin: 8px 0; }
table.facts th { text-align: left; font-weight: 600; padding: 3px 16px 3px 0; vertical-align: top; \
white-space: nowrap; }
table.facts td { padding: 3px 0; }
code, pre { font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--wash); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; \
overflow: auto; max-height: 420px; }
details { margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
ul.diagnoses { list-style: none; padding: 0; }
ul.diagnoses li { border-left: 4px solid var(--info); background: var(--wash); \
padding: 6px 12px; margin: 6px 0; border-radius: 0 6px 6px 0; }
ul.diagnoses li.warning { border-color: var(--warning); }
ul.diagnoses li.critical { border-color: var(--critical); }
.severity { font-weight: 700; text-transform: uppercase; font-size: 12px; letter-spacing: .04em; margin-right: 6px; }
li.info .severity { color: var(--info); } li.warning .severity { color: var(--warning); } \
li.critical .severity { color: var(--critical); }
figure { margin: 18px 0 28px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); margin-top: 6px; }
figcaption .name { font-weight: 600; color: var(--ink); font-family: ui-monospace, Menlo, Consolas, monospace; }
.shows { margin-top: 2px; }
ul.skipped { color: var(--muted); }
footer { max-width: 1180px; margin: 40px auto; padding: 12px 24px; border-top: 1px solid var(--line); \
color: var(--muted); font-size: 13px; }
"""


@dataclass
class _Figure:
    anchor: str
    name: str
    caption: str
    png: bytes
    diagnoses: list = field(default_factory=list)  # (anchor, text) of the diagnoses shown here


def write_report(paths, out, *, labels=None, dpi: int = 100) -> str:
    """Write the report of the run files ``paths`` to ``out``; returns ``out``.

    Args:
        paths: one or more run files.
        out: the HTML file to write (its folder must exist).
        labels: a name per run (default: the file stems, made unique).
        dpi: resolution of the inline PNGs (default 100).
    """
    page = build_report(paths, labels=labels, dpi=dpi)
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as exc:
        raise DyntraceError(f"cannot write {out}: {exc.strerror or exc}") from None
    return os.fspath(out)


def build_report(paths, *, labels=None, dpi: int = 100) -> str:
    """The report of the run files ``paths`` as one HTML string (see :func:`write_report`)."""
    from dyntrace.io.reader import open_run
    from dyntrace.plots.compare import run_labels

    paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if not paths:
        raise DyntraceError("no run files to report on")
    with ExitStack() as stack:
        runs = [stack.enter_context(open_run(path)) for path in paths]
        labels = run_labels(runs, list(labels) if labels is not None else None)
        sections = [_run_section(i, run, label, dpi) for i, (run, label) in enumerate(zip(runs, labels), 1)]
        compare = _compare_section(runs, labels, dpi) if len(runs) > 1 else ""
    title = f"dyntrace report: {', '.join(labels)}"
    nav = [f'<li><a href="#run-{i}">{html.escape(label)}</a></li>' for i, label in enumerate(labels, 1)]
    if compare:
        nav.insert(0, '<li><a href="#compare">comparison</a></li>')
    from dyntrace import __version__

    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            "<header>",
            f"<h1>{html.escape(title)}</h1>",
            (
                f'<p class="muted">{len(runs)} run{"s" if len(runs) > 1 else ""}, '
                f"written {created} by dyntrace {__version__}. "
                "Figures are drawn from the recorded files; this page needs no other file.</p>"
            ),
            f"<nav><ul>{''.join(nav)}</ul></nav>",
            "</header>",
            "<main>",
            compare,
            *sections,
            "</main>",
            f"<footer>dyntrace {__version__} · {html.escape(', '.join(os.path.basename(p) for p in paths))}</footer>",
            "</body>",
            "</html>",
            "",
        ]
    )


# -- one run -----------------------------------------------------------------------------------


def _run_section(index: int, run, label: str, dpi: int) -> str:
    from dyntrace.analysis import diagnose
    from dyntrace.plots import FIGURES

    prefix = f"run-{index}"
    figures, skipped = [], []
    for name, spec in FIGURES.items():
        why = spec.missing(run)
        if why is None:
            try:
                png = _png(spec.function, (run,), {}, dpi)
            except MissingDataError as exc:
                why = str(exc).removeprefix(f"{run.path}: ")
            else:
                figures.append(_Figure(f"{prefix}-fig-{name}", name, spec.description, png))
                continue
        skipped.append((name, why))
    drawn = {f.name: f for f in figures}
    diagnoses = diagnose(run)
    items = []
    for k, d in enumerate(diagnoses, 1):
        anchor = f"{prefix}-diag-{k}"
        shown = next((drawn[n] for n in SHOWN_BY.get(d.kind, ()) if n in drawn), drawn.get("dashboard"))
        steps = f"step {d.start}" if d.start == d.end else f"steps {d.start}–{d.end}"
        text = f"{d.kind.replace('_', ' ')}, {steps}"
        link = f' — see <a href="#{shown.anchor}">{html.escape(shown.name)}</a> at {steps}' if shown else ""
        if shown is not None:
            shown.diagnoses.append((anchor, text))
        items.append(
            f'<li id="{anchor}" class="{html.escape(d.severity)}">'
            f'<span class="severity">{html.escape(d.severity)}</span>'
            f"<strong>{html.escape(d.kind.replace('_', ' '))}</strong>: {html.escape(d.message)}{link}</li>"
        )
    parts = [
        f'<section id="{prefix}">',
        f"<h2>{html.escape(label)}</h2>",
        _description(run),
        _config(run),
        "<h3>Diagnoses</h3>",
        f'<ul class="diagnoses">{"".join(items)}</ul>'
        if items
        else '<p class="muted">No automatic diagnosis fired on this run.</p>',
    ]
    if "dashboard" in drawn:
        parts += ["<h3>Dashboard</h3>", _figure_html(drawn["dashboard"])]
    parts += ["<h3>Figures</h3>", *(_figure_html(f) for f in figures if f.name != "dashboard")]
    if skipped:
        parts += [
            "<h3>Not in this file</h3>",
            '<ul class="skipped">'
            + "".join(f"<li><code>{html.escape(n)}</code>: {html.escape(why)}</li>" for n, why in skipped)
            + "</ul>",
        ]
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _description(run) -> str:
    info = run.info()
    described = run.config.get("description") if isinstance(run.config.get("description"), str) else None
    versions = ", ".join(f"{k.removesuffix('_version')} {v}" for k, v in info["versions"].items() if v)
    model = (
        f"{info['model']} with {info['n_parameters']:,} parameters"
        if info["n_parameters"] is not None
        else info["model"]
    )
    facts = [
        (
            "file",
            f"{info['path']} ({info['size_bytes'] / 1e6:.2f} MB, "
            f"{'closed' if info['closed_cleanly'] else 'open or interrupted'})",
        ),
        ("created", " · ".join(str(x) for x in (info["created"], versions) if x)),
        ("model", model),
        ("optimizer", info["optimizer"]),
        (
            "steps",
            f"{info['steps']} steps, {info['records']} record steps"
            + (f" ({info['schedule']})" if info["schedule"] else ""),
        ),
        (
            "probes",
            ", ".join(
                f"{p} ({v['records']} records × {v['tensors']} tensors)" for p, v in info["probes"].items()
            )
            or "none",
        ),
        ("scalars", ", ".join(info["scalars"]) or "none"),
        ("landscapes", ", ".join(info["landscapes"]) or "none"),
    ]
    facts = [
        (key, str(value)) for key, value in facts if value
    ]  # a file without them (not written by the Recorder)
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    model = run.meta.get("model")
    return "\n".join(
        [
            f"<p>{html.escape(described)}</p>" if described else "",
            f'<table class="facts">{rows}</table>',
            f"<details><summary>Model</summary><pre>{html.escape(str(model))}</pre></details>"
            if model
            else "",
        ]
    )


def _config(run) -> str:
    config = run.config
    if not config:
        return '<h3>Config</h3><p class="muted">The run stored no config.</p>'
    text = json.dumps(config, indent=2, sort_keys=False, default=str)
    return (
        f"<h3>Config</h3><details><summary>{len(config)} key{'s' if len(config) != 1 else ''}: "
        f"{html.escape(', '.join(list(config)[:8]))}{' …' if len(config) > 8 else ''}</summary>"
        f"<pre>{html.escape(text)}</pre></details>"
    )


def _figure_html(figure: _Figure) -> str:
    shows = ""
    if figure.diagnoses:
        links = ", ".join(f'<a href="#{anchor}">{html.escape(text)}</a>' for anchor, text in figure.diagnoses)
        shows = f'<div class="shows">Shows: {links}</div>'
    data = base64.b64encode(figure.png).decode("ascii")
    return (
        f'<figure id="{figure.anchor}"><img src="data:image/png;base64,{data}" alt="{html.escape(figure.name)}: '
        f'{html.escape(figure.caption)}"><figcaption><span class="name">{html.escape(figure.name)}</span> — '
        f"{html.escape(figure.caption)}{shows}</figcaption></figure>"
    )


# -- several runs ------------------------------------------------------------------------------

_COMPARE_CAPTIONS = {
    "loss": "loss of every run (smoothed), on one axis",
    "activation_std": "activation std by layer, one line per run",
    "gradient_norms": "gradient norm by layer, one line per run",
    "step_sizes": "effective step sizes by parameter, one colour per run",
}


def _compare_section(runs, labels, dpi: int) -> str:
    from dyntrace.plots import COMPARISONS

    figures, skipped = [], []
    for name, function in COMPARISONS.items():
        try:
            png = _png(function, (runs,), {"labels": labels}, dpi)
        except MissingDataError as exc:
            skipped.append((name, str(exc)))
            continue
        figures.append(
            _Figure(f"compare-{name}", name, _COMPARE_CAPTIONS.get(name, name.replace("_", " ")), png)
        )
    parts = [
        '<section id="compare">',
        "<h2>Comparison</h2>",
        f"<p>{len(runs)} runs: {html.escape(', '.join(labels))}.</p>",
        *(_figure_html(f) for f in figures),
    ]
    if skipped:
        parts.append(
            '<ul class="skipped">'
            + "".join(f"<li><code>{html.escape(n)}</code>: {html.escape(w)}</li>" for n, w in skipped)
            + "</ul>"
        )
    parts.append("</section>")
    return "\n".join(parts)


# -- drawing -----------------------------------------------------------------------------------


def _png(draw, args: tuple, kwargs: dict, dpi: int) -> bytes:
    """``draw(*args, **kwargs)`` drawn in the theme, as PNG bytes (no file, no pyplot state)."""
    from dyntrace.plots import theme

    with theme():
        fig = draw(*args, **kwargs)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()
