"""Fixtures of the optimizer-dynamics probe tests (helpers: ``_recording.py``)."""

import pytest

import dyntrace


@pytest.fixture
def open_runs():
    """open_runs(path) opens a run and closes it after the test."""
    runs = []

    def _open(path):
        run = dyntrace.open_run(path)
        runs.append(run)
        return run

    yield _open
    for run in runs:
        run.close()
