"""Every gallery entry, in quick mode: it builds, its figure is a PNG, and its claims hold."""

import pytest

from dyntrace import gallery
from dyntrace.gallery.runner import build_entry

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", gallery.names())
def test_entry_builds_and_its_claims_hold(name, tmp_path):
    result = build_entry(name, tmp_path, quick=True)
    assert result.error is None, getattr(result, "traceback", result.error)
    assert result.claims, "an entry must check at least one claim"
    failed = [f"{c.text}: measured {c.measured}, expected {c.expected}" for c in result.claims if not c.passed]
    assert not failed, failed
    with open(result.figure, "rb") as f:
        assert f.read(8) == PNG
