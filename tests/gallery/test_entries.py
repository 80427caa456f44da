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
    failed = [f"{c.text}: measured {c.measured}, expected {c.expected}" for c in result.claims if not c.passed]
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
