"""Build gallery entries: record their runs, draw their figures, check their claims, index them.

The index is ``README.md`` in the output folder, written from ``index.json`` beside it: each
entry's last result (title, caption, claims, timing). Building some entries (``--only``)
replaces their sections and keeps the others', so the index always covers every entry built
in that folder in one mode (quick or full; switching mode starts a new index).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from tqdm.auto import tqdm

from dyntrace.gallery import entry as load_entry
from dyntrace.gallery import names as entry_names
from dyntrace.gallery.base import Claim, EntryResult

__all__ = ["build", "build_entry", "write_index", "INDEX_JSON"]

#: The machine-readable index beside README.md: {"quick": bool, "entries": {name: result}}.
INDEX_JSON = "index.json"


def build_entry(name: str, out_dir: Path, *, quick: bool = False, dpi: int = 110) -> EntryResult:
    """Record the runs of one entry under ``out_dir/runs/<name>/``, save ``out_dir/<name>.png``."""
    import matplotlib.pyplot as plt

    from dyntrace.io.reader import open_run
    from dyntrace.plots.theme import theme

    module = load_entry(name)
    result = EntryResult(name=name, title=module.TITLE, caption=" ".join(module.CAPTION.split()), figure=None)
    start = time.perf_counter()
    run_dir = out_dir / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    opened = {}
    try:
        for label, spec in module.runs(quick).items():
            path = run_dir / f"{label}.h5"
            _record(spec, path)
            result.runs[label] = str(path)
        opened = {label: open_run(path) for label, path in result.runs.items()}
        result.claims = list(module.claims(opened))
        with theme():
            fig = module.figure(opened)
            figure_path = out_dir / f"{name}.png"
            fig.savefig(figure_path, dpi=dpi)
            plt.close(fig)
        result.figure = str(figure_path)
    except Exception as exc:  # reported in the index and the summary, never hidden
        result.error = f"{type(exc).__name__}: {exc}"
        result.traceback = traceback.format_exc()
    finally:
        for run in opened.values():
            run.close()
    result.seconds = time.perf_counter() - start
    return result


def _record(spec, path: Path):
    import torch

    # Gallery models are small: on a few cores one thread is several times faster than
    # threads contending for them (and results do not depend on it).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if callable(spec):
            spec(str(path))
        else:
            from dyntrace.trainer import train

            train(spec.replace(out=str(path)), progress=False)
    finally:
        torch.set_num_threads(threads)


def build(out_dir, names=None, *, quick: bool = False, progress: bool = True) -> list[EntryResult]:
    """Build the named entries (all by default) into ``out_dir`` and write its README.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(names) if names else entry_names()
    for name in names:
        load_entry(name)  # unknown names fail before any work
    results = []
    bar = tqdm(names, desc="gallery", unit="entry", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        results.append(build_entry(name, out_dir, quick=quick))
    kept = _read_index(out_dir, quick=quick)
    kept.update({r.name: r for r in results})
    valid = set(entry_names())
    everything = [r for name, r in kept.items() if name in valid]
    _write_json(out_dir, everything, quick=quick)
    write_index(out_dir, everything, quick=quick)
    return results


def _as_dict(r: EntryResult) -> dict:
    return {
        "name": r.name,
        "title": r.title,
        "caption": r.caption,
        "figure": os.path.basename(r.figure) if r.figure else None,
        "claims": [c.to_dict() for c in r.claims],
        "runs": {k: os.path.basename(v) for k, v in r.runs.items()},
        "seconds": r.seconds,
        "error": r.error,
    }


def _write_json(out_dir: Path, results: list[EntryResult], *, quick: bool):
    data = {"quick": quick, "entries": {r.name: _as_dict(r) for r in results}}
    (out_dir / INDEX_JSON).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def _read_index(out_dir: Path, *, quick: bool) -> dict:
    """{name: EntryResult} from ``out_dir/index.json`` if it was written in the same mode."""
    path = out_dir / INDEX_JSON
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("quick") != quick:
        return {}
    out = {}
    for name, e in (data.get("entries") or {}).items():
        try:
            out[name] = EntryResult(
                name=e["name"],
                title=e["title"],
                caption=e["caption"],
                figure=str(out_dir / e["figure"]) if e.get("figure") else None,
                claims=[Claim(**c) for c in e["claims"]],
                runs=dict(e.get("runs") or {}),
                seconds=float(e["seconds"]),
                error=e.get("error"),
            )
        except (KeyError, TypeError, ValueError):  # an older or damaged record: rebuilt next time
            continue
    return out


def write_index(out_dir: Path, results: list[EntryResult], *, quick: bool):
    """``out_dir/README.md``: each figure with its caption and the numbers behind its claims."""
    order = {name: i + 1 for i, name in enumerate(entry_names())}
    lines = [
        "# dyntrace gallery",
        "",
        "Every figure below was regenerated by `dyntrace gallery` from real, seeded training runs",
        "recorded with `dyntrace.Recorder`, and drawn from the files they wrote. Each caption's claims",
        "are checked on the recorded numbers; the table under each figure gives what was measured",
        "and the reference it is held to (the literature's value where there is one; a value outside a",
        "published band says so there). Each claim is a **phenomenon** (it would fail if the physics",
        "of the experiment changed: a control run without the phenomenon fails it) or a **check**",
        "(the implementation agrees with its formula). This file is written by the command.",
        "",
        f"Mode: {'quick (small settings)' if quick else 'full'}; "
        f"{sum(c.passed for r in results for c in r.claims)} of {sum(len(r.claims) for r in results)} claims hold "
        f"({sum(c.kind == 'phenomenon' for r in results for c in r.claims)} phenomena, "
        f"{sum(c.kind == 'check' for r in results for c in r.claims)} checks); "
        f"built in {sum(r.seconds for r in results):.0f} s.",
        "",
    ]
    for r in sorted(results, key=lambda r: order.get(r.name, 0)):
        lines += [f"## {order.get(r.name, '')}. {r.title}", ""]
        if r.figure:
            lines += [f"![{r.title}]({os.path.basename(r.figure)})", ""]
        lines += [r.caption, ""]
        if r.error:
            lines += [f"**Failed to build:** `{r.error}`", ""]
        if r.claims:
            lines += ["| kind | claim | measured | reference | holds |", "|---|---|---|---|---|"]
            for c in r.claims:
                cells = (c.kind, c.text, c.measured, c.expected or "–", "yes" if c.passed else "**NO**")
                lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
            lines.append("")
        lines += [
            f"<sub>`dyntrace gallery --only {r.name}` · {len(r.runs)} run(s) · {r.seconds:.1f} s</sub>",
            "",
        ]
    (out_dir / "README.md").write_text("\n".join(lines))
