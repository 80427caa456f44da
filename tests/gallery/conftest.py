"""Gallery entries built once per test session in quick mode, shared by the tests that need them."""

import pytest


@pytest.fixture(scope="session")
def built_entry(tmp_path_factory):
    """``built_entry(name) -> EntryResult``: the entry built in quick mode (once per session)."""
    from dyntrace.gallery.runner import build_entry

    cache = {}

    def build(name):
        if name not in cache:
            cache[name] = build_entry(name, tmp_path_factory.mktemp(name), quick=True)
        return cache[name]

    return build
