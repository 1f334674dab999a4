"""Every Python block of README.md runs as written, against the test server: on the sample
data set (small scale), with DATABASE_URL set as a user's shell would have it. A block that is
an example file is run by tests/test_examples.py; a block preceded by ``<!-- not run: why -->``
is skipped with that reason (there is none today)."""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import monps_store
from monps_store import demo, sample

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?:<!-- not run: (?P<why>[^>]*) -->\n)?```python\n(?P<code>.*?)```",
                   re.DOTALL)
EXAMPLES = {path.read_text() for path in (ROOT / "examples").glob("*.py")}
PLUGIN_EXAMPLE = "# tests/test_rivalries.py in your project\n"


def blocks() -> list[tuple[int, str, str | None]]:
    text = (ROOT / "README.md").read_text()
    return [(text[:m.start()].count("\n") + 1, m.group("code"), m.group("why"))
            for m in BLOCK.finditer(text)]


def test_every_python_block_is_valid_python_and_a_skipped_one_says_why():
    found = blocks()
    assert len(found) >= 10
    for line, code, why in found:
        ast.parse(code, filename=f"README.md:{line}")
        assert why is None or why.strip(), f"README.md:{line}: a not-run marker needs a reason"


def test_the_readme_blocks_run_in_order_on_the_sample_data(pg, db, tmp_path, monkeypatch):
    demo.load(sample.SampleData(scale=0.01), lambda *a, **k: None)
    monps_store.close_db()
    (tmp_path / "odds.csv").write_text(
        "match_id,league,home_team,away_team,bookmaker,market,selection,price,commence_time,"
        "collected_at\nLIG-00001,Ligue 1,Lyon FC,Nice FC,pinnacle,1x2,home,2.200,"
        "2026-12-05T20:00:00Z,2026-12-05T19:00:00Z\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", pg.url)
    ran = 0
    for line, code, why in blocks():
        if why or code in EXAMPLES or code.startswith(PLUGIN_EXAMPLE):
            continue
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
        ran += 1
        if "pool_status()" in code and "# {'configured'" in code:
            # The sample printed is the real thing: the same keys as pool_status() gives.
            shown = ast.literal_eval(" ".join(
                row.lstrip("# ") for row in code.splitlines() if row.startswith("# ")
                and ("{" in row or "}" in row or ":" in row)))
            assert set(shown) == set(monps_store.pool_status()), line
        if "events.listen(" in code:
            assert "odds_changed {'match_ids': ['LIG-00001']}" in printed.getvalue()
        monps_store.close_db()
    assert ran >= 8


def test_the_readme_plugin_example_passes_in_a_project_of_its_own(tmp_path, empty_database):
    (code,) = [c for _, c, _ in blocks() if c.startswith(PLUGIN_EXAMPLE)]
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_rivalries.py").write_text(textwrap.dedent(code))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests"], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "MONPS_TEST_DATABASE_URL": empty_database})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
