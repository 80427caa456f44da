"""``dyntrace report``: one self-contained HTML file holding every figure each run supports and
every diagnosis, linked together, that a real browser opens without a console error."""

from __future__ import annotations

import base64
import html
import os
import re
from html.parser import HTMLParser

import matplotlib.image
import numpy as np
import pytest
from click.testing import CliRunner
from plots._runs import plateau_run, record_run, with_landscapes

import dyntrace
from dyntrace.analysis import diagnose
from dyntrace.cli import main
from dyntrace.plots import COMPARISONS, FIGURES
from report._chromium import find_chromium, load

PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Every element's id, every URL-valued attribute, and each figure's inline images."""

    URL_ATTRIBUTES = frozenset(
        {
            "src",
            "href",
            "srcset",
            "action",
            "formaction",
            "poster",
            "data",
            "xlink:href",
            "background",
            "cite",
        }
    )

    def __init__(self, text):
        super().__init__()
        self.ids, self.urls, self.tags, self.figures = set(), [], [], {}
        self._figure = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        self.urls += [(tag, key, value) for key, value in attrs.items() if key in self.URL_ATTRIBUTES]
        if tag == "figure":
            self._figure = attrs["id"]
            self.figures[self._figure] = []
        if tag == "img" and self._figure:
            self.figures[self._figure].append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    full = with_landscapes(record_run(folder / "full.h5", steps=40, every=5))
    plateau = plateau_run(folder / "plateau.h5")
    out = folder / "both.html"
    result = CliRunner().invoke(main, ["report", str(full), str(plateau), "-o", str(out), "--dpi", "50"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    return out, [full, plateau]


def test_the_page_references_nothing_outside_itself(report):
    out, _ = report
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert page.urls, "the page has links and images"
    for tag, key, value in page.urls:
        assert value.startswith(("data:", "#")), f"<{tag} {key}={value[:60]!r}> points outside the page"
        if value.startswith("#"):
            assert value[1:] in page.ids, f"link to a missing anchor {value}"
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    styles = " ".join(re.findall(r"<style>(.*?)</style>", text, flags=re.DOTALL))
    assert "@import" not in styles and "url(" not in styles


def test_every_figure_each_run_supports_and_every_diagnosis(report):
    out, paths = report
    page = Page(out.read_text(encoding="utf-8"))
    text = out.read_text(encoding="utf-8")
    for i, path in enumerate(paths, 1):
        with dyntrace.open_run(path) as run:
            supported = [name for name, spec in FIGURES.items() if spec.missing(run) is None]
            diagnoses = diagnose(run)
        assert len(supported) >= (18 if i == 1 else 2)
        for name in FIGURES:
            anchor = f"run-{i}-fig-{name}"
            assert (anchor in page.figures) == (name in supported), anchor
        for name in supported:
            (src,) = page.figures[f"run-{i}-fig-{name}"]
            assert src.startswith("data:image/png;base64,")
            assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG
        assert diagnoses, "each test run has a diagnosis to show"
        for k, d in enumerate(diagnoses, 1):
            item = re.search(rf'<li id="run-{i}-diag-{k}"[^>]*>(.*?)</li>', text, flags=re.DOTALL).group(1)
            assert html.escape(d.message) in item
            steps = f"step {d.start}" if d.start == d.end else f"steps {d.start}–{d.end}"
            target = re.search(r'href="#(run-\d+-fig-\w+)"', item).group(1)
            assert target in page.figures and steps in item
            assert f'href="#run-{i}-diag-{k}"' in text  # and the figure links back
    assert {"run-1-diag-1", "run-2-diag-1"} <= page.ids
    compared = [name for name in COMPARISONS if f"compare-{name}" in page.figures]
    assert "loss" in compared


def test_the_png_of_a_figure_is_a_real_image(report):
    out, _ = report
    page = Page(out.read_text(encoding="utf-8"))
    src = page.figures["run-1-fig-dashboard"][0]
    image = matplotlib.image.imread(
        __import__("io").BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png"
    )
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300


@pytest.mark.skipif(
    find_chromium() is None, reason="no chromium binary (Debian: apt-get install -y chromium)"
)
def test_headless_chromium_opens_the_page_without_a_console_error(report, tmp_path):
    out, _ = report
    loaded = load(out)
    assert loaded.errors == []
    assert {url for url in loaded.requests if not url.startswith("data:")} == {
        "file://" + os.path.abspath(out)
    }
    assert sum(url.startswith("data:image/png") for url in loaded.requests) >= 20
    shot = tmp_path / "report.png"
    shot.write_bytes(loaded.screenshot)
    if os.environ.get("DYNTRACE_SCREENSHOT"):  # keep it to look at
        with open(os.environ["DYNTRACE_SCREENSHOT"], "wb") as f:
            f.write(loaded.screenshot)
    image = matplotlib.image.imread(shot)
    assert (
        image.shape[1] == 1280 and image.shape[0] == loaded.height > 5000
    )  # the whole page, every figure laid out
    assert np.std(image[:1500, :, :3]) > 0.05  # drawn, not blank


def test_a_page_with_an_external_reference_fails_these_checks(tmp_path):
    """The checks above can fail: a missing stylesheet and image, and a script error, are seen."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="x.css"></head>'
        '<body><img src="missing.png"><script>nope()</script></body></html>'
    )
    page = Page(bad.read_text())
    assert [v for _, _, v in page.urls if not v.startswith(("data:", "#"))] == ["x.css", "missing.png"]
    if find_chromium() is not None:
        errors = load(bad, settle=0.2).errors
        assert any("ERR_FILE_NOT_FOUND" in e and "missing.png" in e for e in errors)
        assert any("nope is not defined" in e for e in errors)


def test_one_run_and_a_missing_file(tmp_path):
    path = record_run(tmp_path / "scalars.h5", steps=10, probes=[])
    result = CliRunner().invoke(main, ["report", str(path)])
    assert result.exit_code == 0, result.output
    written = tmp_path / "scalars_report.html"
    assert result.output.strip() == str(written)
    text = written.read_text(encoding="utf-8")
    assert 'id="compare"' not in text and "Not in this file" in text and 'id="run-1-fig-loss"' in text
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nope.h5")])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "Traceback" not in result.output
