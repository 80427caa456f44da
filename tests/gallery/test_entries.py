"""Every gallery entry, in quick mode: it builds, its figure is a PNG, its claims hold, and it
makes at least one phenomenon claim (one a control run without the phenomenon would fail)."""

import pytest

from dyntrace import gallery
from dyntrace.gallery.base import CLAIM_KINDS

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", gallery.names())
def test_entry_builds_and_its_claims_hold(name, built_entry):
    result = built_entry(name)
    assert result.error is None, getattr(result, "traceback", result.error)
    assert result.claims, "an entry must check at least one claim"
    failed = [
        f"{c.text}: measured {c.measured}, expected {c.expected}" for c in result.claims if not c.passed
    ]
    assert not failed, failed
    with open(result.figure, "rb") as f:
        assert f.read(8) == PNG


@pytest.mark.parametrize("name", gallery.names())
def test_entry_makes_a_phenomenon_claim(name, built_entry):
    result = built_entry(name)
    assert result.error is None, result.error
    kinds = [c.kind for c in result.claims]
    assert set(kinds) <= set(CLAIM_KINDS)
    assert "phenomenon" in kinds, f"{name}: every claim is a check; a figure must show a phenomenon"


def test_building_some_entries_keeps_the_others_in_the_index(tmp_path):
    from dyntrace.gallery.runner import INDEX_JSON, build

    build(tmp_path, ["ewma"], quick=True, progress=False)
    build(tmp_path, ["activation_functions"], quick=True, progress=False)
    readme = (tmp_path / "README.md").read_text()
    assert "ewma.png" in readme and "activation_functions.png" in readme
    assert "| kind | claim | measured | reference | holds |" in readme
    assert readme.index("## 6.") < readme.index("## 18.")  # the registry's order, not the build order
    # a build in the other mode starts a new index
    build(tmp_path, ["ewma"], quick=False, progress=False)
    readme = (tmp_path / "README.md").read_text()
    assert "ewma.png" in readme and "activation_functions.png" not in readme
    assert (tmp_path / INDEX_JSON).exists()
