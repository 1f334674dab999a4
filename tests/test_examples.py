"""The examples README shows are real files, and they run."""

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_readme_shows_the_example_verbatim(example):
    assert example.read_text() in (ROOT / "README.md").read_text()


def run(example, url):
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": url}
    return subprocess.run([sys.executable, str(example)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_cron_example_runs_and_is_idempotent(pg, db):
    for _ in range(2):
        result = run(ROOT / "examples" / "cron_job.py", pg.url)
        assert result.returncode == 0, result.stderr
        assert "job team-figures ok in" in result.stderr
    assert pg.sql("SELECT team_name, roi, created_by FROM quantum.team_quantum_dna "
                  "ORDER BY team_name") == [("Lyon", Decimal("4.250"), "cron:team-figures"),
                                            ("Nice", Decimal("-1.100"), "cron:team-figures")]


def test_the_legacy_example_commits_both_kinds_of_writes(pg, db):
    pg.sql("INSERT INTO quantum.team_quantum_dna (team_name, league, matches_played, total_bets,"
           " win_rate, roi, total_pnl) VALUES ('Lyon', 'L1', 0, 0, 0, 0, 0)")
    result = run(ROOT / "examples" / "legacy_script.py", pg.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 teams in Ligue 1\n"
    assert pg.sql("SELECT team_name, league FROM quantum.team_quantum_dna ORDER BY 1") == [
        ("Brest", "Ligue 1"), ("Lyon", "Ligue 1")]
