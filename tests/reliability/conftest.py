"""The reliability suite: faults, concurrency, hostile input, secrets, least privilege.

Runs with the rest (``python -m pytest``) or alone (``python -m pytest tests/reliability``),
against the same real PostgreSQL as every other test (see ``tests/conftest.py``).

Each test records what it did through the ``figures`` fixture, and the run ends with one table
of those figures (trials, faults injected, rows checked, losses), so the numbers reported in
docs/RELIABILITY.md come from a run anyone can repeat. A test records its figures only once its
assertions have passed: a failed test adds nothing to the table.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

_FIGURES: dict[str, Counter] = defaultdict(Counter)


class Figures:
    """``figures.add("ingest faults", trials=1, faults=1, rows_checked=500)`` within a test;
    committed to the run's table when the test passes."""

    def __init__(self):
        self._pending: dict[str, Counter] = defaultdict(Counter)

    def add(self, area: str, **counts: int) -> None:
        self._pending[area].update(counts)

    def commit(self) -> None:
        for area, counts in self._pending.items():
            _FIGURES[area].update(counts)


@pytest.fixture
def figures(request):
    recorder = Figures()
    yield recorder
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.passed:
        recorder.commit()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


def pytest_terminal_summary(terminalreporter):
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for area in sorted(_FIGURES):
        counts = _FIGURES[area]
        parts = ", ".join(f"{name} {value:,}" for name, value in sorted(counts.items()))
        terminalreporter.write_line(f"{area}: {parts}")
